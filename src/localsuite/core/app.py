"""The app factory every service uses: errors, auth, health and metrics wired once.

`create_service_app()` returns a FastAPI app with:

- the error handlers: every failure leaves in the shape of the protocol its path speaks
  (`error_shape(path)`: OpenAI's unless the service says otherwise), a bug as 500;
- who may call what (`core.auth`): the API key for use, the admin key for what changes
  the service, loopback callers alone for that when no key is set; health and metrics
  open;
- request ids (`core.request_ids`): the client's `x-request-id`, or a new one, on every
  answer;
- direct routes (`ServiceApp.direct_route`): POST paths on a service's hot path that skip
  the framework's layers (routing, dependency injection, the exception middleware), with
  the same key check, request id and error rendering applied here once; FastAPI still
  documents them;
- `GET /health/live` (the process serves), `GET /health` (the service's own report),
  `GET /metrics` (Prometheus text).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localsuite import __version__
from localsuite.core.auth import Access, AdminRoutes, admin_under_slash_admin
from localsuite.core.errors import (
    OPENAI,
    ErrorShape,
    InvalidRequest,
    LocalSuiteError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
)
from localsuite.core.health import HealthSource
from localsuite.core.metrics import CONTENT_TYPE_LATEST, render
from localsuite.core.request_ids import HEADER as REQUEST_ID
from localsuite.core.request_ids import request_id_from

log = logging.getLogger("localsuite")

JSON = "application/json"


ShapeForPath = Callable[[str], ErrorShape]


def openai_everywhere(_: str) -> ErrorShape:
    return OPENAI


def error_response(error: LocalSuiteError, shape: ErrorShape = OPENAI) -> Response:
    rendered = shape.render(error)
    return Response(rendered.body, rendered.status, rendered.headers, media_type=JSON)


class AccessMiddleware:
    """Applies `core.auth.Access` to every HTTP call."""

    def __init__(self, app: ASGIApp, access: Access, shape_for: ShapeForPath) -> None:
        self.app = app
        self._access = access
        self._shape_for = shape_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _refusal(self._access, scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await error_response(refusal, self._shape_for(scope["path"]))(scope, receive, send)


def _refusal(access: Access, scope: Scope) -> LocalSuiteError | None:
    client = scope.get("client")
    return access.refusal(scope["method"], scope["path"], scope["headers"],
                          client[0] if client else None)  # fmt: skip


DirectHandler = Callable[[Request], Awaitable[Response]]


class ServiceApp(FastAPI):
    """FastAPI with request ids on every answer, and direct routes (see the module)."""

    def setup_service(self, access: Access, shape_for: ShapeForPath) -> None:
        self.direct: dict[str, DirectHandler] = {}
        self.access = access
        self.shape_for = shape_for

    def direct_route(self, path: str, handler: DirectHandler) -> None:
        """Serve `POST path` with `handler`, outside the framework's layers."""
        self.direct[path] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id.decode()
        handler = self.direct.get(scope["path"]) if scope["method"] == "POST" else None
        if handler is not None:
            response = await self._direct(handler, scope, receive)
            if response is not None:
                response.raw_headers.append((REQUEST_ID, request_id))
                await response(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID, request_id)]
            await send(message)

        await super().__call__(scope, receive, send_with_id)

    async def _direct(self, handler: DirectHandler, scope: Scope, receive: Receive
                      ) -> Response | None:  # fmt: skip
        shape = self.shape_for(scope["path"])
        refusal = _refusal(self.access, scope)
        if refusal is not None:
            return error_response(refusal, shape)
        request = Request(scope, receive)
        try:
            return await handler(request)
        except LocalSuiteError as exc:
            return error_response(exc, shape)
        except ClientDisconnect:
            return None  # nobody to answer
        except Exception as exc:
            log.exception("unhandled error on POST %s", scope["path"])
            return error_response(LocalSuiteError(f"internal error: {type(exc).__name__}"), shape)


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
    admin_key: str | None = None,
    admin_routes: AdminRoutes = admin_under_slash_admin,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    description: str = "",
    error_shape: ShapeForPath = openai_everywhere,
) -> ServiceApp:
    app = ServiceApp(
        title=f"localsuite {service}",
        version=__version__,
        description=description,
        lifespan=lifespan,
    )
    access = Access(api_key, admin_key, admin_routes)
    app.setup_service(access, error_shape)
    install_error_handlers(app, error_shape)
    app.add_middleware(AccessMiddleware, access=access, shape_for=error_shape)

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
