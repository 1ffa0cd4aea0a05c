"""Anthropic's Messages API and OpenAI's Responses API through the gateway, driven by the
official SDKs, over fault-injecting upstreams: the same failover as chat completions,
each protocol's own error and stream shapes, tool calls passed through intact."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from localsuite.testing.fake_upstream import WORDS
from localsuite.testing.gateway_stack import Stack

FULL = " ".join(WORDS)
HELLO = [{"role": "user", "content": "hi"}]


def claude(stack: Stack, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key=kw.pop("api_key", "unused"),
                               max_retries=0, **kw)  # fmt: skip


def gpt(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0)


def sse_events(raw: bytes) -> list[tuple[str | None, dict[str, Any] | str]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
        events.append((name, data if data == "[DONE]" else orjson.loads(data)))
    return events


# --- Anthropic Messages ------------------------------------------------------------------


def test_messages_plain_through_the_sdk(stack: Stack) -> None:
    raw = claude(stack).messages.with_raw_response.create(
        model="chat-7b", max_tokens=64, messages=HELLO
    )
    message = raw.parse()
    assert raw.headers["x-localsuite-backend"] == "inference-chat"
    assert message.content[0].type == "text" and message.content[0].text == FULL
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == len(WORDS)
    assert stack.primary.requests[-1]["stream"] is True  # streamed from the backend, assembled


def test_messages_stream_through_the_sdk(stack: Stack) -> None:
    with claude(stack).messages.stream(model="chat", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == FULL and final.stop_reason == "max_tokens"


def test_a_backend_that_skips_message_start_still_gives_one_message(stack: Stack) -> None:
    """Some llama-server builds open a stream whose first token is part of an emoji
    without `message_start`: the gateway opens the message, plain and streamed."""
    stack.primary.skip_message_start = True
    sdk = claude(stack)
    raw = sdk.messages.with_raw_response.create(model="chat-7b", max_tokens=64, messages=HELLO)
    assert raw.headers["x-localsuite-attempts"] == "1"  # not garbage: no failover
    message = raw.parse()
    assert message.content[0].text == FULL and message.model == "chat-7b"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == len(WORDS)
    with sdk.messages.stream(model="chat-7b", max_tokens=64, messages=HELLO) as stream:
        assert "".join(stream.text_stream) == FULL
        assert stream.get_final_message().stop_reason == "max_tokens"
    with stack.client() as client:
        body = {"model": "chat-7b", "max_tokens": 64, "messages": HELLO, "stream": True}
        kinds = [name for name, _ in sse_events(client.post("/v1/messages", json=body).content)]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds.count("message_start") == 1 and kinds[-1] == "message_stop"
    assert len(stack.secondary.requests) == 0


@pytest.mark.parametrize("fault", ["cut", "stall", "garbage"])
def test_a_broken_messages_stream_is_continued_as_one_well_formed_message(
    stack: Stack, fault: str
) -> None:
    stack.primary.fault(fault, after_events=4)
    with stack.client() as client:
        body = {"model": "chat-7b", "max_tokens": 64, "messages": HELLO, "stream": True}
        response = client.post("/v1/messages", json=body)
    events = sse_events(response.content)
    kinds = [name for name, _ in events]
    assert kinds.count("message_start") == 1 and kinds.count("message_stop") == 1
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_start") == 1 and kinds.count("content_block_stop") == 1
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")  # type: ignore[index]
    assert text == FULL  # each word once: the prefill's echo was removed
    assert {d["index"] for n, d in events if n.startswith("content_block")} == {0}  # type: ignore[union-attr,index]
    continuation = stack.secondary.requests[-1]
    assert continuation["messages"][-1] == {"role": "assistant", "content": "the quick brown fox"}
    assert continuation["max_tokens"] == 64 - 4
    # the SDK reads it as one message
    with claude(stack).messages.stream(model="chat", max_tokens=64, messages=HELLO) as stream:
        stack.primary.fault(fault, after_events=2)
        assert "".join(stream.text_stream) == FULL


def test_count_tokens(stack: Stack) -> None:
    counted = claude(stack).messages.count_tokens(model="chat-7b", messages=HELLO)
    assert counted.input_tokens >= 1


def test_messages_errors_are_anthropic_shaped_and_the_sdk_knows_them(stack: Stack) -> None:
    sdk = claude(stack)
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk.messages.create(model="claude-nope", max_tokens=8, messages=HELLO)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk.messages.create(model="chat-7b", max_tokens=0, messages=HELLO)
    assert bad.value.body["type"] == "error"  # type: ignore[index]
    for fake in (stack.primary, stack.secondary):
        fake.fault("status", status=429, retry_after="120")
    with pytest.raises(anthropic.RateLimitError) as busy:
        sdk.messages.create(model="chat-7b", max_tokens=8, messages=HELLO)
    assert int(busy.value.response.headers["retry-after"]) >= 1
    for fake in (stack.primary, stack.secondary):
        fake.fault("status", status=503)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        sdk.messages.create(model="chat-7b", max_tokens=8, messages=HELLO)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert int(overloaded.value.response.headers["retry-after"]) >= 1


def test_a_stream_that_cannot_go_on_ends_with_an_anthropic_error_event(stack: Stack) -> None:
    stack.primary.fault("cut", after_events=3)
    stack.secondary.fault("status", status=503)
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        claude(stack).messages.stream(model="chat-7b", max_tokens=64, messages=HELLO) as stream,
    ):
        "".join(stream.text_stream)
    assert raised.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_x_api_key_and_bearer_both_open_the_gateway(stack_factory: Any) -> None:
    stack: Stack = stack_factory(localsuite_api_key="s3cret")
    assert (
        claude(stack, api_key="s3cret")
        .messages.create(model="chat-7b", max_tokens=4, messages=HELLO)
        .content
    )
    with pytest.raises(anthropic.AuthenticationError) as wrong:
        claude(stack, api_key="nope").messages.create(model="chat-7b", max_tokens=4,
                                                      messages=HELLO)  # fmt: skip
    assert wrong.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with stack.client(headers={"Authorization": "Bearer s3cret"}) as client:
        assert stack.chat(client).status_code == 200


@pytest.mark.parametrize("version", [None, "2023-06-01"])
def test_with_or_without_anthropic_version(stack: Stack, version: str | None) -> None:
    headers = {"anthropic-version": version} if version else {}
    with stack.client(headers=headers) as client:
        answer = client.post("/v1/messages", json={"model": "chat-7b", "max_tokens": 4,
                                                   "messages": HELLO})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["type"] == "message"


def test_client_model_names_map_to_aliases(stack_factory: Any) -> None:
    stack: Stack = stack_factory(gateway_model_aliases="claude-*=chat-7b,gpt-5=code-7b")
    raw = claude(stack).messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=4, messages=HELLO
    )
    assert raw.headers["x-localsuite-backend"] == "inference-chat"
    answer = gpt(stack).chat.completions.with_raw_response.create(model="gpt-5", messages=HELLO)  # type: ignore[arg-type]
    assert answer.headers["x-localsuite-backend"] == "inference-code"
    assert "claude-*" not in {m.id for m in gpt(stack).models.list()}


# --- OpenAI Responses --------------------------------------------------------------------


def test_responses_plain_and_streamed_through_the_sdk(stack: Stack) -> None:
    sdk = gpt(stack)
    done = sdk.responses.create(model="chat-7b", input="hi")
    assert done.output_text == FULL and done.status == "completed"
    streamed = sdk.responses.create(model="chat-7b", input="hi", stream=True)
    kinds, text = [], ""
    for event in streamed:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
    assert text == FULL and kinds[-1] == "response.completed"


def test_a_responses_stream_fails_over_before_its_first_byte(stack: Stack) -> None:
    stack.primary.fault("status", status=500)
    raw = gpt(stack).responses.with_raw_response.create(model="chat-7b", input="hi", stream=True)
    assert raw.headers["x-localsuite-backend"] == "inference-code"
    assert "".join(e.delta for e in raw.parse() if e.type == "response.output_text.delta") == FULL


@pytest.mark.parametrize("fault", ["cut", "stall", "garbage"])
def test_a_broken_responses_stream_is_continued_as_one_response(stack: Stack, fault: str) -> None:
    stack.primary.fault(fault, after_events=4)
    with stack.client() as client:
        raw = client.post("/v1/responses", json={"model": "chat-7b", "input": "hi",
                                                 "stream": True}).content  # fmt: skip
    events = sse_events(raw)
    kinds = [name for name, _ in events]
    assert kinds.count("response.created") == 1 and kinds[-1] == "response.completed"
    assert kinds.count("response.output_item.added") == 1
    datas = [d for _, d in events if isinstance(d, dict)]
    sequence = [d["sequence_number"] for d in datas]
    assert sequence == sorted(set(sequence))  # one stream, numbered in order
    deltas = [d for d in datas if d["type"] == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == FULL
    assert {d["item_id"] for d in deltas} == {"msg_1"}
    completed = datas[-1]["response"]
    assert completed["id"] == "resp_primary"  # the client's response, not the fallback's
    assert completed["output"][0]["content"][0]["text"] == FULL
    continuation = stack.secondary.requests[-1]["input"]
    assert continuation[-1]["role"] == "assistant"
    assert continuation[-1]["content"][0]["text"] == "the quick brown fox"


def test_a_responses_stream_that_cannot_go_on_ends_with_failed_and_error(stack: Stack) -> None:
    stack.primary.fault("cut", after_events=3)
    stack.secondary.fault("status", status=503)
    try:  # SDKs either raise on the error event or hand it over as a typed event
        seen = [e.type for e in gpt(stack).responses.create(model="chat-7b", input="hi",
                                                            stream=True)]  # fmt: skip
    except openai.APIError:
        seen = ["error"]
    assert "response.completed" not in seen and ("response.failed" in seen or "error" in seen)
    with stack.client() as client:
        raw = client.post("/v1/responses", json={"model": "chat-7b", "input": "hi",
                                                 "stream": True}).content  # fmt: skip
    kinds = [name for name, _ in sse_events(raw)]
    assert kinds[-2:] == ["response.failed", "error"]


def test_previous_response_id_goes_where_its_state_is(stack: Stack) -> None:
    sdk = gpt(stack)
    first = sdk.responses.create(model="chat-7b", input="hi")
    assert first.id == "resp_primary"
    second = sdk.responses.with_raw_response.create(
        model="chat-7b", input="and then?", previous_response_id=first.id
    )
    assert second.headers["x-localsuite-backend"] == "inference-chat"
    stack.primary.fault("status", status=503)  # its holder cannot answer now
    calls = len(stack.secondary.requests)
    with pytest.raises(openai.APIStatusError) as gone:
        sdk.responses.create(model="chat-7b", input="x", previous_response_id=first.id)
    assert gone.value.status_code == 503
    assert "inference-chat" in str(gone.value)  # where its state lives, and why it cannot
    assert len(stack.secondary.requests) == calls  # never answered without its context
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="chat-7b", input="x", previous_response_id="resp_unknown")


# --- tool calls, in all three protocols ----------------------------------------------------

TOOL_REQUESTS = {
    "chat": ("/v1/chat/completions", {"messages": HELLO, "tools": [{"type": "function",
             "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}),
    "messages": ("/v1/messages", {"messages": HELLO, "max_tokens": 64, "tools": [
        {"name": "get_weather", "input_schema": {"type": "object"}}]}),
    "responses": ("/v1/responses", {"input": "hi", "tools": [{"type": "function",
                  "name": "get_weather", "parameters": {"type": "object"}}]}),
}  # fmt: skip


@pytest.mark.parametrize("protocol", list(TOOL_REQUESTS))
def test_a_tool_call_stream_is_relayed_byte_for_byte(stack: Stack, protocol: str) -> None:
    path, body = TOOL_REQUESTS[protocol]
    stack.primary.tool_call = True
    request = {"model": "chat-7b", **body, "stream": True}
    direct = httpx.post(f"{stack.primary_url}{path}", json=request, timeout=30).content
    with stack.client() as client:
        relayed = client.post(path, json=request).content
    assert relayed == direct
    assert b"get_weather" in relayed


@pytest.mark.parametrize("protocol", list(TOOL_REQUESTS))
def test_a_plain_tool_call_comes_back_whole(stack: Stack, protocol: str) -> None:
    path, body = TOOL_REQUESTS[protocol]
    stack.primary.tool_call = True
    with stack.client() as client:
        answer = client.post(path, json={"model": "chat-7b", **body}).json()
    text = orjson.dumps(answer).decode()
    assert '"get_weather"' in text
    if protocol == "chat":
        call = answer["choices"][0]["message"]["tool_calls"][0]
        assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
        assert answer["choices"][0]["finish_reason"] == "tool_calls"
    elif protocol == "messages":
        assert answer["content"][0]["input"] == {"city": "Paris", "unit": "celsius"}
        assert answer["stop_reason"] == "tool_use"
    else:
        assert answer["output"][0]["type"] == "function_call"


@pytest.mark.parametrize("protocol", list(TOOL_REQUESTS))
def test_a_stream_cut_inside_a_tool_call_is_not_continued(stack: Stack, protocol: str) -> None:
    path, body = TOOL_REQUESTS[protocol]
    stack.primary.tool_call = True
    stack.primary.fault("cut", after_events=2)
    with stack.client() as client:
        raw = client.post(path, json={"model": "chat-7b", **body, "stream": True}).content
    events = sse_events(raw)
    last_name, last = events[-1]
    if protocol == "chat":
        assert isinstance(last, dict) and "error" in last
    elif protocol == "messages":
        assert last_name == "error"
    else:
        assert last_name == "error" and events[-2][0] == "response.failed"
    assert stack.secondary.requests == []  # no prefill continuation of half a call


def test_headers_that_say_what_the_body_means_reach_the_backend(stack: Stack) -> None:
    claude(stack).messages.create(
        model="chat-7b", max_tokens=4, messages=HELLO,  # type: ignore[arg-type]
        extra_headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"},
    )  # fmt: skip
    sent = stack.primary.headers[-1]
    assert sent["anthropic-version"] and sent["anthropic-beta"].startswith("fine-grained")
    assert (
        "authorization" not in sent or "unused" not in sent["authorization"]
    )  # not the client's key
