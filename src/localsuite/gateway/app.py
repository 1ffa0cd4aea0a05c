"""The gateway's app: OpenAI-compatible routes over the failover router.

The body of a request is passed to the backend untouched except `model` (llama.cpp's
extensions such as `cache_prompt`, `n_probs` or `grammar` reach it as sent). Responses
say who served them: `x-localsuite-backend` and `x-localsuite-attempts`.

Admin routes (behind the same API key), used by the supervisor's model switch:
`POST /admin/backends/{name}/drain` (no new requests; in-flight ones and streams
finish), `POST /admin/backends/{name}/undrain`, `GET /admin/backends/{name}`; each answers
the backend's state as in `/health` (`draining`, `in_flight`, ...), 404 for an unknown name.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from localsuite.core.app import JSON, create_service_app, parse_json_object, read_body
from localsuite.core.breaker import CircuitBreaker
from localsuite.core.errors import (
    InvalidRequest,
    LocalSuiteError,
    NotFound,
    ServiceUnavailable,
    UpstreamError,
)
from localsuite.core.health import Check, HealthReport
from localsuite.core.http import ErrorAnswer, NoAnswer, create_session, translate_errors
from localsuite.core.metrics import GatewayMetrics, new_registry
from localsuite.core.openapi import request_body
from localsuite.core.retry import RetryPolicy
from localsuite.core.settings import Settings
from localsuite.gateway import schema
from localsuite.gateway.config import RoutingConfig, default_routing
from localsuite.gateway.failover import Router, complete, upstream_client_error
from localsuite.gateway.streaming import CHAT_PATH, COMPLETIONS_PATH, StreamRelay
from localsuite.gateway.upstream import Upstream

log = logging.getLogger("localsuite.gateway")

BACKEND_HEADER = "x-localsuite-backend"
ATTEMPTS_HEADER = "x-localsuite-attempts"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Gateway:
    """What the routes share: the routing table, the upstreams and the router."""

    def __init__(self, settings: Settings, routing: RoutingConfig) -> None:
        self.settings = settings
        self.routing = routing
        self.registry = new_registry()
        self.metrics = GatewayMetrics(self.registry)
        self.upstreams: dict[str, Upstream] = {}
        for name, spec in routing.backends.items():
            breaker = CircuitBreaker(
                failure_threshold=routing.policy.allowed_fails,
                cooldown=routing.policy.cooldown,
                on_change=functools.partial(self.metrics.breaker_changed, name),
            )
            self.metrics.breaker_changed(name, breaker.state)
            self.upstreams[name] = Upstream(
                spec,
                breaker,
                self.metrics,
                probe_interval=settings.gateway_probe_interval,
                probe_timeout=settings.gateway_probe_timeout,
            )
        self.session: aiohttp.ClientSession | None = None
        self._router: Router | None = None
        self._probers: list[asyncio.Task[None]] = []

    @property
    def router(self) -> Router:
        if self._router is None:
            raise ServiceUnavailable("the gateway is starting")
        return self._router

    async def start(self) -> None:
        self.session = create_session(connect_timeout=self.settings.llm_connect_timeout)
        backoff = RetryPolicy(
            attempts=1 + self.routing.policy.num_retries,
            wait_min=self.settings.gateway_retry_backoff,
            wait_max=max(
                self.settings.gateway_retry_backoff * 8, self.settings.gateway_retry_backoff
            ),
        )
        self._router = Router(
            self.routing, self.upstreams, self.session, self.settings.llm_timeouts,
            self.metrics, backoff,
        )  # fmt: skip
        # One probe round before serving, so the first requests know who is up.
        await asyncio.gather(*(u.probe(self.session) for u in self.upstreams.values()))
        self._probers = [
            asyncio.create_task(u.run_prober(self.session), name=f"probe-{u.name}")
            for u in self.upstreams.values()
        ]

    async def stop(self) -> None:
        for task in self._probers:
            task.cancel()
        for task in self._probers:
            with suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.close()

    def backend(self, name: str) -> Upstream:
        upstream = self.upstreams.get(name)
        if upstream is None:
            raise NotFound(
                f"no backend {name!r}; backends: {', '.join(self.upstreams)}",
                code="backend_not_found",
            )
        return upstream

    def resolve_alias(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("`model` is required: a model alias string", param="model",
                                 code="missing_model")  # fmt: skip
        alias = self.routing.resolve(model)
        if alias is None:
            raise NotFound(
                f"model {model!r} does not exist; available: {', '.join(self.routing.model_names)}",
                code="model_not_found",
                param="model",
            )
        return alias

    async def health(self) -> HealthReport:
        checks = []
        for alias, deployments in self.routing.routes.items():
            serving = [d.backend for d in deployments if self.upstreams[d.backend].routable]
            checks.append(
                Check(
                    f"alias:{alias}",
                    bool(serving),
                    detail=f"served by {', '.join(serving)}" if serving else "no backend up",
                )
            )
        backends = {name: u.describe() for name, u in self.upstreams.items()}
        hint = min((u.next_probe_in() for u in self.upstreams.values()), default=1.0)
        return HealthReport(
            "api-gateway", tuple(checks), {"backends": backends}, retry_after=max(1.0, hint)
        )


def create_gateway_app(settings: Settings, routing: RoutingConfig | None = None) -> FastAPI:
    routing = routing or default_routing(settings)
    gateway = Gateway(settings, routing)
    limit = settings.gateway_max_body_bytes

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if routing.ignored_keys:
            log.warning("routing file %s: keys not used by the gateway: %s",
                        routing.source, ", ".join(routing.ignored_keys))  # fmt: skip
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = create_service_app(
        service="api-gateway",
        health=gateway.health,
        registry=gateway.registry,
        api_key=settings.api_key or routing.master_key,
        lifespan=lifespan,
        description="OpenAI-compatible router with failover between llama.cpp backends.",
    )
    app.state.gateway = gateway

    async def counted(relay: StreamRelay, alias: str, endpoint: str) -> AsyncIterator[bytes]:
        """The stream's events; the request is counted when it ends, by how it ended."""
        outcome = "cancelled"  # the client left before the end
        try:
            async for event in relay.events():
                yield event
            outcome = "failed" if relay.failed else "ok"
        finally:
            gateway.metrics.requests.labels(alias, endpoint, outcome).inc()

    async def relay(request: Request, path: str, endpoint: str) -> Response:
        started = time.perf_counter()
        body = parse_json_object(await read_body(request, limit))
        alias = gateway.resolve_alias(body)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidRequest("`stream` must be true or false", param="stream")
        metrics = gateway.metrics
        try:
            if stream:
                relay = StreamRelay(gateway.router, path, body, alias)
                backend, attempts = await relay.start()
                metrics.ttft.labels(alias).observe(time.perf_counter() - started)
                headers = {**SSE_HEADERS, BACKEND_HEADER: backend, ATTEMPTS_HEADER: str(attempts)}
                return StreamingResponse(
                    counted(relay, alias, endpoint), media_type="text/event-stream", headers=headers
                )
            served = await complete(gateway.router, path, body, alias)
        except LocalSuiteError as exc:
            metrics.requests.labels(alias, endpoint, exc.outcome).inc()
            raise
        metrics.requests.labels(alias, endpoint, "ok").inc()
        metrics.latency.labels(alias, endpoint).observe(time.perf_counter() - started)
        headers = {BACKEND_HEADER: served.backend, ATTEMPTS_HEADER: str(served.attempts)}
        return Response(served.body, served.status, headers, media_type=JSON)

    @app.post(
        "/v1/chat/completions",
        tags=["openai"],
        summary="Chat completion (stream or not), with failover between backends",
        openapi_extra=request_body(schema.ChatCompletionRequest),
        responses=schema.ERROR_RESPONSES,
    )
    async def chat_completions(request: Request) -> Response:
        return await relay(request, CHAT_PATH, "chat")

    @app.post(
        "/v1/completions",
        tags=["openai"],
        summary="Text completion (stream or not), with failover between backends",
        openapi_extra=request_body(schema.CompletionRequest),
        responses=schema.ERROR_RESPONSES,
    )
    async def completions(request: Request) -> Response:
        return await relay(request, COMPLETIONS_PATH, "completions")

    @app.post(
        "/v1/embeddings",
        tags=["openai"],
        summary="Embeddings, forwarded to the embedding service",
        openapi_extra=request_body(schema.EmbeddingRequest),
        responses=schema.ERROR_RESPONSES,
    )
    async def embeddings(request: Request) -> Response:
        raw = await read_body(request, limit)
        parse_json_object(raw)
        return await forward_embeddings(gateway, raw)

    @app.get("/v1/models", tags=["openai"], summary="The model aliases this gateway serves")
    async def models() -> dict[str, Any]:
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "localsuite",
                "backends": [d.backend for d in routing.routes[routing.resolve(name) or name]],
            }
            for name in routing.model_names
        ]
        return {"object": "list", "data": data}

    @app.get("/admin/backends/{name}", tags=["admin"], summary="One backend's state")
    async def backend_state(name: str) -> dict[str, Any]:
        return {"backend": name, **gateway.backend(name).describe()}

    @app.post(
        "/admin/backends/{name}/drain",
        tags=["admin"],
        summary="Send a backend no new requests; in-flight requests and streams finish",
    )
    async def drain(name: str) -> dict[str, Any]:
        gateway.backend(name).set_draining(True)
        return await backend_state(name)

    @app.post("/admin/backends/{name}/undrain", tags=["admin"], summary="Undo a drain")
    async def undrain(name: str) -> dict[str, Any]:
        gateway.backend(name).set_draining(False)
        return await backend_state(name)

    return app


