"""`localsuite up --detach`, `status`, crash restart and `down`, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localsuite.supervisor.launcher import pid_alive
from localsuite.testing.servers import free_port, wait_until

pytestmark = pytest.mark.llama


def cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localsuite", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(tmp_path / "models"),
        "API_GATEWAY_PORT": str(free_port()),
        "INFERENCE_PORT": str(free_port()),
        "INFERENCE_CODE_PORT": str(free_port()),
        "LLAMA_THREADS": "1",
        "LLAMA_CTX_SIZE": "1024",
        "COLUMNS": "200",
    }
    yield env
    cli(env, "down", timeout=60)


def state(env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(env["DATA_DIR"]) / "run" / "state.json").read_text())
    return data


def test_up_status_restart_down(stack_env: dict[str, str]) -> None:
    started = cli(stack_env, "up", "--preset", "p2", "--detach")
    assert started.returncode == 0, started.stderr + started.stdout
    services = state(stack_env)["services"]
    assert {n: s["state"] for n, s in services.items()} == dict.fromkeys(
        ["inference-chat", "inference-code", "api-gateway"], "ready"
    )
    shown = cli(stack_env, "status")
    assert shown.returncode == 0 and "api-gateway" in shown.stdout and "ok" in shown.stdout

    gateway = f"http://127.0.0.1:{stack_env['API_GATEWAY_PORT']}"
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert httpx.post(f"{gateway}/v1/chat/completions", json=body, timeout=60).status_code == 200

    old_pid = services["inference-chat"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    wait_until(
        lambda: (
            state(stack_env)["services"]["inference-chat"]["pid"] != old_pid
            and state(stack_env)["services"]["inference-chat"]["state"] == "ready"
        ),
        60,
        "inference-chat restarted",
    )
    assert state(stack_env)["services"]["inference-chat"]["restarts"] == 1

    pids = [state(stack_env)["supervisor_pid"]]
    pids += [s["pid"] for s in state(stack_env)["services"].values()]
    stopped = cli(stack_env, "down")
    assert stopped.returncode == 0
    assert not [pid for pid in pids if pid_alive(pid)]


def test_a_model_that_cannot_load_is_reported_failed(stack_env: dict[str, str]) -> None:
    models = Path(stack_env["MODELS_DIR"])
    models.mkdir(parents=True)
    (models / "broken.gguf").write_bytes(b"this is not a gguf file")
    env = {**stack_env, "CHAT_MODEL": "broken.gguf"}
    started = cli(env, "up", "--preset", "p1", "--detach")
    assert started.returncode != 0
    assert "inference-chat failed" in started.stderr
    assert "gave up" in started.stderr


def test_an_unknown_model_is_refused_with_the_valid_names(stack_env: dict[str, str]) -> None:
    started = cli({**stack_env, "CHAT_MODEL": "nope.gguf"}, "up", "--preset", "p1", "--detach")
    assert started.returncode == 2
    assert "nope.gguf" in started.stderr and "SmolLM2-135M-Instruct.Q4_1.gguf" in started.stderr
