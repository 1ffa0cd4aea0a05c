"""The stack as the tools report it: from the supervisor when one runs, else by asking
each service directly (under Docker or Kubernetes the orchestrator supervises, and the
MCP server sees only the services' own endpoints).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from localsuite.core.http import ErrorAnswer
from localsuite.core.settings import Settings
from localsuite.core.stack import HealthStatus, ProcessState, StackState
from localsuite.mcp_server.clients import Suite
from localsuite.mcp_server.errors import ToolFailure, Unavailable
from localsuite.mcp_server.models import (
    Alias,
    ModelList,
    ModelListing,
    ServedModel,
    ServiceStatus,
    StackStatus,
    SupervisorModels,
)

T = TypeVar("T")

INFERENCE_SERVICES = ("inference-chat", "inference-code")
PROBE_HINT = "start the stack with `localsuite up`, or its containers"


def service_urls(settings: Settings) -> dict[str, str]:
    """Each service's base URL as the suite's settings name it."""
    return {
        "inference-chat": settings.chat_backend_url.rstrip("/").removesuffix("/v1"),
        "inference-code": settings.code_backend_url.rstrip("/").removesuffix("/v1"),
        "api-gateway": settings.gateway_service_url,
        "embedding": settings.embedding_service_url,
        "rag": settings.rag_service_url,
    }


async def stack_status(suite: Suite) -> StackStatus:
    try:
        data = await suite.supervisor.call("GET", "/status", budget=suite.status_budget)
    except ToolFailure as exc:
        return await probe_stack(suite, note=f"{exc}. Each service's /health was asked instead.")
    stack = suite.supervisor.parse(StackState, data, "/status")
    services = {
        name: ServiceStatus(
            state=s.state.value,
            health=None if s.health is None else s.health.value,
            detail=s.last_error,
            model=s.model,
            port=s.port,
            pid=s.pid,
            uptime_s=s.uptime_s,
            restarts=s.restarts,
            operation=s.operation,
        )
        for name, s in stack.services.items()
    }
    ok = all(
        s.state is ProcessState.READY and s.health is not HealthStatus.UNHEALTHY
        for s in stack.services.values()
    )
    return StackStatus(source="supervisor", ok=ok, preset=stack.preset, services=services)


async def probe_stack(suite: Suite, note: str | None = None) -> StackStatus:
    urls = service_urls(suite.settings)
    found = await asyncio.gather(*(probe(suite, name, url) for name, url in urls.items()))
    services = dict(zip(urls, found, strict=True))
    services["mcp-server"] = ServiceStatus(state="up", health="healthy")
    ok = all(s.health == "healthy" for s in services.values())
    return StackStatus(source="probes", ok=ok, services=services, note=note)


async def probe(suite: Suite, name: str, url: str) -> ServiceStatus:
    """One service's `/health`: healthy on 200; unhealthy, with its reason, otherwise."""
    try:
        await suite.remote(name, url, PROBE_HINT).call("GET", "/health", budget=suite.status_budget)
    except ToolFailure as exc:
        if isinstance(exc.__cause__, ErrorAnswer):  # it answered: up, but not well
            return ServiceStatus(state="up", health="unhealthy", detail=str(exc))
        return ServiceStatus(state="unreachable", detail=str(exc))
    return ServiceStatus(state="up", health="healthy")


async def list_models(suite: Suite) -> ModelList:
    """The registry and what each inference service serves (the supervisor knows both),
    and the gateway's aliases; what could not be asked is said in `notes`."""
    budget = suite.status_budget
    registry, listing = await asyncio.gather(
        _failure_or(suite.supervisor.get("/models", SupervisorModels, budget=budget)),
        _failure_or(suite.gateway.get("/v1/models", ModelListing, budget=budget)),
    )
    if isinstance(registry, ToolFailure) and isinstance(listing, ToolFailure):
        raise Unavailable(f"{registry}. And {listing}")
    notes: list[str] = []
    if isinstance(registry, ToolFailure):
        notes.append(f"{registry}. Without it the registry is unknown; switch_model needs it.")
        models, services = [], await _served_by_probes(suite)
    else:
        models, services = registry.models, registry.services
    aliases: list[Alias] = []
    if isinstance(listing, ToolFailure):
        notes.append(str(listing))
    else:
        aliases = [Alias(name=m.id, backends=m.backends) for m in listing.data]
    return ModelList(models=models, services=services, aliases=aliases, notes=notes)


async def _failure_or(call: Awaitable[T]) -> T | ToolFailure:
    try:
        return await call
    except ToolFailure as exc:
        return exc


async def _served_by_probes(suite: Suite) -> dict[str, ServedModel]:
    """What each llama-server says it serves (its `GET /v1/models`), asked directly."""
    urls = service_urls(suite.settings)

    async def served(name: str) -> ServedModel:
        remote = suite.remote(name, urls[name], PROBE_HINT)
        try:
            listing = await remote.get("/v1/models", ModelListing, budget=suite.status_budget)
        except ToolFailure:
            return ServedModel(state="unreachable")
        return ServedModel(model=listing.data[0].id if listing.data else None, state="up")

    found = await asyncio.gather(*(served(name) for name in INFERENCE_SERVICES))
    return dict(zip(INFERENCE_SERVICES, found, strict=True))
