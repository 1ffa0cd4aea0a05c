"""Streams: failover before the first byte, continuation after it, never a silent cut."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from localsuite.testing.fake_upstream import WORDS
from localsuite.testing.gateway_stack import Stack
from localsuite.testing.servers import wait_until

FULL_ANSWER = " ".join(WORDS)


def streams_counted(stack: Stack, outcome: str) -> float:
    counter = stack.gateway.metrics.requests.labels("chat-7b", "chat", outcome)
    return float(counter._value.get())


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0)


def stream_text(stack: Stack, **body: Any) -> tuple[str, list[str | None]]:
    messages = body.pop("messages", [{"role": "user", "content": "hi"}])
    stream = sdk(stack).chat.completions.create(
        model="chat-7b", messages=messages, stream=True, **body
    )
    text, finishes = "", []
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finishes.append(chunk.choices[0].finish_reason)
    return text, finishes


def test_stream_happy_path(stack: Stack) -> None:
    text, finishes = stream_text(stack)
    assert text == FULL_ANSWER
    assert finishes[-1] == "length"
    wait_until(lambda: streams_counted(stack, "ok") == 1, what="the stream counted as ok")
    assert streams_counted(stack, "failed") == 0


@pytest.mark.parametrize("fault", ["cut", "stall", "garbage"])
def test_broken_stream_is_continued_on_the_next_backend(stack: Stack, fault: str) -> None:
    stack.primary.fault(fault, after_events=4)
    text, finishes = stream_text(stack, max_tokens=len(WORDS))
    assert text == FULL_ANSWER  # each word once: the prefill's echo was removed
    assert finishes[-1] is not None
    continuation = stack.secondary.requests[-1]
    assert continuation["messages"][-1] == {"role": "assistant", "content": "the quick brown fox"}
    assert continuation["max_tokens"] == len(WORDS) - 4
    assert (
        stack.gateway.metrics.continuations.labels("inference-chat", "attempted")._value.get() == 1
    )


def test_stream_continuation_extends_a_client_prefill(stack: Stack) -> None:
    stack.primary.fault("cut", after_events=2)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure: "}]
    text, _ = stream_text(stack, messages=messages)
    # llama-server echoes a client's own prefill; the gateway keeps that behaviour as is
    assert text == "Sure: " + FULL_ANSWER
    assert stack.secondary.requests[-1]["messages"][-1]["content"] == "Sure: the quick"


def test_completions_stream_is_continued_by_extending_the_prompt(stack: Stack) -> None:
    stack.primary.fault("cut", after_events=3)
    stream = sdk(stack).completions.create(model="chat", prompt="Once:", stream=True)
    text = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
    assert text == FULL_ANSWER
    assert stack.secondary.requests[-1]["prompt"] == "Once:the quick brown"


def test_stream_that_cannot_continue_ends_with_an_error_event(stack: Stack) -> None:
    stack.primary.fault("cut", after_events=3)
    stack.secondary.fault("status", status=503)
    with pytest.raises(openai.APIError) as raised:
        stream_text(stack)
    assert "could answer" in str(raised.value) or "inference" in str(raised.value)
    # It started well, but what the client got was an error: that is how it is counted.
    wait_until(lambda: streams_counted(stack, "failed") == 1, what="the stream counted as failed")
    assert streams_counted(stack, "ok") == 0


def test_a_stream_the_client_leaves_is_counted_as_cancelled(stack: Stack) -> None:
    stack.primary.fault("stall", after_events=2)
    stack.secondary.fault("stall", after_events=0)
    with stack.client() as client:
        body = {"model": "chat-7b", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert next(response.iter_lines()).startswith("data:")
    wait_until(lambda: streams_counted(stack, "cancelled") == 1, what="the stream counted")
    assert streams_counted(stack, "ok") == streams_counted(stack, "failed") == 0


def test_stream_with_tool_calls_is_not_continued(stack: Stack) -> None:
    stack.primary.fault("cut", after_events=3)
    text, _ = stream_text(stack, n=1)
    assert text == FULL_ANSWER  # n=1 is still continuable
    stack.primary.fault("cut", after_events=3)
    with pytest.raises(openai.APIError):
        stream_text(stack, n=2)


def test_stream_fails_over_before_the_first_byte(stack: Stack) -> None:
    stack.primary.fault("status", status=500)
    raw = sdk(stack).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert raw.headers["x-localsuite-backend"] == "inference-code"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == FULL_ANSWER


def test_stream_error_before_first_byte_is_an_http_error(stack: Stack) -> None:
    for fake in (stack.primary, stack.secondary):
        fake.fault("status", status=400, body={"error": {"message": "bad grammar"}})
    with pytest.raises(openai.BadRequestError) as raised:
        stream_text(stack)
    assert "bad grammar" in str(raised.value)
