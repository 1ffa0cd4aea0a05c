"""The embedding service's app: `/embed`, OpenAI's `/v1/embeddings`, health and metrics.

Both routes go through the same micro-batcher, so `/embed` and `/v1/embeddings` give the
same vectors. Vectors are serialized straight from numpy by orjson; `/v1/embeddings`
also answers `encoding_format: "base64"` (little-endian float32), which the official
OpenAI SDK asks for by default.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from localsuite.core.app import JSON, create_service_app, parse_json_object, read_body
from localsuite.core.errors import InvalidRequest, LocalSuiteError
from localsuite.core.openapi import request_body
from localsuite.core.settings import Settings
from localsuite.embedding import schema
from localsuite.embedding.backends import create_backend
from localsuite.embedding.backends.base import Embedded, EmbeddingBackend
from localsuite.embedding.service import EmbeddingService
from localsuite.embedding.validation import Limits, embed_texts, openai_request

# What a route answers: the body (numpy arrays inside) and how many texts it embedded.
Answer = tuple[dict[str, Any], int]


def create_embedding_app(settings: Settings, backend: EmbeddingBackend | None = None) -> FastAPI:
    """The service; `backend` defaults to the one EMBEDDING_BACKEND names (checked here:
    a configuration that cannot work raises `ConfigError` before anything listens).
    A backend passed in is loaded by the app but not closed by it (tests share one)."""
    owned = backend is None
    service = EmbeddingService(settings, backend or create_backend(settings))
    limits = Limits.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop(close_backend=owned)

    app = create_service_app(
        service="embedding",
        health=service.health,
        registry=service.registry,
        api_key=settings.api_key,
        admin_key=settings.admin_key,
        lifespan=lifespan,
        description="Text embeddings from a local model, or a remote OpenAI-style API.",
    )
    app.state.embedding = service

    async def measured(
        endpoint: str, request: Request, answer: Callable[[dict[str, Any]], Awaitable[Answer]]
    ) -> Response:
        started = time.perf_counter()
        try:
            body = parse_json_object(await read_body(request, limits.max_body_bytes))
            payload, texts = await answer(body)
        except LocalSuiteError as exc:
            service.metrics.request(endpoint, exc.outcome, 0, 0.0)
            raise
        content = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
        service.metrics.request(endpoint, "ok", texts, time.perf_counter() - started)
        return Response(content, media_type=JSON)

    @app.post(
        "/embed",
        tags=["embedding"],
        summary="Embed a list of texts",
        openapi_extra=request_body(schema.EmbedRequest),
        responses={200: {"model": schema.EmbedResponse}, **schema.ERROR_RESPONSES},
    )
    async def embed(request: Request) -> Response:
        async def answer(body: dict[str, Any]) -> Answer:
            texts = embed_texts(body, limits)
            result = await service.embed(texts)
            payload = {"embeddings": result.vectors, "model": service.backend.model,
                       "dim": int(result.vectors.shape[1])}  # fmt: skip
            return payload, len(texts)

        return await measured("embed", request, answer)

    @app.post(
        "/v1/embeddings",
        tags=["openai"],
        summary="Embeddings in OpenAI's shape (string or list input, float or base64)",
        openapi_extra=request_body(schema.EmbeddingsRequest),
        responses=schema.ERROR_RESPONSES,
    )
    async def embeddings(request: Request) -> Response:
        async def answer(body: dict[str, Any]) -> Answer:
            parsed = openai_request(body, limits)
            service.ensure_ready()
            if parsed.dimensions is not None and parsed.dimensions != service.dim:
                raise InvalidRequest(
                    f"`dimensions` must be {service.dim}: {service.backend.model} has no "
                    "other size",
                    param="dimensions",
                )
            result = await service.embed(parsed.texts)
            payload = _openai_payload(result, service.backend.model, parsed.encoding_format)
            return payload, len(parsed.texts)

        return await measured("openai", request, answer)

    return app


def _openai_payload(result: Embedded, model: str, encoding_format: str) -> dict[str, Any]:
    vectors = result.vectors
    if encoding_format == "base64":
        rows: Any = [
            base64.b64encode(row.astype("<f4", copy=False).tobytes()).decode() for row in vectors
        ]
    else:
        rows = vectors
    tokens = sum(result.tokens)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": rows[index]}
            for index in range(len(vectors))
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
