"""Fixtures: the real bundled model, loaded once per session, and services in front of it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localsuite.core.settings import Settings
from localsuite.embedding.app import create_embedding_app
from localsuite.embedding.backends.base import Embedded, EmbeddingBackend
from localsuite.embedding.backends.sentence_transformers import SentenceTransformersBackend
from localsuite.testing.servers import healthy, serve_in_thread, wait_until

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="session")
def make_settings(model_cache: Path) -> SettingsFactory:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"embedding_cache_dir": model_cache, **overrides}
        return Settings(_env_file=None, **values)

    return build


@pytest.fixture(scope="session")
def real_backend(make_settings: SettingsFactory) -> Iterator[SentenceTransformersBackend]:
    """The bundled all-MiniLM-L6-v2 on CPU torch, loaded once (it takes seconds)."""
    backend = SentenceTransformersBackend(make_settings())
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="module")
def service_url(
    make_settings: SettingsFactory, real_backend: SentenceTransformersBackend
) -> Iterator[str]:
    """A real embedding service (uvicorn on a loopback port) with the shared model."""
    app = create_embedding_app(make_settings(), backend=real_backend)
    with serve_in_thread(app) as url:
        wait_until(lambda: healthy(f"{url}/health"), what="the embedding service to be ready")
        yield url


class GatedBackend:
    """The real backend behind a gate: `load()` waits until the test opens it."""

    def __init__(self, inner: EmbeddingBackend) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.model = inner.model
        self.concurrency = inner.concurrency
        self.gate = threading.Event()  # opened from the test's thread

    @property
    def dim(self) -> int | None:
        return self.inner.dim if self.gate.is_set() else None

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    async def load(self) -> None:
        await asyncio.to_thread(self.gate.wait)
        await self.inner.load()

    async def embed(self, texts: list[str]) -> Embedded:
        return await self.inner.embed(texts)

    async def close(self) -> None:
        pass


@pytest.fixture
def gated_backend(real_backend: SentenceTransformersBackend) -> Iterator[GatedBackend]:
    gated = GatedBackend(real_backend)
    yield gated
    gated.gate.set()  # a loader still waiting must not hold its thread forever
