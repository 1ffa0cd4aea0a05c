"""The `llama-server` command line for `inference-chat` and `inference-code`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from localsuite.core.settings import Settings
from localsuite.inference.binary import find_llama_server
from localsuite.inference.registry import ModelEntry, ModelRegistry

INFERENCE_SERVICES = ("inference-chat", "inference-code")


@dataclass(frozen=True, slots=True)
class InferencePlan:
    service: str
    model: ModelEntry
    port: int
    argv: list[str]


def default_threads() -> int:
    """Half the cores for each of the two servers, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def inference_plan(
    service: str,
    settings: Settings,
    registry: ModelRegistry,
    *,
    model: str | None = None,
    port: int | None = None,
    binary: Path | None = None,
) -> InferencePlan:
    """What to run for `service`; `model`/`port` override the settings (switches, tests)."""
    if service not in INFERENCE_SERVICES:
        raise ValueError(f"unknown inference service {service!r}; expected {INFERENCE_SERVICES}")
    is_chat = service == "inference-chat"
    entry = registry.resolve(
        model if model is not None else (settings.chat_model if is_chat else settings.code_model)
    )
    listen_port = port or (settings.inference_port if is_chat else settings.inference_code_port)
    gpu_layers = settings.chat_n_gpu_layers if is_chat else settings.code_n_gpu_layers
    exe = binary or find_llama_server(settings.llama_server_bin)
    argv = [
        str(exe),
        "--model", str(entry.path),
        "--alias", entry.stem,
        "--host", settings.host,
        "--port", str(listen_port),
        "--ctx-size", str(settings.llama_ctx_size),
        "--parallel", str(settings.llama_parallel),
        "--threads", str(settings.llama_threads or default_threads()),
        "--n-gpu-layers", str(gpu_layers),
        "--temp", str(settings.llama_temp),
        "--top-p", str(settings.llama_top_p),
        "--repeat-penalty", str(settings.llama_repeat_penalty),
        "--cache-ram", str(settings.llama_cache_ram_mb),
        "--no-webui",
        "--metrics",
    ]  # fmt: skip
    if settings.api_key:  # the suite's key guards llama-server too (its /health stays open)
        argv += ["--api-key-file", str(write_key_file(settings))]
    return InferencePlan(service, entry, listen_port, argv)


def key_file(settings: Settings) -> Path:
    """Where llama-server reads the suite's key: a file only its owner reads, so that the
    key is in no command line (`ps` shows those to every user)."""
    return settings.data_dir / "run" / "llama-api-key"


def write_key_file(settings: Settings) -> Path:
    """The key file, written now: whoever starts this command line finds it there."""
    assert settings.api_key is not None
    path = key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(settings.api_key + "\n")
    return path
