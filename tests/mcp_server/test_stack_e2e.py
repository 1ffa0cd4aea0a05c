"""End to end: the SDK's streamable HTTP client against a stack started by `localsuite up
--detach --preset p3` (real llama-servers, gateway, supervisor), and `switch_model`
through MCP while clients keep the gateway busy: not one of their requests fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from localsuite.testing.detached import DetachedStack
from localsuite.testing.load import Load
from localsuite.testing.servers import wait_until

from .conftest import text

pytestmark = pytest.mark.llama

BUNDLED = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DetachedStack]:
    stack = DetachedStack.create(tmp_path / "stack")
    stack.add_model("second.gguf")  # the bundled GGUF under another name (a hard link)
    try:
        started = stack.up("p3")
        assert started.returncode == 0, started.stderr + started.stdout
        yield stack
    finally:
        stack.down()


@pytest.fixture
def mcp_url(stack: DetachedStack) -> str:
    """The stack's own mcp-server, started by the supervisor after api-gateway and rag."""
    assert stack.service("mcp-server")["state"] == "ready"
    return f"http://127.0.0.1:{stack.env['MCP_PORT']}/mcp"


def result(call: Any) -> dict[str, Any]:
    assert not call.is_error, text(call)
    assert call.structured_content is not None
    content: dict[str, Any] = call.structured_content
    return content


async def test_tools_over_http_and_a_model_switch_under_load(
    stack: DetachedStack, mcp_url: str
) -> None:
    load = Load(stack.sdk(timeout=60), model="chat-7b", max_requests=2000)
    with anyio.fail_after(240):
        async with Client(mcp_url) as client:
            status = result(await client.call_tool("stack_status", {}))
            assert (status["source"], status["preset"]) == ("supervisor", "p3")
            for name in ("inference-chat", "inference-code", "api-gateway"):
                service = status["services"][name]
                assert (service["state"], service["health"]) == ("ready", "healthy"), name

            models = result(await client.call_tool("list_models", {}))
            assert {m["name"] for m in models["models"]} == {BUNDLED, "second.gguf"}
            assert models["services"]["inference-chat"]["model"] == BUNDLED

            answer = result(await client.call_tool("chat", {"message": "Hi!", "max_tokens": 8}))
            assert answer["model"] == "chat-7b" and answer["usage"]["completion_tokens"] > 0

            workers = load.run(streams=1, plains=2)
            try:
                await anyio.to_thread.run_sync(
                    lambda: wait_until(lambda: load.count() >= 6, 60, "load before the switch")
                )
                arguments = {"service": "inference-chat", "model": "second"}
                switched = result(await client.call_tool("switch_model", arguments))
                served = load.count()
                await anyio.to_thread.run_sync(
                    lambda: wait_until(lambda: load.count() >= served + 6, 60, "load after it")
                )
            finally:
                await anyio.to_thread.run_sync(load.finish, workers)

            after = result(await client.call_tool("list_models", {}))

    assert load.failures == []
    assert (switched["service"], switched["model"]) == ("inference-chat", "second.gguf")
    assert (switched["previous_model"], switched["changed"]) == (BUNDLED, True)
    assert switched["drained"] is True and switched["state"] == "ready"
    assert after["services"]["inference-chat"]["model"] == "second.gguf"
    assert stack.service("inference-chat")["model"] == "second.gguf"
    backends = {backend for _, _, backend in load.done}
    assert backends >= {"inference-code"}  # the drained backend's share went there
