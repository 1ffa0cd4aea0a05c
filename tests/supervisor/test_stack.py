"""`localsuite up --detach`, `status`, `restart`, `switch-model` and `down` with real
processes: llama-servers with the bundled model, the gateway, the supervisor."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localsuite.core.stack import HealthStatus
from localsuite.supervisor.state import pid_alive
from localsuite.testing.detached import DetachedStack
from localsuite.testing.servers import free_port, wait_until

pytestmark = pytest.mark.llama

BUNDLED = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DetachedStack]:
    with DetachedStack.create(tmp_path) as stack:
        yield stack


def chat_once(stack: DetachedStack, text: str = "hi") -> httpx.Response:
    body = {"model": "chat", "messages": [{"role": "user", "content": text}], "max_tokens": 4}
    return httpx.post(f"{stack.gateway_url}/v1/chat/completions", json=body, timeout=60)


def test_p1_up_status_restart_refused_switch_and_down(stack: DetachedStack) -> None:
    started = stack.up("p1")
    assert started.returncode == 0, started.stderr + started.stdout
    assert {n: s["state"] for n, s in stack.state()["services"].items()} == {
        "inference-chat": "ready", "api-gateway": "ready",
    }  # fmt: skip
    assert chat_once(stack).status_code == 200

    shown = stack.cli("status")
    assert shown.returncode == 0, shown.stderr
    for word in ("inference-chat", "api-gateway", "healthy", stack.env["INFERENCE_PORT"]):
        assert word in shown.stdout
    assert stack.control().status().services["api-gateway"].health is HealthStatus.HEALTHY

    # p1 has one backend: a switch would leave the aliases with none, and says so.
    stack.add_model("second.gguf")
    refused = stack.cli("switch-model", "inference-chat", "second")
    assert refused.returncode == 1
    assert "would leave chat-7b, code-7b" in refused.stderr and "p2 or p3" in refused.stderr
    assert stack.service("inference-chat")["model"] == BUNDLED

    old = stack.service("inference-chat")["pid"]
    restarted = stack.cli("restart", "inference-chat")
    assert restarted.returncode == 0, restarted.stderr
    assert stack.service("inference-chat")["pid"] != old
    assert stack.service("inference-chat")["restarts"] == 1 and not pid_alive(old)
    wait_until(lambda: chat_once(stack).status_code == 200, 30, "serving after the restart")

    pids = stack.pids()
    assert len(pids) == 3
    stopped = stack.down()
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert stack.state()["supervisor_pid"] is None


def test_p3_crash_restart_and_a_killed_supervisor_leaves_no_orphans(stack: DetachedStack) -> None:
    started = stack.up("p3")
    assert started.returncode == 0, started.stderr + started.stdout
    state = stack.state()
    assert {n: s["state"] for n, s in state["services"].items()} == dict.fromkeys(
        ["inference-chat", "inference-code", "embedding", "api-gateway", "rag", "mcp-server"],
        "ready",
    )

    old = stack.kill("inference-chat")
    stack.wait_restarted("inference-chat", old, 60)
    assert stack.service("inference-chat")["restarts"] == 1
    assert stack.service("inference-chat")["last_error"] == "killed by SIGKILL"

    # The supervisor itself dies without a chance to clean up: the kernel ends its children.
    pids = stack.pids()
    os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
    wait_until(lambda: not [pid for pid in pids if pid_alive(pid)], 30, "no orphan left")
    assert "nothing is running" in stack.down().stdout


def test_a_second_up_is_refused_while_a_stack_runs(stack: DetachedStack) -> None:
    assert stack.up("p1").returncode == 0
    again = stack.up("p1")
    assert again.returncode == 1 and "already running" in again.stderr


def test_an_unknown_model_is_refused_with_the_valid_names(tmp_path: Path) -> None:
    stack = DetachedStack.create(tmp_path, CHAT_MODEL="nope.gguf")
    started = stack.up("p1")
    assert started.returncode == 2
    assert "nope.gguf" in started.stderr and BUNDLED in started.stderr


def test_a_taken_control_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    stack = DetachedStack.create(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(stack.env["SUPERVISOR_PORT"])))
        taken.listen()
        started = stack.up("p1")
    assert started.returncode == 1
    assert "control port" in started.stderr and "SUPERVISOR_PORT" in started.stderr
    assert "started" not in (tmp_path / "data/logs/supervisor.log").read_text()


def test_chat_replicas_are_started_supervised_and_share_the_load(tmp_path: Path) -> None:
    ports = f"{free_port()},{free_port()}"
    with DetachedStack.create(tmp_path, CHAT_REPLICAS="3", CHAT_REPLICA_PORTS=ports) as stack:
        started = stack.up("p1")
        assert started.returncode == 0, started.stderr + started.stdout
        states = {n: s["state"] for n, s in stack.state()["services"].items()}
        assert states == {"inference-chat": "ready", "inference-chat-2": "ready",
                          "inference-chat-3": "ready", "api-gateway": "ready"}  # fmt: skip
        health = httpx.get(f"{stack.gateway_url}/health", timeout=10).json()
        assert set(health["backends"]) == {"inference-chat", "inference-chat-2",
                                           "inference-chat-3", "inference-code"}  # fmt: skip
        served = {chat_once(stack, f"conversation {i}").headers["x-localsuite-backend"]
                  for i in range(12)}  # fmt: skip
        assert served == {"inference-chat", "inference-chat-2", "inference-chat-3"}
        # a replica is supervised like any service: killed, it comes back
        old = stack.service("inference-chat-2")["pid"]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: stack.service("inference-chat-2")["pid"] not in (old, None)
                   and stack.service("inference-chat-2")["state"] == "ready", 120,
                   "the replica restarted")  # fmt: skip
        assert stack.down().returncode == 0
