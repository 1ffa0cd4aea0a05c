"""`chat` through the real gateway over fault-injecting upstreams: the alias `auto`
picks, what the answer says, and each way the gateway can fail, named as the gateway."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from .conftest import Connect, Services, Upstreams


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung service)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("message", "alias", "served_by"),
    [
        ("Tell me about lighthouses.", "chat-7b", "chat-upstream"),
        ("Why does `print(x)` fail in my Python script?", "code-7b", "code-upstream"),
    ],
)
async def test_auto_picks_the_alias_by_what_the_message_is_about(
    services: Services, gateway: str, connect: Connect, message: str, alias: str, served_by: str
) -> None:
    services.gateway = gateway
    answer = await connect.ok("chat", message=message, max_tokens=4)
    assert answer["model"] == alias
    assert answer["served_model"] == served_by
    assert answer["answer"] == "the quick brown fox"
    assert answer["usage"]["completion_tokens"] == 4


async def test_a_named_alias_is_used_and_max_tokens_has_a_default(
    services: Services, gateway: str, upstreams: Upstreams, connect: Connect
) -> None:
    services.gateway = gateway
    async with connect(mcp_chat_max_tokens=3) as mcp:
        answer = await mcp.ok("chat", message="def f(): pass", model="chat")
    assert answer["model"] == "chat"
    assert answer["served_model"] == "chat-upstream"  # chat → inference-chat first
    assert upstreams.chat.requests[-1]["max_tokens"] == 3
    assert upstreams.chat.requests[-1]["messages"] == [{"role": "user", "content": "def f(): pass"}]


async def test_failover_is_invisible(
    services: Services, gateway: str, upstreams: Upstreams, connect: Connect
) -> None:
    services.gateway = gateway
    upstreams.chat.fault("status", status=500)
    answer = await connect.ok("chat", message="hello", max_tokens=2)
    assert answer["served_model"] == "code-upstream"


async def test_the_gateway_down_is_named_with_what_to_do(
    services: Services, connect: Connect
) -> None:
    # services.gateway is None: a closed port
    message = await connect.error("chat", message="hello")
    assert "api-gateway is not reachable" in message
    assert "localsuite up" in message


async def test_every_backend_failing_is_the_gateways_503(
    services: Services, gateway: str, upstreams: Upstreams, connect: Connect
) -> None:
    services.gateway = gateway
    upstreams.chat.fault("status", status=503)
    upstreams.code.fault("status", status=503)
    message = await connect.error("chat", message="hello")
    assert "api-gateway is unavailable" in message


async def test_an_unknown_alias_is_the_gateways_refusal(
    services: Services, gateway: str, connect: Connect
) -> None:
    services.gateway = gateway
    message = await connect.error("chat", message="hello", model="gpt-4")
    assert "api-gateway refused the request" in message and "gpt-4" in message


async def test_a_hung_gateway_costs_the_deadline_not_a_hang(
    services: Services, silent_url: str, connect: Connect
) -> None:
    services.gateway = silent_url
    async with connect(llm_request_timeout=0.5) as mcp:
        message = await mcp.error("chat", message="hello")
    assert "api-gateway" in message and "did not answer within 2.5 s" in message


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"message": ""}, "at least 1 character"),
        ({"message": "hi", "model": "../etc"}, "should match pattern"),
        ({"message": "hi", "max_tokens": 0}, "greater than or equal to 1"),
        ({"model": "chat"}, "message"),
    ],
)
async def test_bad_arguments_are_refused_before_any_call(
    services: Services, gateway: str, upstreams: Upstreams, connect: Connect,
    arguments: dict[str, object], says: str,
) -> None:  # fmt: skip
    services.gateway = gateway
    message = await connect.error("chat", **arguments)
    assert says in message
    assert upstreams.chat.requests == upstreams.code.requests == []
