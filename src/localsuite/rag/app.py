"""The rag service's app: index documents, answer questions with their sources.

    POST   /index?collection=NAME      index DATA_DIR/documents, or {"paths": [...]}  200 or 202
    POST   /documents?collection=NAME  index files sent as multipart/form-data        202 + job
    GET    /jobs, /jobs/{id}           index jobs and their progress
    POST   /query                      {"query", "collection", "topk", ...} → answer + sources
    GET    /collections                collections with their points and documents
    DELETE /collections/{name}         a collection, its ledger and its unfinished jobs
    GET    /health[?llm=true], /health/live, /metrics

Accepted work is on disk (SQLite, uploads under DATA_DIR/rag) before any answer is sent.

The original suite's forms keep working beside ours (its users' scripts call them):

- `POST /index?collection=X[&path=P]`, or a body `{"collection": X}`, answers as the
  original did, `{"collection", "chunks"}` (plus our `job`), once the job is over; a job
  still running after `RAG_INDEX_SYNC_WAIT` seconds (a dependency down, a big folder)
  answers 202 with the job instead. `Prefer: respond-async` (RFC 7240) asks for the 202
  at once; the CLI and the MCP server send it.
- `/query` context items carry `doc_id` and `chunk_id`; answers carry `cached` and
  `response_time_ms`, and a repeated question is answered from the query cache.
- `/health` says `status: healthy | degraded` and `dependencies: {qdrant, embedding,
  api_gateway, llm}` beside our `ok` and `checks`; `?llm=true` asks the chat model too.
- Deliberately not kept: the original answered 200 for a query on a collection that does
  not exist and for an empty query; rag answers 404 and 422, which show a typo or a bug
  instead of hiding it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from localsuite.core.app import JSON, create_service_app
from localsuite.core.errors import (
    Conflict,
    InvalidRequest,
    LocalSuiteError,
    NotFound,
    PayloadTooLarge,
)
from localsuite.core.request_ids import request_id_of
from localsuite.core.settings import Settings
from localsuite.core.timeouts import Deadline
from localsuite.core.tracing import Span, Tracing
from localsuite.rag.query import Question
from localsuite.rag.service import COLLECTION_PATTERN, RagService

log = logging.getLogger("localsuite.rag")


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
    collection: str | None = Field(
        None,
        pattern=COLLECTION_PATTERN,
        description="The collection (the original suite's form; `?collection=` also works)",
    )


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=8000, description="The question")
    collection: str | None = Field(None, pattern=COLLECTION_PATTERN)
    topk: int | None = Field(None, ge=1, le=100, description="Chunks to retrieve; default RAG_TOPK")
    generate: bool = Field(True, description="False: retrieve only, no answer")
    retrieval: Literal["hybrid", "dense", "lexical"] | None = Field(
        None, description="How chunks are found; default RAG_RETRIEVAL"
    )
    per_source: int | None = Field(
        None, ge=0, le=100,
        description="At most this many chunks of one document; default RAG_CHUNKS_PER_SOURCE",
    )  # fmt: skip
    cache: bool = Field(True, description="False: neither read nor fill the query cache")
    stream: bool = Field(False, description="Answer as server-sent events")
    model: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Gateway alias; default by RAG_MODEL_ROUTING",
    )
    max_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float | None = Field(None, ge=0, le=2)


def create_rag_app(settings: Settings, tracing: Tracing | None = None) -> FastAPI:
    """rag; `tracing` defaults to what the `OTEL_*` settings ask (usually nothing)."""
    service = RagService(settings, tracing)

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
        admin_key=settings.admin_key,
        admin_routes=lambda method, _: method == "DELETE",  # deleting a collection
        lifespan=lifespan,
        description="Index documents into Qdrant and answer questions with their sources.",
    )
    app.state.rag = service

    @app.post(
        "/index",
        tags=["index"],
        summary="Index files or folders: the result (200), or the job (202)",
        responses={202: {"description": "The job, still running (or `Prefer: respond-async`)"}},
    )
    async def index(
        request: Request,
        collection: CollectionParam = None,
        path: Annotated[
            str | None,
            Query(min_length=1, max_length=4096, description="One file or folder to index"),
        ] = None,
        body: Annotated[IndexRequest | None, Body()] = None,
    ) -> Response:
        named = body.collection if body else None
        if collection and named and collection != named:
            raise InvalidRequest(
                f"two collections named: {collection!r} in the query, {named!r} in the body",
                code="conflicting_collection", param="collection",
            )  # fmt: skip
        given = [*(body.paths or [] if body else []), *([path] if path else [])]
        name = service.collection(collection or named)
        job = await service.accept_paths(name, given or None)
        if respond_async(request.headers.get("prefer")):
            return _accepted(job, {"Preference-Applied": "respond-async"})
        job = await service.finished(job, settings.rag_index_sync_wait)
        if job["state"] == "done":
            chunks = job["chunks_added"] + job["chunks_unchanged"]
            return Response(
                orjson.dumps({"collection": name, "chunks": chunks, "job": job}), media_type=JSON
            )
        if job["state"] in ("failed", "cancelled"):
            raise Conflict(
                f"index job {job['id']} {job['state']}: {job['error']}", code="index_job_failed"
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
    async def query(body: QueryRequest, request: Request) -> Response:
        tracing = service.tracing
        with tracing.active(
            "rag.query", parent=tracing.extract(request.headers),
            attributes={"localsuite.collection": service.collection(body.collection),
               "localsuite.request_id": request_id_of(request)},
        ) as span:  # fmt: skip
            return await answer(body, span)

    async def answer(body: QueryRequest, span: Span) -> Response:
        started = time.perf_counter()
        question = Question(
            body.query, service.collection(body.collection), body.topk or settings.rag_topk,
            body.model, body.max_tokens, body.temperature,
            retrieval=body.retrieval or settings.rag_retrieval,
            per_source=settings.rag_chunks_per_source if body.per_source is None
            else body.per_source,
        )  # fmt: skip
        cache = service.cache
        key = None
        if body.cache and not body.stream and cache.enabled:
            params = body.model_dump(exclude={"collection", "stream", "cache"})
            key = cache.key(question.collection, {**params, "topk": question.topk,
                                                  "retrieval": question.retrieval,
                                                  "per_source": question.per_source})  # fmt: skip
            hit = cache.get(key)
            span.set("localsuite.cached", hit is not None)
            if hit is not None:
                service.metrics.query("ok")
                service.metrics.cached()
                return _answer(hit, cached=True, started=started)
        try:
            retrieved = await service.answerer.retrieve(question)
            context = retrieved.context(service.documents_dir)
            if body.stream:
                return await _stream(service, question, retrieved, context, span)
            result: dict[str, Any] = {"answer": None, "model": None, "usage": None}
            if body.generate:
                result = await service.answerer.generate(question, retrieved)
        except LocalSuiteError as exc:
            service.metrics.query(_query_outcome(exc))
            raise
        service.metrics.query("ok")
        payload = {
            **result,
            "context": context,
            "collection": question.collection,
            "retrieval": question.retrieval,
            "retrieval_ms": round(retrieved.retrieval_ms, 2),
            "timings": retrieved.timings(),
        }
        if key is not None:
            cache.put(key, payload)
        return _answer(payload, cached=False, started=started)

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
        existed, forgotten, cancelled = await service.forget_collection(name)
        if not (existed or forgotten or cancelled):
            raise NotFound(f"collection {name!r} does not exist", code="collection_not_found")
        return {"deleted": name, "documents": forgotten, "jobs_cancelled": len(cancelled)}

    _replace_health(app, service)
    return app


def _accepted(job: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"job": job}), 202, {"Location": f"/jobs/{job['id']}", **(headers or {})},
        media_type=JSON,
    )  # fmt: skip


def respond_async(prefer: str | None) -> bool:
    """Whether a `Prefer` header (RFC 7240) asks for `respond-async`."""
    if not prefer:
        return False
    tokens = (p.split(";")[0].split("=")[0].strip().lower() for p in prefer.split(","))
    return "respond-async" in tokens


def _answer(payload: dict[str, Any], *, cached: bool, started: float) -> Response:
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    return Response(
        orjson.dumps({**payload, "cached": cached, "response_time_ms": elapsed}),
        media_type=JSON,
    )


LEGACY_NAMES = {"qdrant": "qdrant", "embedding": "embedding", "api-gateway": "api_gateway"}


def _replace_health(app: FastAPI, service: RagService) -> None:
    """rag's `/health`: the suite's report (`ok`, `checks`) with the original suite's
    `status` and `dependencies` beside it, and `?llm=true`."""
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "path", None) != "/health"
    ]

    @app.get("/health", tags=["health"], summary="Readiness, with every dependency's state")
    async def health(
        llm: Annotated[bool, Query(description="Also ask the chat model for a token")] = False,
    ) -> Response:
        report = await service.health(llm=llm)
        checks = {check.name: check.ok for check in report.checks}
        dependencies = {
            legacy: "healthy" if checks.get(name) else "unhealthy"
            for name, legacy in LEGACY_NAMES.items()
        }
        dependencies["llm"] = (
            ("healthy" if checks.get("llm") else "unhealthy") if llm else "not_checked"
        )
        body = {
            **report.body(),
            "status": "healthy" if report.ok else "degraded",
            "dependencies": dependencies,
        }
        return Response(orjson.dumps(body), report.status_code, report.headers(), media_type=JSON)


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


async def _stream(
    service: RagService,
    question: Question,
    retrieved: Any,
    context: list[dict[str, Any]],
    span: Span,
) -> Response:
    """Start the answer stream before the 200: a gateway that is down is still a 503."""
    events = service.answerer.stream(question, retrieved, span)
    guard = service.guard
    try:
        first = await anext(events)
    except LocalSuiteError:
        raise
    except Exception as exc:
        raise guard.translate("api-gateway", exc) from exc

    async def body() -> AsyncIterator[bytes]:
        outcome = "cancelled"  # the client left before the end
        try:
            yield _sse({"type": "context", "collection": question.collection, "context": context})
            yield _sse(first)
            try:
                async for event in events:
                    yield _sse(event)
            except Exception as exc:  # after the 200: end with an error event, never silently
                error = (
                    exc if isinstance(exc, LocalSuiteError) else guard.translate("api-gateway", exc)
                )
                outcome = _query_outcome(error)
                yield _sse({"type": "error", "error": error.body()["error"]})
                return
            outcome = "ok"
            yield b"data: [DONE]\n\n"
        finally:
            service.metrics.query(outcome)

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _query_outcome(error: LocalSuiteError) -> str:
    """A query's error as counted: a dependency that is down (503) is told apart."""
    return (
        "unavailable" if error.status == 503 else "client_error" if error.status < 500 else "failed"
    )


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"
