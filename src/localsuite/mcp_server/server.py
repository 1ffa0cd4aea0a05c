"""The MCP server object (the official SDK's `MCPServer`) with the suite's tools, and its
stdio entry for desktop clients that launch it (`python -m localsuite.mcp_server`).

The same object serves streamable HTTP (`app.py` mounts it at `/mcp`) and in-memory
clients in tests. Its lifespan opens the HTTP session the tools share.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from localsuite import __version__
from localsuite.core.metrics import McpMetrics, new_registry
from localsuite.core.settings import Settings
from localsuite.mcp_server.clients import Suite
from localsuite.mcp_server.errors import ToolFailure
from localsuite.mcp_server.tools import TOOL_NAMES, register_tools

INSTRUCTIONS = """\
Tools over a self-hosted local AI stack (Local AI Suite): chat with its local LLMs,
search and index documents, see and switch the models it serves, see its health.
A tool error names the service that failed and what to do; stack_status shows the
state of every service."""


class SuiteServer(MCPServer[Suite]):
    """An `MCPServer` that counts every tool call by tool and outcome."""

    def __init__(self, suite: Suite, metrics: McpMetrics) -> None:
        @asynccontextmanager
        async def lifespan(_: MCPServer[Suite]) -> AsyncIterator[Suite]:
            async with suite:
                yield suite

        super().__init__(
            "localsuite",
            title="Local AI Suite",
            version=__version__,
            instructions=INSTRUCTIONS,
            lifespan=lifespan,
            log_level=_sdk_level(suite.settings.log_level),
        )
        self.suite = suite
        self.metrics = metrics

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Suite, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await super().call_tool(name, arguments, context)
            outcome = "failed" if isinstance(result, CallToolResult) and result.is_error else "ok"
            return result
        except ToolError as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            tool = name if name in TOOL_NAMES else "unknown"
            self.metrics.call(tool, outcome, time.perf_counter() - started)


def outcome_of(exc: ToolError) -> str:
    """The metrics label of a failed call (the SDK wraps what the tool raised)."""
    cause = exc.__cause__
    if isinstance(cause, ToolFailure):
        return cause.outcome
    if isinstance(exc, UnexpectedToolError):
        return "failed"
    if isinstance(cause, ValidationError) or cause is None:  # bad arguments, unknown tool
        return "invalid_input"
    return "failed"


def create_mcp_server(settings: Settings, metrics: McpMetrics | None = None) -> SuiteServer:
    """The MCP server with the six tools; `metrics` default to a registry of their own."""
    suite = Suite(settings)
    server = SuiteServer(suite, metrics or McpMetrics(new_registry()))
    register_tools(server, suite)
    return server


def run_stdio(settings: Settings) -> None:
    """Serve MCP over stdin/stdout until the client closes it; logs go to stderr."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    anyio.run(create_mcp_server(settings).run_stdio_async)


def _sdk_level(level: str) -> Any:
    upper = level.upper()
    return upper if upper in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO"
