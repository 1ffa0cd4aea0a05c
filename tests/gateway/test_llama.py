"""The gateway against real llama-server processes, driven by the official openai SDK."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from localsuite.gateway.app import create_gateway_app
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.llama import LlamaProcess
from localsuite.testing.servers import serve_in_thread

pytestmark = pytest.mark.llama

HELLO = [{"role": "user", "content": "Say hello."}]


def test_chat_non_stream(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    raw = llama_gateway.sdk().chat.completions.with_raw_response.create(
        model="chat-7b", messages=HELLO, max_tokens=8
    )
    answer = raw.parse()
    assert raw.headers["x-localsuite-backend"] == "inference-chat"
    assert answer.choices[0].message.content
    assert answer.model == "SmolLM2-135M-Instruct.Q4_1"  # the served backend's own name
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_chat_stream(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    stream = llama_gateway.sdk().chat.completions.create(
        model="code", messages=HELLO, max_tokens=12, stream=True
    )
    chunks = [c for c in stream if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_text_completion_and_models(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    client = llama_gateway.sdk()
    done = client.completions.create(model="chat", prompt="def add(a, b):", max_tokens=8)
    assert done.choices[0].text
    assert {m.id for m in client.models.list()} >= {"chat-7b", "code-7b"}


def test_llama_extensions_reach_the_backend(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    answer = llama_gateway.sdk().chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        max_tokens=4,
        extra_body={"grammar": 'root ::= "yes" | "no"', "cache_prompt": True},
    )
    assert answer.choices[0].message.content in ("yes", "no")


def test_errors_through_the_sdk(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    client = llama_gateway.sdk()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nope", messages=HELLO)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="chat", messages=HELLO, extra_body={"grammar": "root ::= ((("}
        )
    assert "grammar" in str(raised.value)


def test_context_too_long_moves_to_the_backend_with_more_context(tmp_path: Path) -> None:
    small = LlamaProcess("inference-chat", tmp_path, ctx_size=512).start()
    large = LlamaProcess("inference-code", tmp_path, ctx_size=4096).start()
    try:
        small.wait_ready()
        large.wait_ready()
        # 431 tokens of prompt take a while on one thread before the first token
        app = create_gateway_app(make_settings(small.url, large.url, llm_first_byte_timeout=60))
        with serve_in_thread(app) as url:
            prompt = "word " * 400  # past 512/4 slots, well inside 4096/4... per slot: 1024
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "chat-7b",
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 2,
                },
                timeout=120,
            )
    finally:
        small.stop()
        large.stop()
    assert r.status_code == 200, r.text
    assert r.headers["x-localsuite-backend"] == "inference-code"
    assert r.headers["x-localsuite-attempts"] == "2"
