"""Fixtures shared by the integration and chaos suites: real llama-server processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from localsuite.gateway.app import Gateway, create_gateway_app
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.llama import LlamaProcess
from localsuite.testing.servers import serve_in_thread


@pytest.fixture
def llama_pair(tmp_path: Path) -> Iterator[tuple[LlamaProcess, LlamaProcess]]:
    """inference-chat and inference-code with the bundled model, ready to generate."""
    chat = LlamaProcess("inference-chat", tmp_path).start()
    code = LlamaProcess("inference-code", tmp_path).start()
    try:
        chat.wait_ready()
        code.wait_ready()
        yield chat, code
    finally:
        chat.stop()
        code.stop()


@dataclass
class LlamaStack:
    url: str
    gateway: Gateway
    chat: LlamaProcess
    code: LlamaProcess

    def sdk(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, **kw)


@pytest.fixture
def llama_gateway(llama_pair: tuple[LlamaProcess, LlamaProcess]) -> Iterator[LlamaStack]:
    """The real gateway in front of two real llama-servers."""
    chat, code = llama_pair
    settings = make_settings(
        chat.url,
        code.url,
        llm_first_byte_timeout=15.0,
        llm_stream_idle_timeout=5.0,
        llm_request_timeout=120.0,
        gateway_probe_timeout=1.0,
    )
    app = create_gateway_app(settings)
    with serve_in_thread(app) as url:
        yield LlamaStack(url, app.state.gateway, chat, code)
