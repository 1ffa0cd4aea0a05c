"""`python -m localsuite.mcp_server`: MCP over stdio, for clients that launch the server
(Claude Desktop, Cursor, ...). Settings come from the environment and `.env`."""

from __future__ import annotations

from localsuite.core.settings import Settings
from localsuite.mcp_server.server import run_stdio


def main() -> None:
    run_stdio(Settings())


if __name__ == "__main__":
    main()
