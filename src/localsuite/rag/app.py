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
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from localsuite.core.app import JSON, create_service_app
from localsuite.core.errors import (
    InvalidRequest,
    LocalSuiteError,
    NotFound,
    PayloadTooLarge,
)
from localsuite.core.settings import Settings
from localsuite.core.timeouts import Deadline
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
        admin_key=settings.admin_key,
        admin_routes=lambda method, _: method == "DELETE",  # deleting a collection
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
            service.metrics.query(_query_outcome(exc))
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
