"""Fixtures shared by the integration and chaos suites: real llama-server processes, the
real embedding service, the real gateway."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from localsuite.core.settings import Settings
from localsuite.embedding.app import create_embedding_app
from localsuite.embedding.backends.sentence_transformers import RUNTIME_ENVIRONMENT
from localsuite.gateway.app import create_gateway_app
from localsuite.gateway.gateway import Gateway
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.llama import LlamaProcess
from localsuite.testing.servers import healthy, serve_in_thread, wait_until


def pytest_configure(config: pytest.Config) -> None:
    """The environment `localsuite serve embedding` starts with, before a test loads
    torch in this process (the in-process embedding service) or starts a child."""
    for name, value in RUNTIME_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


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


@pytest.fixture(scope="session")
def embedding_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real embedding service (bundled all-MiniLM-L6-v2), loaded once per session."""
    cache = tmp_path_factory.mktemp("embedding-cache")
    app = create_embedding_app(Settings(_env_file=None, embedding_cache_dir=cache))
    with serve_in_thread(app) as url:
        wait_until(lambda: healthy(f"{url}/health"), 120, "the embedding model to load")
        yield url


@pytest.fixture(scope="session")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real gateway; both aliases served by one real llama-server (bundled model)."""
    llama = LlamaProcess("inference-chat", tmp_path_factory.mktemp("llama"), ctx_size=4096).start()
    try:
        llama.wait_ready()
        settings = make_settings(
            llama.url, llama.url, llm_first_byte_timeout=30.0, llm_request_timeout=120.0
        )
        with serve_in_thread(create_gateway_app(settings)) as url:
            wait_until(lambda: healthy(f"{url}/health"), 30, "the gateway to see its backend")
            yield url
    finally:
        llama.stop()
