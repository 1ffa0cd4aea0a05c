"""Anthropic's Messages and OpenAI's Responses API through the gateway to real
llama-servers (which answer both natively), with the official SDKs."""

from __future__ import annotations

import anthropic
import pytest

pytestmark = pytest.mark.llama

HELLO = [{"role": "user", "content": "Say hello."}]


def claude(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)


def test_messages_plain_stream_and_count_tokens(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    sdk = claude(llama_gateway.url)
    raw = sdk.messages.with_raw_response.create(model="chat-7b", max_tokens=8, messages=HELLO)  # type: ignore[arg-type]
    message = raw.parse()
    assert raw.headers["x-localsuite-backend"] == "inference-chat"
    assert message.type == "message" and message.content[0].text  # type: ignore[union-attr]
    assert message.usage.output_tokens > 0
    with sdk.messages.stream(model="code", max_tokens=8, messages=HELLO) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.stop_reason in ("max_tokens", "end_turn")
    counted = sdk.messages.count_tokens(model="chat-7b", messages=HELLO)  # type: ignore[arg-type]
    assert counted.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="claude-nope", max_tokens=8, messages=HELLO)  # type: ignore[arg-type]


def test_responses_plain_and_streamed(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    sdk = llama_gateway.sdk()
    done = sdk.responses.create(model="chat-7b", input="Say hello.", max_output_tokens=8)
    assert done.status == "completed" and done.output_text
    kinds = [e.type for e in sdk.responses.create(model="code-7b", input="Say hello.",
                                                  max_output_tokens=8, stream=True)]  # fmt: skip
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
