"""The embedding service's state: one backend, its micro-batcher, its lifecycle and health.

    loading ──▶ ready
       │
       └──────▶ failed       (the weights could not be read: the reason is in /health)

`start()` returns at once and loads in a background task, so the process serves
`/health/live` while torch and the weights load (several seconds); meanwhile `/health`
and every embedding request answer 503 with Retry-After, as llama-server does. A backend
that cannot be reached yet (the openai backend with its remote down) stays `loading` and
is tried again with backoff. `_set_state` is the state's only writer.

Once ready, a remote backend may still go away: a batch that fails because the remote did
not answer marks an outage, `/health` then probes the remote itself (one probe at a time)
and reports 503 until it answers again, so the service recovers without traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from enum import StrEnum
from typing import Any

from localsuite.core.errors import (
    DeadlineExceeded,
    RateLimited,
    ServiceUnavailable,
)
from localsuite.core.health import Check, HealthReport
from localsuite.core.metrics import EmbeddingMetrics, new_registry
from localsuite.core.retry import RetryPolicy
from localsuite.core.settings import Settings
from localsuite.embedding.backends.base import Embedded, EmbeddingBackend
from localsuite.embedding.batcher import MicroBatcher

log = logging.getLogger("localsuite.embedding")

# Errors that say "the backend's remote is away", not "this input is wrong"; loading tries
# again after them. A 429 is no outage (the remote answers), but loading waits it out too.
UNREACHABLE = (ServiceUnavailable, DeadlineExceeded)
TRY_AGAIN = (*UNREACHABLE, RateLimited)
# Tries to reach a remote backend that is down at start-up: until it answers.
LOAD_BACKOFF = RetryPolicy(attempts=None, wait_min=0.5, wait_max=2.0)
LOADING_RETRY_AFTER = 1.0
FAILED_RETRY_AFTER = 30.0


class State(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class EmbeddingService:
    def __init__(self, settings: Settings, backend: EmbeddingBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.registry = new_registry()
        self.metrics = EmbeddingMetrics(self.registry)
        self.batcher = MicroBatcher(
            backend.embed,
            batch_size=settings.embedding_batch_size,
            concurrency=backend.concurrency,
            on_batch=self._batch_ran,
        )
        self.state = State.LOADING
        self.error: str | None = None
        self.outage: str | None = None
        self.load_seconds: float | None = None
        self._loader: asyncio.Task[None] | None = None
        self._probe = asyncio.Lock()
        self.metrics.state_changed(self.state)

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loader = asyncio.create_task(self._load(), name="embedding-load")

    async def stop(self, *, close_backend: bool = True) -> None:
        if self._loader is not None:
            self._loader.cancel()
            with suppress(asyncio.CancelledError):
                await self._loader
        await self.batcher.aclose()
        if close_backend:
            await self.backend.close()

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            async for attempt in LOAD_BACKOFF.retrying(
                retry_on=lambda exc: isinstance(exc, TRY_AGAIN), on_retry=self._not_reachable
            ):
                with attempt:
                    await self.backend.load()
        except Exception as exc:  # every load failure is reported, none is raised
            log.exception("embedding model %s failed to load", self.backend.model)
            self.error = f"{type(exc).__name__}: {exc}"
            self._set_state(State.FAILED)
            return
        self.error = None
        self._set_state(State.READY, time.perf_counter() - started)

    def _not_reachable(self, exc: BaseException, wait: float) -> None:
        self.error = exc.message if isinstance(exc, TRY_AGAIN) else str(exc)
        log.warning("embedding backend not reachable yet (%s); again in %.1fs", exc, wait)

    def _set_state(self, state: State, load_seconds: float | None = None) -> None:
        self.state = state
        if load_seconds is not None:
            self.load_seconds = load_seconds
        self.metrics.state_changed(state, load_seconds)

    # --- work --------------------------------------------------------------------------
    @property
    def dim(self) -> int | None:
        return self.backend.dim

    def ensure_ready(self) -> None:
        if self.state is State.READY:
            return
        if self.state is State.LOADING:
            detail = f" ({self.error})" if self.error else ""
            raise ServiceUnavailable(
                f"the embedding model {self.backend.model} is loading{detail}",
                code="model_loading",
                retry_after=LOADING_RETRY_AFTER,
            )
        raise ServiceUnavailable(
            f"the embedding model {self.backend.model} failed to load: {self.error}",
            code="model_failed",
            retry_after=FAILED_RETRY_AFTER,
        )

    async def embed(self, texts: list[str]) -> Embedded:
        """Vectors for `texts`, in order, batched with other requests' texts."""
        self.ensure_ready()
        self.metrics.queue(self.batcher.pending + len(texts))
        try:
            result = await self.batcher.submit(texts)
        except UNREACHABLE as exc:
            self.outage = exc.message
            raise
        self.outage = None
        return result

    def _batch_ran(self, texts: int, seconds: float, ok: bool) -> None:
        self.metrics.batch(texts, seconds, ok)
        self.metrics.queue(self.batcher.pending)

    # --- health ------------------------------------------------------------------------
    async def health(self) -> HealthReport:
        checks = [self._model_check()]
        if self.state is State.READY and self.outage is not None:
            await self._probe_backend()
            if self.outage is not None:
                checks.append(Check("backend", False, detail=self.outage))
        retry_after = FAILED_RETRY_AFTER if self.state is State.FAILED else LOADING_RETRY_AFTER
        return HealthReport("embedding", tuple(checks), self.info(), retry_after=retry_after)

    def info(self) -> dict[str, Any]:
        return {
            "model": self.backend.model,
            "dim": self.dim,
            "backend": self.backend.kind,
            "state": self.state.value,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 3),
            "batch_size": self.settings.embedding_batch_size,
            "max_texts": self.settings.embedding_max_texts,
            "max_chars": self.settings.embedding_max_chars,
            "queued_texts": self.batcher.pending,
            **self.backend.describe(),
        }

    def _model_check(self) -> Check:
        if self.state is State.READY:
            return Check("model", True, detail=f"{self.backend.model} ready")
        detail = self.state.value + (f": {self.error}" if self.error else "")
        return Check("model", False, detail=detail)

    async def _probe_backend(self) -> None:
        if self._probe.locked():  # a probe is under way: report what is known
            return
        async with self._probe:
            try:
                async with asyncio.timeout(self.settings.health_probe_timeout):
                    await self.backend.embed(["health"])
            except Exception as exc:  # a failing dependency is data here, not an error
                self.outage = str(exc) or "the backend did not answer in time"
                return
            self.outage = None
