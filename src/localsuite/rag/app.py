"""The rag service's app: index documents, answer questions with their sources.

    POST   /index?collection=NAME      index DATA_DIR/documents, or {"paths": [...]}   202 + job
    POST   /documents?collection=NAME  index files sent as multipart/form-data        202 + job
    GET    /jobs, /jobs/{id}           index jobs and their progress
    POST   /query                      {"query", "collection", "topk", ...} → answer + sources
    GET    /collections                collections with their points and documents
    DELETE /collections/{name}         a collection, its ledger and its unfinished jobs
    GET    /health, /health/live, /metrics

Accepted work is on disk (SQLite, uploads under DATA_DIR/rag) before the 202 is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from localsuite.core.app import JSON, create_service_app
from localsuite.core.errors import (
    ConfigError,
    Forbidden,
    InvalidRequest,
    LocalSuiteError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from localsuite.core.health import HealthReport
from localsuite.core.http import create_session
from localsuite.core.metrics import RagMetrics, new_registry
from localsuite.core.retry import RetryPolicy
from localsuite.core.settings import Settings
from localsuite.core.timeouts import Deadline
from localsuite.rag.chunking import Chunker
from localsuite.rag.clients import EmbeddingClient, GatewayClient
from localsuite.rag.dependencies import Dependency, Guard
from localsuite.rag.ingest import Indexer, plan_paths
from localsuite.rag.jobstore import JobStore
from localsuite.rag.loaders import indexable, kind_of
from localsuite.rag.query import Answerer, Question
from localsuite.rag.store import VectorStore

log = logging.getLogger("localsuite.rag")

COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PROBE_BUDGET = 2.0  # seconds one health probe of a dependency may take

CollectionParam = Annotated[
    str | None,
    Query(pattern=COLLECTION_PATTERN, description="Collection name; default RAG_COLLECTION"),
]


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        None,
        max_length=1000,
        description="Files or folders to index (relative ones are inside the documents "
        "folder); none: the whole documents folder.",
    )


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=8000, description="The question")
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)
    topk: int | None = Field(None, ge=1, le=100, description="Chunks to retrieve; default RAG_TOPK")
    generate: bool = Field(True, description="False: retrieve only, no answer")
    stream: bool = Field(False, description="Answer as server-sent events")
    model: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Gateway alias; default by RAG_MODEL_ROUTING",
    )
    max_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float | None = Field(None, ge=0, le=2)


class RagService:
    """What the routes share; built at start-up, closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.rag_chunk_overlap >= settings.rag_chunk_size:
            raise ConfigError("RAG_CHUNK_OVERLAP must be smaller than RAG_CHUNK_SIZE")
        self.chunker = Chunker(settings.rag_chunk_size, settings.rag_chunk_overlap)
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
        self.embedding = EmbeddingClient(
            self.session, settings.embedding_service_url, settings.embedding_timeout,
            settings.api_key,
        )  # fmt: skip
        self.gateway = GatewayClient(self.session, settings.gateway_service_url, settings.api_key)
        interval = settings.rag_probe_interval
        self.dependencies = {
            "qdrant": Dependency("qdrant", self.store.ping, interval, self.metrics.dependency),
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
            settings, self.store, self.embedding, self.gateway, self.guard, self.metrics
        )
        self.indexer = Indexer(
            self.jobs, self.store, self.embedding, self.dependencies, self.chunker,
            batch_size=settings.rag_index_batch_size,
            backoff=RetryPolicy(wait_min=0.25, wait_max=max(0.25, settings.qdrant_retry_max_wait)),
            embed_budget=settings.embedding_timeout, metrics=self.metrics, uploads=self.uploads,
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
            await self.session.close()

    def collection(self, name: str | None) -> str:
        return name or self.settings.rag_collection

    async def health(self) -> HealthReport:
        checks = tuple(d.check() for d in self.dependencies.values()) if self._ready else ()
        down = [name for name, d in self.dependencies.items() if not d.up] if self._ready else []
        jobs = await asyncio.to_thread(self.jobs.active_counts) if self._ready else {}
        retry = min((self.guard.retry_after(n) for n in down), default=1.0)
        info = {
            "qdrant": self.store.where if self._ready else None,
            "documents_dir": str(self.documents_dir),
            "jobs": jobs,
        }
        return HealthReport("rag", checks, info, retry_after=retry)

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

    async def job(self, job_id: str) -> dict[str, Any]:
        job = await asyncio.to_thread(self.jobs.get, job_id)
        if job is None:
            raise NotFound(f"no index job {job_id!r}", code="job_not_found")
        return job


def create_rag_app(settings: Settings) -> FastAPI:
    service = RagService(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = create_service_app(
        service="rag",
        health=service.health,
        registry=service.registry,
        api_key=settings.api_key,
        lifespan=lifespan,
        description="Index documents into Qdrant and answer questions with their sources.",
    )
    app.state.rag = service

    @app.post("/index", status_code=202, tags=["index"], summary="Index files or folders (a job)")
    async def index(
        collection: CollectionParam = None, body: Annotated[IndexRequest | None, Body()] = None
    ) -> Response:
        job = await service.accept_paths(
            service.collection(collection), body.paths if body else None
        )
        return _accepted(job)

    @app.post(
        "/documents",
        status_code=202,
        tags=["index"],
        summary="Index uploaded files (multipart/form-data, field `files`)",
    )
    async def upload(request: Request, collection: CollectionParam = None) -> Response:
        files = await _read_upload(request, settings.rag_max_upload_bytes)
        job = await service.accept_upload(service.collection(collection), files)
        return _accepted(job)

    @app.get("/jobs", tags=["index"], summary="Recent index jobs, newest first")
    async def jobs(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        return {"jobs": await asyncio.to_thread(service.jobs.recent, limit)}

    @app.get("/jobs/{job_id}", tags=["index"], summary="One index job and its progress")
    async def job(job_id: Annotated[str, PathParam(max_length=64)]) -> dict[str, Any]:
        return await service.job(job_id)

    @app.post("/query", tags=["query"], summary="Answer a question from a collection, with sources")
    async def query(body: QueryRequest) -> Response:
        question = Question(
            body.query, service.collection(body.collection), body.topk or settings.rag_topk,
            body.model, body.max_tokens, body.temperature,
        )  # fmt: skip
        try:
            retrieved = await service.answerer.retrieve(question)
            context = retrieved.context(service.documents_dir)
            if body.stream:
                return await _stream(service, question, retrieved, context)
            result: dict[str, Any] = {"answer": None, "model": None, "usage": None}
            if body.generate:
                result = await service.answerer.generate(question, retrieved)
        except LocalSuiteError as exc:
            service.metrics.query(
                "unavailable"
                if exc.status == 503
                else "client_error"
                if exc.status < 500
                else "failed"
            )
            raise
        service.metrics.query("ok")
        payload = {
            **result,
            "context": context,
            "collection": question.collection,
            "retrieval_ms": round(retrieved.retrieval_ms, 2),
            "timings": retrieved.timings(),
        }
        return Response(orjson.dumps(payload), media_type=JSON)

    @app.get(
        "/collections", tags=["collections"], summary="Collections, their points and documents"
    )
    async def collections() -> dict[str, Any]:
        deadline = Deadline(settings.qdrant_timeout)
        infos = await service.guard.call("qdrant", service.store.collections, deadline)
        documents = await asyncio.to_thread(service.jobs.document_counts)
        return {
            "collections": [
                {
                    "name": i.name,
                    "points": i.points,
                    "dim": i.dim,
                    "documents": documents.get(i.name, 0),
                }
                for i in infos
            ]
        }

    @app.delete("/collections/{name}", tags=["collections"], summary="Delete a collection")
    async def delete_collection(
        name: Annotated[str, PathParam(pattern=COLLECTION_PATTERN)],
    ) -> dict[str, Any]:
        deadline = Deadline(settings.qdrant_timeout)
        existed = await service.guard.call("qdrant", lambda: service.store.drop(name), deadline)
        forgotten = await asyncio.to_thread(service.jobs.forget_collection, name)
        cancelled = await asyncio.to_thread(service.jobs.cancel_collection, name)
        for job_id in cancelled:  # their uploads will never be read now
            await asyncio.to_thread(shutil.rmtree, service.uploads / job_id, True)
        service.indexer.forget(name)
        if not (existed or forgotten or cancelled):
            raise NotFound(f"collection {name!r} does not exist", code="collection_not_found")
        return {"deleted": name, "documents": forgotten, "jobs_cancelled": len(cancelled)}

    return app


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


def _accepted(job: dict[str, Any]) -> Response:
    return Response(
        orjson.dumps({"job": job}), 202, {"Location": f"/jobs/{job['id']}"}, media_type=JSON
    )


async def _read_upload(request: Request, limit: int) -> list[UploadFile]:
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise InvalidRequest("an upload needs a Content-Length header", code="length_required")
    if int(declared) > limit:
        raise PayloadTooLarge(f"upload is larger than RAG_MAX_UPLOAD_BYTES ({limit} bytes)")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest(
            "send files as multipart/form-data, in fields named `files`", code="not_multipart"
        )
    try:
        form = await request.form(max_files=1000, max_fields=1000)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        raise InvalidRequest(f"unreadable multipart body: {exc}", code="bad_multipart") from exc
    return [f for f in form.getlist("files") if isinstance(f, UploadFile)]


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


async def _stream(
    service: RagService, question: Question, retrieved: Any, context: list[dict[str, Any]]
) -> Response:
    """Start the answer stream before the 200: a gateway that is down is still a 503."""
    events = service.answerer.stream(question, retrieved)
    guard = service.guard
    try:
        first = await anext(events)
    except LocalSuiteError:
        raise
    except Exception as exc:
        raise guard.translate("api-gateway", exc) from exc

    async def body() -> AsyncIterator[bytes]:
        yield _sse({"type": "context", "collection": question.collection, "context": context})
        yield _sse(first)
        try:
            async for event in events:
                yield _sse(event)
        except Exception as exc:  # after the 200: end with an error event, never silently
            error = exc if isinstance(exc, LocalSuiteError) else guard.translate("api-gateway", exc)
            yield _sse({"type": "error", "error": error.body()["error"]})
            return
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"
