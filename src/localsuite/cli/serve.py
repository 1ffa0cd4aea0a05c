"""Commands that run one service in the foreground: serve (HTTP) and mcp (stdio)."""

from __future__ import annotations

import typer

from localsuite.cli.common import app, fail, load_settings
from localsuite.core.errors import ConfigError


@app.command()
def serve(
    service: str = typer.Argument(..., help="api-gateway | embedding | rag | mcp-server"),
    port: int | None = typer.Option(None, help="Override the service's port"),
) -> None:
    """Run one service in the foreground."""
    from localsuite.serve import serve as run

    try:
        run(service, load_settings(), port)
    except ConfigError as exc:
        raise fail(str(exc), 2) from exc


@app.command()
def mcp() -> None:
    """Serve MCP over stdin/stdout, for desktop MCP clients that launch their servers."""
    from localsuite.mcp_server.server import run_stdio

    run_stdio(load_settings())
