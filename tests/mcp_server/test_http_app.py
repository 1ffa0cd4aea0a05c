"""The mcp-server service over real HTTP: MCP at /mcp with the SDK's streamable HTTP
client, the suite's /health, /health/live, /metrics, error shape and API key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from localsuite.gateway.app import create_gateway_app
from localsuite.mcp_server.app import create_mcp_app
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.servers import serve_in_thread

from .conftest import CALL_BOUND, Services, Upstreams, text


@pytest.fixture
def serve(services: Services, opened: ExitStack) -> Iterator[Any]:
    def start(**overrides: Any) -> str:
        return opened.enter_context(serve_in_thread(create_mcp_app(services.settings(**overrides))))

    yield start


def tool_calls(url: str) -> dict[tuple[str, str], float]:
    body = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.labels["tool"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(body)
        if family.name == "localsuite_mcp_tool_calls"
        for s in family.samples
        if s.name.endswith("_total")
    }


async def test_tools_over_streamable_http_are_counted_by_outcome(
    services: Services, gateway: str, serve: Any
) -> None:
    services.gateway = gateway
    url = serve()
    with anyio.fail_after(CALL_BOUND):
        async with Client(f"{url}/mcp") as client:
            listed = await client.list_tools()
            answer = await client.call_tool("chat", {"message": "hello", "max_tokens": 2})
            refused = await client.call_tool("chat", {"message": "hello", "model": "gpt-4"})
            invalid = await client.call_tool("rag_search", {"query": "x", "topk": 0})
            down = await client.call_tool("rag_search", {"query": "x"})
            unknown = await client.call_tool("nope", {})
    assert len(listed.tools) == 6
    assert not answer.is_error and answer.structured_content is not None
    assert answer.structured_content["answer"] == "the quick"
    assert refused.is_error and invalid.is_error and down.is_error and unknown.is_error
    assert "rag is not reachable" in text(down)
    assert tool_calls(url) == {
        ("chat", "ok"): 1.0,
        ("chat", "rejected"): 1.0,
        ("rag_search", "invalid_input"): 1.0,
        ("rag_search", "unavailable"): 1.0,
        ("unknown", "invalid_input"): 1.0,
    }


def test_health_is_200_with_each_dependency_as_a_soft_check(
    services: Services, gateway: str, serve: Any
) -> None:
    services.gateway = gateway
    url = serve()
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["ok"] is True and body["service"] == "mcp-server"
    checks = body["checks"]
    assert set(checks) == {"api-gateway", "rag", "supervisor"}
    assert not any(check["hard"] for check in checks.values())
    assert checks["api-gateway"]["ok"] is True
    assert checks["rag"]["ok"] is False and "rag is not reachable" in checks["rag"]["detail"]
    assert checks["supervisor"]["ok"] is False
    live = httpx.get(f"{url}/health/live", timeout=10).json()
    assert live["ok"] is True and live["service"] == "mcp-server" and live["pid"] > 0


def test_an_unknown_path_has_the_suites_error_shape(services: Services, serve: Any) -> None:
    missing = httpx.get(f"{serve()}/nope", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_path"


async def test_with_an_api_key_mcp_needs_it_and_sends_it_on(
    services: Services, upstreams: Upstreams, opened: ExitStack, serve: Any
) -> None:
    keyed = make_settings(upstreams.chat_url, upstreams.code_url, localsuite_api_key="s3cret")
    services.gateway = opened.enter_context(serve_in_thread(create_gateway_app(keyed)))
    url = serve(localsuite_api_key="s3cret")
    async with httpx.AsyncClient(base_url=url, timeout=10) as plain:
        refused = await plain.post("/mcp", json={})
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        assert (await plain.get("/health/live")).status_code == 200

    headers = {"Authorization": "Bearer s3cret"}
    with anyio.fail_after(CALL_BOUND):
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            result = await client.call_tool("chat", {"message": "hello", "max_tokens": 1})
    assert not result.is_error, text(result)  # the gateway demands the key too
