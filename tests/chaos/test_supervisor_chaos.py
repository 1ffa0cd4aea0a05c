"""Chaos against a supervised stack (`localsuite up --detach`, real llama-servers with the
bundled model): kills, a service that cannot start, and model switches under load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localsuite.supervisor.state import pid_alive
from localsuite.testing.detached import DetachedStack
from localsuite.testing.load import PROMPT, Load
from localsuite.testing.servers import wait_until

pytestmark = [pytest.mark.llama, pytest.mark.chaos]

BUNDLED = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DetachedStack]:
    with DetachedStack.create(tmp_path) as stack:
        yield stack


def up(stack: DetachedStack, preset: str = "p3") -> None:
    started = stack.up(preset)
    assert started.returncode == 0, started.stderr + started.stdout


def served_by(load: Load, since: int) -> set[str]:
    with load.lock:
        return {backend for _, _, backend in load.done[since:]}


def test_sigkill_inference_chat_under_load_fails_nothing_and_it_serves_again(
    stack: DetachedStack,
) -> None:
    up(stack)
    load = Load(stack.sdk())
    workers = load.run(streams=2, plains=2)
    try:
        wait_until(lambda: load.count() >= 6, 120, "steady load")
        killed = stack.kill("inference-chat")
        killed_at = load.count()
        stack.wait_restarted("inference-chat", killed, 60)
        back_at = load.count()
        wait_until(
            lambda: "inference-chat" in served_by(load, back_at), 120, "inference-chat serving"
        )
    finally:
        load.finish(workers)
    assert load.failures == []
    assert load.count() > killed_at
    assert stack.service("inference-chat")["restarts"] == 1


def test_sigkill_the_gateway_and_it_is_restarted(stack: DetachedStack) -> None:
    up(stack, "p1")
    client = stack.sdk(timeout=60)
    client.chat.completions.create(model="chat", messages=PROMPT, max_tokens=4)
    killed = stack.kill("api-gateway")
    stack.wait_restarted("api-gateway", killed, 60)
    assert not pid_alive(killed)
    answer = client.chat.completions.create(model="chat", messages=PROMPT, max_tokens=4)
    assert answer.choices[0].finish_reason is not None
    assert stack.service("api-gateway")["restarts"] == 1


def test_a_service_that_fails_at_once_is_reported_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    stack = DetachedStack.create(tmp_path, CODE_MODEL="broken.gguf")
    stack.add_model("broken.gguf", b"GGUF but not a model at all")
    try:
        started = stack.up("p3")
        assert started.returncode == 1
        assert "inference-code failed: exited with status 1; gave up after 5 crashes" in (
            started.stderr
        )
        assert "failed to load model" in started.stderr  # its last log lines say why
        assert "the other services keep running" in started.stderr

        services = stack.state()["services"]
        assert services["inference-code"]["state"] == "failed"
        wait_until(
            lambda: stack.service("api-gateway")["state"] == "ready", 60, "the gateway ready"
        )
        assert stack.service("inference-chat")["state"] == "ready"
        shown = stack.cli("status")
        assert "failed" in shown.stdout and "failed to load model" in shown.stderr
        answer = stack.sdk().chat.completions.with_raw_response.create(
            model="code", messages=PROMPT, max_tokens=4
        )
        assert answer.headers["x-localsuite-backend"] == "inference-chat"
    finally:
        stack.down()


def test_switch_model_under_streaming_and_plain_load_fails_nothing(stack: DetachedStack) -> None:
    stack.add_model("second.gguf")
    stack.add_model("broken.gguf", b"GGUF but not a model at all")
    up(stack)
    load = Load(stack.sdk())
    workers = load.run(streams=2, plains=2)
    try:
        wait_until(lambda: load.count() >= 6, 120, "steady load")
        switched = stack.cli("switch-model", "inference-chat", "second")
        assert switched.returncode == 0, switched.stderr
        assert "inference-chat now serves second.gguf" in switched.stdout
        assert stack.service("inference-chat")["model"] == "second.gguf"
        after_switch = load.count()
        wait_until(
            lambda: "inference-chat" in served_by(load, after_switch), 120, "the new model serving"
        )

        broken = stack.cli("switch-model", "inference-chat", "broken.gguf")
        assert broken.returncode == 1
        for words in (
            "inference-chat could not serve broken.gguf: exited with status 1",
            "Rolled back: inference-chat serves second.gguf again",
            "failed to load model",
        ):
            assert words in broken.stderr
        assert stack.service("inference-chat")["model"] == "second.gguf"
        after_rollback = load.count()
        wait_until(
            lambda: "inference-chat" in served_by(load, after_rollback), 120, "rolled back, serving"
        )
    finally:
        load.finish(workers)
    assert load.failures == []
    kinds = {kind for kind, _, _ in load.done}
    assert kinds == {"stream", "plain"}
    metrics = stack.control().call("GET", "/status")["services"]["inference-chat"]
    assert metrics["state"] == "ready" and metrics["operation"] is None