async def forward_embeddings(gateway: Gateway, raw: bytes) -> Response:
    settings = gateway.settings
    url = f"{settings.embedding_service_url}/v1/embeddings"
    session = gateway.session
    if session is None:
        raise ServiceUnavailable("the gateway is starting")
    headers = {"Content-Type": "application/json"}
    if settings.api_key:  # the embedding service demands the suite's key too
        headers["Authorization"] = f"Bearer {settings.api_key}"
    try:
        with translate_errors("embedding"):
            async with (
                asyncio.timeout(settings.embedding_timeout),
                session.post(url, data=raw, headers=headers) as response,
            ):
                body = await response.read()
                status = response.status
                content_type = response.headers.get("Content-Type", JSON)
    except NoAnswer as exc:
        raise ServiceUnavailable(
            f"the embedding service at {settings.embedding_service_url} is not answering "
            f"({exc}); start it with `localsuite up --preset p2`",
            code="embedding_unavailable",
        ) from exc
    if status in (502, 503, 504):
        raise ServiceUnavailable(
            f"the embedding service is unavailable (HTTP {status}): "
            f"{ErrorAnswer(status, body).message()}",
            code="embedding_unavailable",
        )
    if status >= 500:
        raise UpstreamError(f"the embedding service answered HTTP {status}")
    if status >= 400:
        raise upstream_client_error(ErrorAnswer(status, body))
    return Response(body, status, media_type=content_type)
