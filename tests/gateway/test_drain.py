"""Draining a backend (the model switch's first step): no new requests, in-flight ones finish."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from localsuite.testing.gateway_stack import Stack
from localsuite.testing.servers import wait_until


def backend(client: httpx.Client, name: str) -> dict[str, Any]:
    answer = client.get(f"/admin/backends/{name}")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def test_a_drained_backend_gets_no_new_requests_until_undrained(stack: Stack) -> None:
    with stack.client() as client:
        drained = client.post("/admin/backends/inference-chat/drain")
        assert drained.status_code == 200
        assert drained.json()["draining"] is True and drained.json()["routable"] is False
        for _ in range(3):
            assert stack.chat(client).headers["x-localsuite-backend"] == "inference-code"
        health = client.get("/health").json()
        assert health["backends"]["inference-chat"]["draining"] is True
        assert health["checks"]["alias:chat-7b"]["detail"] == "served by inference-code"

        assert client.post("/admin/backends/inference-chat/undrain").json()["draining"] is False
        assert stack.chat(client).headers["x-localsuite-backend"] == "inference-chat"


@pytest.mark.parametrize("stream", [False, True])
def test_requests_in_flight_finish_on_the_drained_backend(stack_factory: Any, stream: bool) -> None:
    stack: Stack = stack_factory(llm_first_byte_timeout=10.0)  # the slow answer is no fault
    stack.primary.fault("slow", delay=1.0, times=1)
    answers: list[httpx.Response] = []

    def slow_request() -> None:
        with stack.client() as own:
            answers.append(stack.chat(own, stream=stream, max_tokens=4))

    worker = threading.Thread(target=slow_request)
    worker.start()
    with stack.client() as client:
        wait_until(lambda: backend(client, "inference-chat")["in_flight"] == 1, 10, "in flight")
        assert client.post("/admin/backends/inference-chat/drain").json()["in_flight"] == 1
        assert stack.chat(client).headers["x-localsuite-backend"] == "inference-code"
        worker.join(timeout=30)
        assert backend(client, "inference-chat")["in_flight"] == 0
    (answer,) = answers
    assert answer.status_code == 200
    assert answer.headers["x-localsuite-backend"] == "inference-chat"
    if stream:
        assert answer.text.rstrip().endswith("data: [DONE]")


def test_with_every_backend_drained_requests_get_503_saying_why(stack: Stack) -> None:
    with stack.client() as client:
        for name in ("inference-chat", "inference-code"):
            client.post(f"/admin/backends/{name}/drain")
        answer = stack.chat(client)
        assert answer.status_code == 503
        assert "draining" in answer.json()["error"]["message"]
        assert client.get("/health").status_code == 503


def test_an_unknown_backend_is_404_with_the_known_ones(stack: Stack) -> None:
    with stack.client() as client:
        answer = client.post("/admin/backends/nope/drain")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "backend_not_found" and "inference-chat" in error["message"]


def test_admin_routes_need_the_api_key(stack_factory: Any) -> None:
    stack: Stack = stack_factory(localsuite_api_key="secret")
    with stack.client() as client:
        assert client.post("/admin/backends/inference-chat/drain").status_code == 401
        authed = client.post(
            "/admin/backends/inference-chat/drain", headers={"Authorization": "Bearer secret"}
        )
    assert authed.status_code == 200
