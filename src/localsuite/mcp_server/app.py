"""The mcp-server service: MCP over streamable HTTP at `/mcp`, in the suite's app.

    POST/GET/DELETE /mcp     the MCP endpoint (streamable HTTP, stateless: any replica,
                             or a restarted server, answers any request)
    GET /health              200 while it serves, with the reachability of the gateway,
                             rag and the supervisor as soft checks (the tools say which
                             one is down when it matters)
    GET /health/live, /metrics   as on every service (tool calls by tool and outcome)

With LOCALSUITE_API_KEY set, `/mcp` needs `Authorization: Bearer <key>` like every path
but `/health/live`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route

from localsuite.core.app import create_service_app
from localsuite.core.health import Check, HealthReport, timed_check
from localsuite.core.metrics import McpMetrics, new_registry
from localsuite.core.settings import Settings
from localsuite.mcp_server.clients import Remote
from localsuite.mcp_server.server import create_mcp_server
from localsuite.mcp_server.tools import TOOL_NAMES

MCP_PATH = "/mcp"


def create_mcp_app(settings: Settings) -> FastAPI:
    registry = new_registry()
    server = create_mcp_server(settings, McpMetrics(registry))
    suite = server.suite
    # The SDK's own app would serve `/mcp` alone; its route joins the suite's app, so the
    # error shape, auth, /health and /metrics are the suite's. Host-header checks against
    # DNS rebinding apply when it listens on loopback (the SDK's rule).
    sdk_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        host=settings.host,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The session manager runs once per app: it enters the MCP server's lifespan
        # (the tools' HTTP session) and holds the task group of every MCP request.
        async with server.session_manager.run():
            yield

    async def health() -> HealthReport:
        dependencies = (
            (suite.gateway, "/health"),
            (suite.rag, "/health"),
            (suite.supervisor, "/health/live"),  # its /health is 503 until all are ready
        )
        budget = settings.health_probe_timeout
        checks: list[Check] = await asyncio.gather(
            *(_reachable(remote, path, budget) for remote, path in dependencies)
        )
        return HealthReport("mcp-server", tuple(checks), {"tools": list(TOOL_NAMES)})

    app = create_service_app(
        service="mcp-server",
        health=health,
        registry=registry,
        api_key=settings.api_key,
        admin_key=settings.admin_key,
        lifespan=lifespan,
        description="MCP tools over the suite: chat, rag_search, index_documents, "
        "list_models, switch_model, stack_status (streamable HTTP at /mcp).",
    )
    app.state.mcp = server
    app.router.routes.extend(r for r in sdk_app.routes if isinstance(r, Route))
    return app


async def _reachable(remote: Remote, path: str, budget: float) -> Check:
    async def probe() -> str:
        await remote.call("GET", path, budget=budget)
        return remote.url

    return await timed_check(remote.name, probe, hard=False)
