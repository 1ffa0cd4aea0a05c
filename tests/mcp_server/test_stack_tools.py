"""`list_models`, `switch_model` and `stack_status` against the supervisor's real control
API (over a supervisor that runs nothing), the real gateway, and without a supervisor (as
under Docker): each service's own endpoints."""

from __future__ import annotations

import pytest

from .conftest import Connect, Services

BUNDLED = "SmolLM2-135M-Instruct.Q4_1.gguf"


async def test_list_models_from_the_supervisor_and_the_gateway(
    services: Services, supervisor: str, gateway: str, connect: Connect
) -> None:
    services.supervisor, services.gateway = supervisor, gateway
    listed = await connect.ok("list_models")
    assert [m["name"] for m in listed["models"]] == [BUNDLED, "other.gguf"]
    assert listed["models"][0]["source"] == "bundled"
    assert set(listed["services"]) == {"inference-chat", "inference-code"}
    assert listed["services"]["inference-chat"] == {
        "model": BUNDLED, "state": "stopped", "operation": None,
    }  # fmt: skip
    aliases = {a["name"]: a["backends"] for a in listed["aliases"]}
    assert aliases["chat-7b"] == ["inference-chat", "inference-code"]
    assert aliases["code-7b"] == ["inference-code", "inference-chat"]
    assert listed["notes"] == []


async def test_list_models_without_a_supervisor_asks_the_inference_servers(
    services: Services, gateway: str, connect: Connect
) -> None:
    services.gateway = gateway
    listed = await connect.ok("list_models")
    assert listed["models"] == []
    assert listed["services"]["inference-chat"]["model"] == "chat-upstream"
    assert listed["services"]["inference-code"] == {
        "model": "code-upstream", "state": "up", "operation": None,
    }  # fmt: skip
    assert "chat-7b" in {a["name"] for a in listed["aliases"]}
    assert len(listed["notes"]) == 1 and "supervisor is not reachable" in listed["notes"][0]


async def test_list_models_with_neither_names_both(services: Services, connect: Connect) -> None:
    message = await connect.error("list_models")
    assert "supervisor is not reachable" in message
    assert "api-gateway is not reachable" in message


async def test_stack_status_from_the_supervisor(
    services: Services, supervisor: str, connect: Connect
) -> None:
    services.supervisor = supervisor
    status = await connect.ok("stack_status")
    assert (status["source"], status["preset"], status["ok"]) == ("supervisor", "p2", False)
    assert set(status["services"]) >= {"inference-chat", "inference-code", "api-gateway"}
    chat = status["services"]["inference-chat"]
    assert (chat["state"], chat["health"], chat["model"]) == ("stopped", None, BUNDLED)


async def test_stack_status_without_a_supervisor_probes_each_service(
    services: Services, gateway: str, embedding_url: str, connect: Connect
) -> None:
    services.gateway, services.embedding = gateway, embedding_url
    status = await connect.ok("stack_status")
    assert status["source"] == "probes" and status["ok"] is False  # rag is down
    states = {name: (s["state"], s["health"]) for name, s in status["services"].items()}
    assert states == {
        "inference-chat": ("up", "healthy"),
        "inference-code": ("up", "healthy"),
        "api-gateway": ("up", "healthy"),
        "embedding": ("up", "healthy"),
        "rag": ("unreachable", None),
        "mcp-server": ("up", "healthy"),
    }
    assert "rag is not reachable" in status["services"]["rag"]["detail"]
    assert "supervisor is not reachable" in status["note"]


async def test_a_service_that_answers_but_is_not_ready_is_unhealthy(
    services: Services, gateway: str, connect: Connect
) -> None:
    services.gateway = gateway
    services.upstreams.chat.health_status = 503  # llama-server while it loads its model
    status = await connect.ok("stack_status")
    chat = status["services"]["inference-chat"]
    assert (chat["state"], chat["health"]) == ("up", "unhealthy")
    assert "inference-chat is unavailable" in chat["detail"]


async def test_switch_model_passes_the_supervisors_refusal_on(
    services: Services, supervisor: str, connect: Connect
) -> None:
    services.supervisor = supervisor
    message = await connect.error("switch_model", service="inference-chat", model="qwen.gguf")
    assert "supervisor refused the request" in message
    assert f"valid models: {BUNDLED}, other.gguf" in message


async def test_switch_model_without_a_supervisor_says_what_to_do(
    services: Services, connect: Connect
) -> None:
    message = await connect.error("switch_model", service="inference-code", model="other")
    assert "supervisor is not reachable" in message
    assert "localsuite up" in message and "CODE_MODEL" in message


@pytest.mark.parametrize(
    ("service", "model", "says"),
    [
        ("inference-chat", "models/other.gguf", "should match pattern"),
        ("inference-chat", "/etc/passwd", "should match pattern"),
        ("inference-chat", "../other.gguf", "should match pattern"),
        ("inference-chat", "other..gguf", "not a model name"),
        ("inference-chat", "", "should match pattern"),
        ("api-gateway", "other.gguf", "'inference-chat' or 'inference-code'"),
        ("rag", "other.gguf", "'inference-chat' or 'inference-code'"),
    ],
)
async def test_switch_model_refuses_what_is_not_a_registry_name_or_an_inference_service(
    services: Services, connect: Connect, service: str, model: str, says: str
) -> None:
    # the supervisor is a closed port: a call would say so
    message = await connect.error("switch_model", service=service, model=model)
    assert says in message and "not reachable" not in message
