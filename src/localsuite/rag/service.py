"""The rag service's state and its work: what the routes share, built at start-up.

It owns the dependencies (the Qdrant store, the embedding and gateway clients, their
probes and the retry guard), the job store, the lexical index, the query cache, the
indexer and the answerer, and it accepts index work: paths confined to the folders rag
may read, uploads written to disk before the job that reads them is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile

from localsuite.core.bundled import BUNDLED_NAME
from localsuite.core.errors import (
    ConfigError,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)
from localsuite.core.health import Check, HealthReport, timed_check
from localsuite.core.http import create_session
from localsuite.core.metrics import RagMetrics, new_registry
from localsuite.core.retry import RetryPolicy
from localsuite.core.settings import Settings
from localsuite.core.timeouts import Deadline
from localsuite.core.tracing import Tracing
from localsuite.rag.cache import QueryCache
from localsuite.rag.chunking import Chunker
from localsuite.rag.clients import EmbeddingClient, GatewayClient
from localsuite.rag.dependencies import Dependency, Guard
from localsuite.rag.ingest import Indexer, plan_paths
from localsuite.rag.jobstore import FINAL_STATES, JobStore
from localsuite.rag.lexical import LexicalIndex
from localsuite.rag.loaders import indexable, kind_of
from localsuite.rag.query import Answerer
from localsuite.rag.rerank import load_reranker
from localsuite.rag.store import VectorStore
from localsuite.rag.tokens import TokenizerSource, load_counter

log = logging.getLogger("localsuite.rag")

PROBE_BUDGET = 2.0  # seconds one health probe of a dependency may take
LLM_PROBE_BUDGET = 30.0  # `GET /health?llm=true`: one token from the chat model
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class RagService:
    """What the routes share; built at start-up, closed at shutdown."""

    def __init__(self, settings: Settings, tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing or Tracing.from_settings(settings, "rag")
        if settings.rag_chunk_overlap >= settings.rag_chunk_size:
            raise ConfigError("RAG_CHUNK_OVERLAP must be smaller than RAG_CHUNK_SIZE")
        self.counter = load_counter(
            TokenizerSource(
                settings.rag_tokenizer, settings.embedding_model_path,
                settings.embedding_model == BUNDLED_NAME, settings.embedding_cache,
            )
        )  # fmt: skip
        self.chunker = Chunker(settings.rag_chunk_size, settings.rag_chunk_overlap, self.counter)
        self.cache = QueryCache(settings.rag_query_cache_size, settings.rag_query_cache_ttl)
        self.reranker = load_reranker(settings.rag_reranker_model)
        self.registry = new_registry()
        self.metrics = RagMetrics(self.registry)
        self.root = settings.data_dir / "rag"
        self.uploads = self.root / "uploads"
        self.documents_dir = settings.documents_dir.resolve()
        self.roots = [root.resolve() for root in settings.index_roots]
        self.policy = RetryPolicy.from_retries(
            settings.qdrant_max_retries,
            settings.qdrant_retry_min_wait,
            settings.qdrant_retry_max_wait,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False

    async def start(self) -> None:
        settings = self.settings
        self.documents_dir.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.session = create_session(connect_timeout=settings.llm_connect_timeout)
        self.store = VectorStore(
            url=settings.qdrant_url, path=self.root / "qdrant", timeout=settings.qdrant_timeout
        )
        self.jobs = await asyncio.to_thread(JobStore, self.root / "jobs.sqlite")
        self.lexical = await asyncio.to_thread(LexicalIndex, self.root / "lexical.sqlite")
        self.embedding = EmbeddingClient(
            self.session, settings.embedding_service_url, settings.embedding_timeout,
            settings.api_key, self.tracing,
        )  # fmt: skip
        self.gateway = GatewayClient(self.session, settings.gateway_service_url, settings.api_key,
                                     self.tracing)  # fmt: skip
        interval = settings.rag_probe_interval
        self.dependencies = {
            "qdrant": Dependency(
                "qdrant", lambda: self.store.ping(PROBE_BUDGET), interval, self.metrics.dependency
            ),
            "embedding": Dependency(
                "embedding",
                lambda: self.embedding.health(PROBE_BUDGET),
                interval,
                self.metrics.dependency,
            ),
            "api-gateway": Dependency(
                "api-gateway",
                lambda: self.gateway.health(PROBE_BUDGET),
                interval,
                self.metrics.dependency,
            ),
        }
        self.guard = Guard(self.dependencies, self.policy, self.metrics.retry)
        self.answerer = Answerer(
            settings, self.store, self.embedding, self.gateway, self.guard, self.metrics,
            self.lexical, self.reranker, self.tracing,
        )  # fmt: skip
        self.indexer = Indexer(
            self.jobs, self.store, self.lexical, self.embedding, self.dependencies, self.chunker,
            batch_size=settings.rag_index_batch_size,
            backoff=RetryPolicy(wait_min=0.25, wait_max=max(0.25, settings.qdrant_retry_max_wait)),
            embed_budget=settings.embedding_timeout, metrics=self.metrics, uploads=self.uploads,
            concurrency=settings.rag_index_concurrency, on_change=self.cache.changed,
            tracing=self.tracing,
        )  # fmt: skip
        # One probe round before serving, so the first requests and /health know who is up.
        await asyncio.gather(*(d.probe() for d in self.dependencies.values()))
        self._tasks = [
            asyncio.create_task(d.run(), name=f"probe-{d.name}") for d in self.dependencies.values()
        ]
        self._tasks.append(asyncio.create_task(self.indexer.run(), name="indexer"))
        self._ready = True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        if self._ready:
            await self.store.close()
            await asyncio.to_thread(self.jobs.close)
            await asyncio.to_thread(self.lexical.close)
            await self.session.close()
        self.tracing.shutdown()

    def collection(self, name: str | None) -> str:
        return name or self.settings.rag_collection

    async def health(self, *, llm: bool = False) -> HealthReport:
        """Each dependency's last probe; with `llm`, the chat model is asked for a token
        too (through the gateway), which says more than the gateway's own health."""
        checks = tuple(d.check() for d in self.dependencies.values()) if self._ready else ()
        down = [name for name, d in self.dependencies.items() if not d.up] if self._ready else []
        if llm and self._ready:
            checks = (*checks, await self._ask_llm())
        jobs = await asyncio.to_thread(self.jobs.active_counts) if self._ready else {}
        retry = min((self.guard.retry_after(n) for n in down), default=1.0)
        info = {
            "qdrant": self.store.where if self._ready else None,
            "documents_dir": str(self.documents_dir),
            "jobs": jobs,
        }
        return HealthReport("rag", checks, info, retry_after=retry)

    async def _ask_llm(self) -> Check:
        alias = self.settings.api_gateway_chat_model
        body = {"model": alias, "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1, "temperature": 0}  # fmt: skip
        budget = min(LLM_PROBE_BUDGET, self.settings.rag_llm_timeout)

        async def ask() -> str:
            answer = await self.gateway.chat(body, budget)
            return f"{answer.get('model') or alias} answered"

        return await timed_check("llm", ask)

    # --- accepting work ------------------------------------------------------------------
    def resolve_paths(self, given: list[str] | None) -> list[Path]:
        if not given:
            return [self.documents_dir]
        return [self._allowed_path(raw) for raw in given]

    def _allowed_path(self, raw: str) -> Path:
        shown = raw if len(raw) <= 200 else f"{raw[:200]}…"
        if "\x00" in raw:
            raise InvalidRequest("a path contains a NUL character", param="paths")
        try:
            path = Path(raw).expanduser()
            path = (path if path.is_absolute() else self.documents_dir / path).resolve()
            allowed = any(path.is_relative_to(root) for root in self.roots)
            exists, is_file = path.exists(), path.is_file()
        except (OSError, RuntimeError) as exc:  # too long, a symlink loop, no home dir
            raise InvalidRequest(f"unusable path {shown!r}: {exc}", param="paths") from exc
        if not allowed:
            roots = ", ".join(map(str, self.roots))
            raise Forbidden(
                f"{shown} is outside the folders rag may read ({roots}); put it in the "
                "documents folder, add its folder to RAG_INDEX_ROOTS, or upload it to "
                "POST /documents",
                code="path_not_allowed",
            )
        if not exists:
            raise NotFound(f"no such file or folder: {path}", code="path_not_found")
        if is_file and not indexable(path):
            raise InvalidRequest(
                f"{path.name}: not a supported document type (text, Markdown, source code, "
                "HTML, PDF)",
                code="unsupported_file_type",
            )
        return path

    async def accept_paths(self, collection: str, given: list[str] | None) -> dict[str, Any]:
        paths = self.resolve_paths(given)
        known = await asyncio.to_thread(self.jobs.sources, collection)
        work = await asyncio.to_thread(plan_paths, paths, known)
        with storage("record the index job"):
            job_id = await asyncio.to_thread(self.jobs.create, collection, work)
        return await self.accepted(job_id)

    async def accept_upload(self, collection: str, files: list[UploadFile]) -> dict[str, Any]:
        if not files:
            raise InvalidRequest("no files in the upload: send them as form fields named `files`")
        job_id = uuid.uuid4().hex
        folder = self.uploads / job_id
        work: list[tuple[str, str, str | None]] = []
        try:
            with storage("keep the uploaded files"):
                folder.mkdir(parents=True)
            for upload in files:
                name = Path(upload.filename or "").name
                if not name or name in (".", ".."):
                    raise InvalidRequest("every uploaded file needs a file name")
                if kind_of(Path(name)) is None:
                    raise InvalidRequest(
                        f"{name}: not a supported document type", code="unsupported_file_type"
                    )
                target = folder / f"{len(work)}-{name}"
                data = await upload.read()
                with storage("keep the uploaded file"):
                    await asyncio.to_thread(_write_durably, target, data)
                work.append(("index", f"upload:{name}", str(target)))
            with storage("record the index job"):
                await asyncio.to_thread(self.jobs.create, collection, work, job_id=job_id)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return await self.accepted(job_id)

    async def accepted(self, job_id: str) -> dict[str, Any]:
        self.indexer.wake()
        self.metrics.job_states(await asyncio.to_thread(self.jobs.active_counts))
        return await self.job(job_id)

    async def finished(self, job: dict[str, Any], within: float) -> dict[str, Any]:
        """The job once it is over, or as it stands after `within` seconds."""
        if job["state"] not in FINAL_STATES and within > 0:
            await self.indexer.wait_finished(job["id"], within)
        return await self.job(job["id"])

    async def forget_collection(self, name: str) -> tuple[bool, int, list[str]]:
        """Delete a collection everywhere: Qdrant, the ledger, the lexical index, its
        unfinished jobs (and their uploads), its cached answers."""
        deadline = Deadline(self.settings.qdrant_timeout)
        existed = await self.guard.call("qdrant", lambda: self.store.drop(name), deadline)
        forgotten = await asyncio.to_thread(self.jobs.forget_collection, name)
        cancelled = await asyncio.to_thread(self.jobs.cancel_collection, name)
        await asyncio.to_thread(self.lexical.drop, name)
        for job_id in cancelled:  # their uploads will never be read now
            await asyncio.to_thread(shutil.rmtree, self.uploads / job_id, True)
            self.indexer.ended(job_id)
        self.indexer.forget(name)
        self.cache.changed(name)
        return existed, forgotten, cancelled

    async def job(self, job_id: str) -> dict[str, Any]:
        job = await asyncio.to_thread(self.jobs.get, job_id)
        if job is None:
            raise NotFound(f"no index job {job_id!r}", code="job_not_found")
        return job


@contextmanager
def storage(what: str) -> Iterator[None]:
    """A failure to write accepted work (disk full, a read-only DATA_DIR) refuses the work
    with 503: it was not accepted, so nothing is lost, and the client may try again."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot %s: %s", what, exc)
        raise ServiceUnavailable(
            f"cannot {what} ({type(exc).__name__}: {exc}); is the disk under DATA_DIR full "
            "or read-only?",
            code="storage_unavailable",
            retry_after=30,
        ) from exc


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
