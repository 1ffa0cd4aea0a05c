"""`python -m localsuite.mcp_server`: MCP over stdio, launched as a desktop client does,
with its settings in the environment; logs must stay off stdout (the protocol's)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from .conftest import Services, closed_url, text


async def test_a_launched_server_lists_and_runs_tools(
    services: Services, gateway: str, tmp_path: Path
) -> None:
    env = {
        "API_GATEWAY_URL": gateway,
        "RAG_URL": closed_url(),
        "SUPERVISOR_URL": closed_url(),
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "DEBUG",  # plenty of logging, all of it on stderr
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "localsuite.mcp_server"], env=env, cwd=tmp_path
    )
    with anyio.fail_after(60):
        async with Client(params) as client:
            tools = await client.list_tools()
            answer = await client.call_tool("chat", {"message": "hello", "max_tokens": 3})
            refused = await client.call_tool("index_documents", {"path": "/etc"})
    assert len(tools.tools) == 6
    assert not answer.is_error and answer.structured_content is not None
    assert answer.structured_content["answer"] == "the quick brown"
    assert refused.is_error and "outside the documents folder" in text(refused)
