"""Fixtures: the rag service with real dependencies — the embedding service with the
bundled model and the gateway over a real llama-server (tests/conftest.py), embedded
Qdrant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localsuite.core.settings import Settings
from localsuite.core.tracing import Tracing
from localsuite.rag.app import create_rag_app
from localsuite.rag.service import RagService
from localsuite.testing.rag import Rag
from localsuite.testing.servers import serve_in_thread

RagFactory = Callable[..., Rag]


@pytest.fixture
def rag_factory(tmp_path: Path, embedding_url: str, gateway_url: str) -> Iterator[RagFactory]:
    opened: list[Any] = []

    def build(tracing: Tracing | None = None, **overrides: Any) -> Rag:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "embedding_url": embedding_url,
            "api_gateway_url": gateway_url,
            "rag_chunk_size": 48,
            "rag_chunk_overlap": 12,
            "rag_llm_max_tokens": 24,
            "rag_probe_interval": 0.5,
            **overrides,
        }
        app = create_rag_app(Settings(_env_file=None, **values), tracing)
        server = serve_in_thread(app)
        url = server.__enter__()
        client = httpx.Client(base_url=url, timeout=120)
        opened.append((server, client))
        service: RagService = app.state.rag
        return Rag(url, service, service.documents_dir, client)

    yield build
    for server, client in reversed(opened):
        client.close()
        server.__exit__(None, None, None)


@pytest.fixture
def rag(rag_factory: RagFactory) -> Rag:
    return rag_factory()
