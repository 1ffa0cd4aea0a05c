"""The app factory every service uses: errors, auth, health and metrics wired once.

`create_service_app()` returns a FastAPI app with:

- the error handlers: every failure leaves in the shape of the protocol its path speaks
  (`error_shape(path)`: OpenAI's unless the service says otherwise), a bug as 500;
- optional API-key auth (`LOCALSUITE_API_KEY`): `Authorization: Bearer <key>` or
  `x-api-key: <key>` (Anthropic's clients send that one) on every path except
  `/health/live`;
- `GET /health/live` (the process serves), `GET /health` (the service's own report),
  `GET /metrics` (Prometheus text).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from localsuite import __version__
from localsuite.core.errors import (
    OPENAI,
    ErrorShape,
    InvalidRequest,
    LocalSuiteError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
)
from localsuite.core.health import HealthSource
from localsuite.core.metrics import CONTENT_TYPE_LATEST, render

log = logging.getLogger("localsuite")

OPEN_PATHS = frozenset({"/health/live"})
JSON = "application/json"


ShapeForPath = Callable[[str], ErrorShape]


def openai_everywhere(_: str) -> ErrorShape:
    return OPENAI


def error_response(error: LocalSuiteError, shape: ErrorShape = OPENAI) -> Response:
    rendered = shape.render(error)
    return Response(rendered.body, rendered.status, rendered.headers, media_type=JSON)


class ApiKeyMiddleware:
    """Demands the key (`Authorization: Bearer <key>` or `x-api-key: <key>`) on every HTTP
    path but the open ones; compared in constant time."""

    def __init__(self, app: ASGIApp, key: str, shape_for: ShapeForPath = openai_everywhere) -> None:
        self.app = app
        self._bearer = f"Bearer {key}".encode()
        self._key = key.encode()
        self._shape_for = shape_for

    def _allowed(self, headers: list[tuple[bytes, bytes]]) -> bool:
        ok = False
        for name, value in headers:
            if name == b"authorization":
                ok |= hmac.compare_digest(value, self._bearer)
            elif name == b"x-api-key":
                ok |= hmac.compare_digest(value, self._key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or self._allowed(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        error = Unauthorized(
            "missing or wrong API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
        )
        await error_response(error, self._shape_for(scope["path"]))(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI, shape_for: ShapeForPath = openai_everywhere) -> None:
    def respond(request: Request, error: LocalSuiteError) -> Response:
        return error_response(error, shape_for(request.url.path))

    async def on_suite_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LocalSuiteError)
        return respond(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return respond(request, Unprocessable(_validation_message(exc)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: LocalSuiteError
        if exc.status_code == 404:
            error = NotFound(f"no such path: {exc.detail}", code="unknown_path")
        elif exc.status_code == 405:
            error = MethodNotAllowed("method not allowed on this path")
        else:
            error = InvalidRequest(str(exc.detail))
        return respond(request, error)

    async def on_bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(request, LocalSuiteError(f"internal error: {type(exc).__name__}"))

    app.add_exception_handler(LocalSuiteError, on_suite_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_bug)


def create_service_app(
    *,
    service: str,
    health: HealthSource,
    registry: CollectorRegistry,
    api_key: str | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    description: str = "",
    error_shape: ShapeForPath = openai_everywhere,
) -> FastAPI:
    app = FastAPI(
        title=f"localsuite {service}",
        version=__version__,
        description=description,
        lifespan=lifespan,
    )
    install_error_handlers(app, error_shape)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, key=api_key, shape_for=error_shape)

    @app.get("/health/live", tags=["health"], summary="Liveness: the process serves HTTP")
    async def live() -> dict[str, Any]:
        return {"ok": True, "service": service, "pid": os.getpid()}

    @app.get("/health", tags=["health"], summary="Readiness, with every dependency's state")
    async def ready() -> Response:
        report = await health()
        return Response(
            orjson.dumps(report.body()), report.status_code, report.headers(), media_type=JSON
        )

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    stream: AsyncIterator[bytes] = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body, or a 400 that says what is wrong."""
    if not raw.strip():
        raise InvalidRequest("request body is empty: expected a JSON object", code="invalid_json")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    return data
