"""The gateway's app: OpenAI's and Anthropic's routes over the attempt engine.

    POST /v1/chat/completions         OpenAI chat (stream or not)
    POST /v1/completions              OpenAI text completions
    POST /v1/responses                OpenAI Responses API
    POST /v1/messages                 Anthropic Messages API (errors in Anthropic's shape)
    POST /v1/messages/count_tokens    Anthropic token count (where the backend has it)
    POST /v1/embeddings               forwarded to the embedding service
    GET  /v1/models                   the aliases, with their backends and deployments

The body of a request is passed to the backend untouched except `model` (and `stream`:
plain requests are streamed from the backend and assembled, see `gateway.relay`), so
llama.cpp's extensions such as `cache_prompt` or `grammar` reach it as sent. Responses
say who served them: `x-localsuite-backend` (the server), `x-localsuite-deployment`,
`x-localsuite-attempts`, and `x-request-id` (the client's, or a new one; it is sent to
the backend and written in every log line about the request).

Conversation affinity comes from `x-session-id`, the protocol's user field, or the
conversation's opening; `x-priority: batch` waits behind interactive requests in a queue.

Admin routes (behind the same API key): `GET /admin/backends/{name}`,
`POST /admin/backends/{name}/drain` (no new requests; in-flight ones and streams
finish), `POST /admin/backends/{name}/undrain`, each answering the server's state as in
`/health`; `POST /admin/reload` re-reads `GATEWAY_CONFIG` (SIGHUP does the same).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from localsuite.core.app import create_service_app, parse_json_object, read_body
from localsuite.core.errors import (
    ANTHROPIC,
    OPENAI,
    ConfigError,
    ErrorShape,
    InvalidRequest,
    LocalSuiteError,
)
from localsuite.core.openapi import request_body
from localsuite.core.request_ids import request_id_of
from localsuite.core.settings import Settings, environment
from localsuite.core.tracing import Tracing
from localsuite.gateway import schema
from localsuite.gateway.config import RoutingConfig, default_routing, load_routing
from localsuite.gateway.gateway import Gateway
from localsuite.gateway.handling import handle
from localsuite.gateway.protocols import (
    CHAT,
    COMPLETIONS,
    COUNT_TOKENS,
    MESSAGES,
    RESPONSES,
    Protocol,
)

log = logging.getLogger("localsuite.gateway")


def shape_for(path: str) -> ErrorShape:
    return ANTHROPIC if path.startswith("/v1/messages") else OPENAI


def create_gateway_app(
    settings: Settings,
    routing: RoutingConfig | None = None,
    reload_source: Callable[[], RoutingConfig] | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The gateway; `reload_source` gives the table `POST /admin/reload` (and SIGHUP) load
    (default: `GATEWAY_CONFIG` read again, or the env defaults); `tracing` defaults to
    what the `OTEL_*` settings ask (usually nothing)."""
    routing = routing or default_routing(settings)
    gateway = Gateway(settings, routing, tracing)
    limit = settings.gateway_max_body_bytes
    source = reload_source or (lambda: load_routing(settings, environment()))

    def reload() -> dict[str, Any]:
        try:
            config = source()
        except (ConfigError, ValueError) as exc:
            raise InvalidRequest(
                f"the routing table was not reloaded, the old one stays: {exc}",
                code="invalid_routing",
            ) from exc
        return gateway.reload(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if routing.ignored_keys:
            log.warning("routing file %s: keys not used by the gateway: %s",
                        routing.source, ", ".join(routing.ignored_keys))  # fmt: skip
        await gateway.start()
        loop = asyncio.get_running_loop()
        with suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, _reload_on_signal, reload)
        try:
            yield
        finally:
            with suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            await gateway.stop()

    app = create_service_app(
        service="api-gateway",
        health=gateway.health,
        registry=gateway.registry,
        api_key=settings.api_key or routing.master_key,
        admin_key=settings.admin_key or routing.master_key,
        lifespan=lifespan,
        description="OpenAI- and Anthropic-compatible router with failover between backends.",
        error_shape=shape_for,
    )
    app.state.gateway = gateway

    def route(path: str, protocol: Protocol, summary: str, model: Any, tag: str) -> None:
        async def endpoint(request: Request) -> Response:
            return await handle(gateway, request, protocol)

        endpoint.__name__ = protocol.endpoint
        app.direct_route(path, endpoint)  # the hot path: no framework layers
        # Registered with FastAPI too, for its OpenAPI document (the direct route answers).
        app.add_api_route(
            path, endpoint, methods=["POST"], tags=[tag], summary=summary,
            openapi_extra=request_body(model),
            responses=schema.ANTHROPIC_ERRORS if tag == "anthropic" else schema.ERROR_RESPONSES,
        )  # fmt: skip

    route("/v1/chat/completions", CHAT, "Chat completion (stream or not), with failover",
          schema.ChatCompletionRequest, "openai")  # fmt: skip
    route("/v1/completions", COMPLETIONS, "Text completion (stream or not), with failover",
          schema.CompletionRequest, "openai")  # fmt: skip
    route("/v1/responses", RESPONSES, "OpenAI Responses API (stream or not), with failover",
          schema.ResponsesRequest, "openai")  # fmt: skip
    route("/v1/messages", MESSAGES, "Anthropic Messages API (stream or not), with failover",
          schema.MessagesRequest, "anthropic")  # fmt: skip
    route("/v1/messages/count_tokens", COUNT_TOKENS, "Anthropic token count",
          schema.CountTokensRequest, "anthropic")  # fmt: skip

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
        body, status, content_type = await gateway.forward_embeddings(raw, request_id_of(request))
        return Response(body, status, media_type=content_type)

    @app.get("/v1/models", tags=["openai"], summary="The model aliases this gateway serves")
    async def models() -> dict[str, Any]:
        return gateway.models()

    _admin_routes(app, gateway, reload)
    return app


def _reload_on_signal(reload: Callable[[], dict[str, Any]]) -> None:
    try:
        result = reload()
    except LocalSuiteError as exc:
        log.error("SIGHUP: %s", exc.message)
    else:
        log.info("SIGHUP: routing table reloaded (%s)", result.get("source"))


def _admin_routes(app: FastAPI, gateway: Gateway, reload: Callable[[], dict[str, Any]]) -> None:
    @app.get("/admin/backends/{name}", tags=["admin"], summary="One server's state")
    async def backend_state(name: str) -> dict[str, Any]:
        return {"backend": name, **gateway.server(name).describe()}

    @app.post(
        "/admin/backends/{name}/drain",
        tags=["admin"],
        summary="Send a server no new requests; in-flight requests and streams finish",
    )
    async def drain(name: str) -> dict[str, Any]:
        gateway.server(name).set_draining(True)
        return await backend_state(name)

    @app.post("/admin/backends/{name}/undrain", tags=["admin"], summary="Undo a drain")
    async def undrain(name: str) -> dict[str, Any]:
        gateway.server(name).set_draining(False)
        return await backend_state(name)

    @app.post(
        "/admin/reload",
        tags=["admin"],
        summary="Re-read the routing table; requests in flight finish on the old one",
    )
    async def reload_route() -> dict[str, Any]:
        return reload()
