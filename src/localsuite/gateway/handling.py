"""One client request of a generating protocol, from its body to its answer.

The body is read (413 past `GATEWAY_MAX_BODY_BYTES`), its model resolved to an alias,
the few checks of its protocol applied; then an `Exchange` goes through the engine of
the table in place when it arrived (a reload does not move it): streamed to the client
(`StreamRelay`) or answered whole (`serve_plain`). The request is counted when its answer
ends, by how it ended: ok, client_error, failed, or cancelled (the client left).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from localsuite.core.app import JSON, parse_json_object, read_body
from localsuite.core.errors import InvalidRequest, LocalSuiteError
from localsuite.core.request_ids import request_id_of
from localsuite.gateway.deployments import Deployment
from localsuite.gateway.engine import Exchange, unknown_state
from localsuite.gateway.gateway import Gateway
from localsuite.gateway.protocols import RESPONSES, Protocol
from localsuite.gateway.relay import StreamRelay, serve_plain
from localsuite.gateway.routing import Table

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Client headers that say what the body means, passed to the backend as they came.
FORWARDED = ("anthropic-version", "anthropic-beta", "openai-beta")
PRIORITIES = {"interactive": 0, "batch": 1}


async def handle(gateway: Gateway, request: Request, protocol: Protocol) -> Response:
    started = time.perf_counter()
    body = parse_json_object(await read_body(request, gateway.settings.gateway_max_body_bytes))
    alias = gateway.resolve_alias(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("`stream` must be true or false", param="stream")
    protocol.validate(body)
    engine = gateway.engine  # requests finish on the table they started with
    exchange = Exchange(
        alias,
        protocol,
        body,
        engine.new_deadline(),
        request_id_of(request),
        affinity=affinity_key(request, body, protocol, gateway.affinity.size > 0),
        priority=priority_of(request),
        pinned=pinned_deployment(gateway, engine.table, protocol, body),
        forward={k: v for k in FORWARDED if (v := request.headers.get(k)) is not None},
    )
    metrics = gateway.metrics
    tracing = gateway.tracing
    if tracing.enabled:
        exchange.span = tracing.start(
            f"gateway {protocol.endpoint}", parent=tracing.extract(request.headers),
            attributes={"localsuite.alias": alias, "localsuite.endpoint": protocol.endpoint,
               "localsuite.request_id": exchange.request_id, "localsuite.stream": stream},
        )  # fmt: skip
    try:
        if stream and protocol.generates:
            relay = StreamRelay(engine, gateway.relay, exchange)
            attempt, count = await relay.start()
            metrics.first_token(alias, time.perf_counter() - started)
            return StreamingResponse(
                counted(gateway, relay),
                media_type="text/event-stream",
                headers={**SSE_HEADERS, **gateway.served_headers(attempt, count)},
            )
        served = await serve_plain(engine, gateway.relay, exchange)
    except LocalSuiteError as exc:
        metrics.request(alias, protocol.endpoint, exc.outcome, None)
        ended(exchange, exc.outcome, exc.message)
        raise
    metrics.request(alias, protocol.endpoint, "ok", time.perf_counter() - started)
    ended(exchange, "ok")
    if protocol is RESPONSES:
        gateway.remember(exchange, _id_of(served.body))
    headers = gateway.served_headers(served.attempt, exchange.count)
    return Response(served.body, served.status, headers, media_type=JSON)


async def counted(gateway: Gateway, relay: StreamRelay) -> AsyncIterator[bytes]:
    """The stream's events; the request is counted when it ends, by how it ended."""
    exchange = relay.exchange
    outcome = "cancelled"  # the client left before the end
    try:
        async for event in relay.events():
            yield event
        outcome = "failed" if relay.failed else "ok"
    finally:
        elapsed = time.perf_counter() - relay.started_at
        gateway.metrics.request(exchange.alias, exchange.protocol.endpoint, outcome,
                                elapsed if outcome == "ok" else None)  # fmt: skip
        ended(exchange, outcome, "the stream ended with an error event" if relay.failed else None)
        gateway.remember(exchange, getattr(relay.view, "response_id", None))


def ended(exchange: Exchange, outcome: str, error: str | None = None) -> None:
    """End the request's span with what it came to."""
    span = exchange.span
    if not span.recording:
        return
    span.set("localsuite.attempts", exchange.count)
    if exchange.served_by is not None:
        span.set("localsuite.deployment", exchange.served_by.id)
    span.end(outcome, error=error if outcome != "client_error" else None)


def affinity_key(
    request: Request, body: dict[str, Any], protocol: Protocol, enabled: bool
) -> str | None:
    """The conversation's identity: `x-session-id`, the protocol's user, or its opening."""
    if not enabled:
        return None
    session = request.headers.get("x-session-id")
    if session:
        return f"session:{session}"
    user = body.get("user")
    if isinstance(user, str) and user:
        return f"user:{user}"
    return protocol.affinity_key(body)


def priority_of(request: Request) -> int:
    given = request.headers.get("x-priority")
    if given is None:
        return 0
    priority = PRIORITIES.get(given.strip().lower())
    if priority is None:
        raise InvalidRequest(
            f"x-priority must be one of {', '.join(PRIORITIES)}, not {given!r}", param="x-priority"
        )
    return priority


def pinned_deployment(
    gateway: Gateway, table: Table, protocol: Protocol, body: dict[str, Any]
) -> Deployment | None:
    """The deployment that holds the state a request refers to (`previous_response_id`)."""
    if protocol is not RESPONSES:
        return None
    previous = body.get("previous_response_id")
    if previous is None:
        return None
    if not isinstance(previous, str) or not previous:
        raise InvalidRequest("`previous_response_id` must be a response id",
                             param="previous_response_id")  # fmt: skip
    holder = gateway.states.get(previous)
    deployment = table.deployments.get(holder) if holder else None
    if deployment is None:
        raise unknown_state("previous_response_id", previous)
    return deployment


def _id_of(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
