"""Chaos: kill and freeze a real llama-server under concurrent load through the gateway."""

from __future__ import annotations

import signal

import pytest

from localsuite.gateway.servers import Health
from localsuite.testing.llama import LlamaProcess
from localsuite.testing.load import PROMPT, Load
from localsuite.testing.servers import wait_until

pytestmark = [pytest.mark.llama, pytest.mark.chaos]


def test_sigkill_primary_under_load_loses_nothing_and_it_comes_back(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    stack = llama_gateway
    load = Load(stack.sdk(timeout=120))
    workers = load.run(streams=3, plains=3)
    try:
        wait_until(lambda: load.count() >= 6, 120, "steady load")
        stack.chat.signal(signal.SIGKILL)
        killed_at = load.count()
        wait_until(lambda: load.count() >= killed_at + 12, 120, "load after the kill")
    finally:
        load.finish(workers)
    assert load.failures == []
    after = [backend for _, _, backend in load.done[killed_at + 6 :]]
    assert set(after) == {"inference-code"}

    # Restarted on the same port, the probe lets it back and it gets traffic again.
    revived = LlamaProcess("inference-chat", stack.chat.log_path.parent, port=stack.chat.port)
    stack.chat.proc = revived.start().proc
    upstream = stack.gateway.table.servers["inference-chat"]
    wait_until(lambda: upstream.health is Health.READY and upstream.routable, 60, "probe")
    raw = stack.sdk().chat.completions.with_raw_response.create(
        model="chat-7b", messages=PROMPT, max_tokens=4
    )
    assert raw.headers["x-localsuite-backend"] == "inference-chat"


def test_sigstop_primary_costs_a_bounded_wait_not_the_deadline(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    stack = llama_gateway
    deadline = stack.gateway.settings.llm_request_timeout
    load = Load(stack.sdk(timeout=deadline + 30))
    workers = load.run(streams=2, plains=2)
    try:
        wait_until(lambda: load.count() >= 4, 120, "steady load")
        stack.chat.signal(signal.SIGSTOP)
        frozen_at = load.count()
        wait_until(lambda: load.count() >= frozen_at + 8, 120, "load while frozen")
    finally:
        load.finish(workers)
        stack.chat.signal(signal.SIGCONT)
    assert load.failures == []
    assert stack.gateway.table.servers["inference-chat"].last_error is not None
    worst = max(seconds for _, seconds, _ in load.done)
    assert worst < deadline / 2  # bounded by the probe and first-byte/idle timeouts

    upstream = stack.gateway.table.servers["inference-chat"]
    wait_until(lambda: upstream.health is Health.READY and upstream.routable, 60, "thawed")
