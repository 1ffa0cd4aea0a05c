"""Chaos: kill and freeze a real llama-server under concurrent load through the gateway."""

from __future__ import annotations

import signal

import anthropic
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


def test_sigkill_in_the_middle_of_an_anthropic_stream_gives_one_whole_message(
    llama_gateway,
) -> None:  # type: ignore[no-untyped-def]
    stack = llama_gateway
    sdk = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0)
    kinds: list[str] = []
    text = ""
    with sdk.messages.stream(
        model="chat-7b",
        max_tokens=120,
        messages=PROMPT,  # type: ignore[arg-type]
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
                if len(text) > 20 and stack.chat.proc.poll() is None:
                    stack.chat.signal(signal.SIGKILL)  # mid-answer
        final = stream.get_final_message()
    assert stack.chat.proc.poll() is not None  # it really died during the stream
    assert kinds.count("message_start") == 1 and kinds.count("message_stop") == 1
    assert kinds[-1] == "message_stop"
    assert final.stop_reason in ("max_tokens", "end_turn")
    assert len(final.content) == 1 and final.content[0].text == text  # type: ignore[union-attr]
    metrics = stack.gateway.metrics.continuations
    assert metrics.labels("inference-chat", "attempted")._value.get() == 1
    assert metrics.labels("inference-code", "completed")._value.get() == 1


def test_sigkill_under_a_mix_of_the_three_protocols_loses_nothing(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    stack = llama_gateway
    claude = anthropic.Anthropic(base_url=stack.url, api_key="unused", max_retries=0,
                                 timeout=120)  # fmt: skip
    load = Load(stack.sdk(timeout=120), claude=claude)
    workers = load.run(streams=1, plains=1, protocols=("chat", "messages", "responses"))
    try:
        wait_until(lambda: load.count() >= 6, 120, "steady load")
        stack.chat.signal(signal.SIGKILL)
        killed_at = load.count()
        wait_until(lambda: load.count() >= killed_at + 12, 120, "load after the kill")
    finally:
        load.finish(workers)
    assert load.failures == []
    kinds = {kind for kind, _, _ in load.done[killed_at:]}
    assert {"messages-stream", "responses-plain", "stream"} <= kinds
