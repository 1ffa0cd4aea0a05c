"""Failover semantics against fault-injecting upstreams (real HTTP on loopback)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from localsuite.core.breaker import BreakerState
from localsuite.gateway.servers import Health
from localsuite.testing.gateway_stack import Stack
from localsuite.testing.servers import wait_until

CONTEXT_ERROR = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
    }
}


def test_plain_answer_names_backend_and_passes_body_through(stack: Stack) -> None:
    with stack.client() as client:
        r = stack.chat(client, cache_prompt=True, grammar='root ::= "x"', n_probs=2)
    assert r.status_code == 200
    assert r.headers["x-localsuite-backend"] == "inference-chat"
    assert r.headers["x-localsuite-attempts"] == "1"
    assert r.json()["model"] == "primary"
    sent = stack.primary.requests[-1]
    assert (
        sent["cache_prompt"] is True and sent["grammar"] == 'root ::= "x"' and sent["n_probs"] == 2
    )
    assert sent["model"] == "chat-7b"


def test_code_alias_prefers_inference_code(stack: Stack) -> None:
    with stack.client() as client:
        r = client.post("/v1/completions", json={"model": "code", "prompt": "def f():"})
    assert r.status_code == 200
    assert r.headers["x-localsuite-backend"] == "inference-code"


def test_transient_error_is_retried_once_on_the_same_backend(stack: Stack) -> None:
    stack.primary.fault("status", status=503, times=1)
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 200
    assert r.headers["x-localsuite-backend"] == "inference-chat"
    assert r.headers["x-localsuite-attempts"] == "2"


def test_persistent_5xx_fails_over(stack: Stack) -> None:
    stack.primary.fault("status", status=500)
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 200
    assert r.headers["x-localsuite-backend"] == "inference-code"
    assert r.headers["x-localsuite-attempts"] == "3"  # primary, primary again, secondary
    assert len(stack.primary.requests) == 2


@pytest.mark.parametrize(
    ("retry_after", "backend", "primary_calls"),
    [("0", "inference-chat", 2), ("120", "inference-code", 1)],
    ids=["fits-deadline-retried", "too-long-next-backend"],
)
def test_429_retry_after(stack: Stack, retry_after: str, backend: str, primary_calls: int) -> None:
    stack.primary.fault("status", status=429, retry_after=retry_after, times=1)
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 200
    assert r.headers["x-localsuite-backend"] == backend
    assert len(stack.primary.requests) == primary_calls


def test_every_backend_rate_limited_is_429_with_retry_after(stack: Stack) -> None:
    for fake in (stack.primary, stack.secondary):
        fake.fault("status", status=429, retry_after="120")
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1


def test_context_length_moves_on_without_retrying(stack: Stack) -> None:
    stack.primary.fault("status", status=400, body=CONTEXT_ERROR)
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 200
    assert r.headers["x-localsuite-backend"] == "inference-code"
    assert len(stack.primary.requests) == 1


def test_context_length_everywhere_is_a_400(stack: Stack) -> None:
    for fake in (stack.primary, stack.secondary):
        fake.fault("status", status=400, body=CONTEXT_ERROR)
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_other_4xx_goes_back_with_the_upstream_reason(stack: Stack) -> None:
    body = {"error": {"message": "'temperature' must be a number", "type": "invalid_request_error"}}
    stack.primary.fault("status", status=422, body=body)
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "'temperature' must be a number"
    assert stack.secondary.requests == []


def test_garbage_answer_fails_over_then_502(stack: Stack) -> None:
    stack.primary.fault("garbage")
    with stack.client() as client:
        assert stack.chat(client).headers["x-localsuite-backend"] == "inference-code"
        stack.secondary.fault("garbage")
        r = stack.chat(client)
    assert r.status_code in (502, 503)
    assert r.json()["error"]["type"] in ("upstream_error", "service_unavailable")


def test_silent_backend_costs_one_first_byte_timeout_for_streams(stack: Stack) -> None:
    stack.primary.fault("hang")
    started = time.monotonic()
    with stack.client() as client:
        r = stack.chat(client, stream=True)
        text = r.text
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert r.headers["x-localsuite-backend"] == "inference-code"
    assert text.rstrip().endswith("data: [DONE]")
    assert (
        elapsed < stack.gateway.settings.llm_request_timeout
    )  # bounded by first-byte, not deadline


def test_hung_backend_is_detected_by_the_prober_for_plain_answers(stack: Stack) -> None:
    """A hung backend is caught by the prober (it marks it down, waking what waits on it)
    or by the first-byte timeout, whichever comes first: never by the deadline."""
    stack.primary.fault("hang")
    stack.primary.health_hangs = True
    started = time.monotonic()
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 200
    assert r.headers["x-localsuite-backend"] == "inference-code"
    assert time.monotonic() - started < stack.gateway.settings.llm_request_timeout
    assert stack.server("inference-chat").health is Health.DOWN


def test_dead_backend_costs_no_wait_and_sees_only_probes(stack_factory: Any) -> None:
    stack: Stack = stack_factory()
    upstream = stack.server("inference-chat")
    # Point the primary at a closed port: connection refused, like a killed llama-server.
    stack.primary.fault("status", status=503)
    stack.primary.health_status = 503
    wait_until(lambda: upstream.health is Health.LOADING, 5, "primary marked loading")
    before = len(stack.primary.requests)
    with stack.client() as client:
        results = [stack.chat(client) for _ in range(5)]
    assert all(r.status_code == 200 for r in results)
    assert {r.headers["x-localsuite-backend"] for r in results} == {"inference-code"}
    assert len(stack.primary.requests) == before  # not routable: no request sent


def test_breaker_opens_and_a_probe_lets_the_backend_back(stack: Stack) -> None:
    upstream = stack.deployment("inference-chat")
    stack.primary.fault("status", status=500)
    with stack.client() as client:
        stack.chat(client)  # two failures on the primary: the breaker opens
        assert upstream.breaker.state is BreakerState.OPEN
        calls = len(stack.primary.requests)
        assert stack.chat(client).headers["x-localsuite-backend"] == "inference-code"
        assert len(stack.primary.requests) == calls  # open: skipped at once
        stack.primary.heal()
        wait_until(lambda: upstream.breaker.state is BreakerState.HALF_OPEN, 5, "half-open")
        r = stack.chat(client)
    assert r.headers["x-localsuite-backend"] == "inference-chat"
    assert upstream.breaker.state is BreakerState.CLOSED


def test_a_backend_back_from_the_dead_is_tried_without_waiting_out_the_cooldown(
    stack_factory: Any,
) -> None:
    stack = stack_factory(gateway_breaker_cooldown=600.0)
    upstream = stack.deployment("inference-chat")
    server = upstream.server
    stack.primary.fault("status", status=500)
    with stack.client() as client:
        stack.chat(client)  # two failures: open, for at least the 600 s cooldown
        assert upstream.breaker.state is BreakerState.OPEN
        stack.primary.health_status = 503  # restarted: loading its model ...
        wait_until(lambda: server.health is Health.LOADING, 5, "primary loading")
        stack.primary.heal()  # ... and ready: a new process, its old failures explained
        wait_until(lambda: upstream.breaker.state is BreakerState.HALF_OPEN, 5, "half-open")
        assert stack.chat(client).headers["x-localsuite-backend"] == "inference-chat"
    assert upstream.breaker.state is BreakerState.CLOSED


def test_no_backend_up_is_a_quick_503_with_retry_after(stack: Stack) -> None:
    for fake in (stack.primary, stack.secondary):
        fake.health_status = 503
    gw = stack.gateway
    wait_until(lambda: not any(u.routable for u in gw.table.servers.values()), 5, "all down")
    with stack.client() as client:
        r = stack.chat(client)
        health = client.get("/health")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "no_backend_available"
    assert "inference-chat" in r.json()["error"]["message"]
    assert int(r.headers["retry-after"]) >= 1
    assert health.status_code == 503
    assert health.json()["backends"]["inference-chat"]["state"] == "loading"


def test_deadline_passed_is_504(stack_factory: Any) -> None:
    stack: Stack = stack_factory(llm_request_timeout=0.5)
    for fake in (stack.primary, stack.secondary):
        fake.fault("slow", delay=2.0)
    with stack.client() as client:
        r = stack.chat(client)
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "timeout_error"


def test_models_health_and_metrics(stack: Stack) -> None:
    with stack.client() as client:
        models = client.get("/v1/models").json()
        health = client.get("/health")
        stack.chat(client)
        metrics = client.get("/metrics").text
    assert {m["id"] for m in models["data"]} == {"chat-7b", "code-7b", "chat", "code"}
    assert health.status_code == 200
    assert health.json()["deployments"]["inference-code"]["circuit"] == "closed"
    assert (
        'localsuite_gateway_requests_total{alias="chat-7b",endpoint="chat",outcome="ok"}' in metrics
    )
    assert 'localsuite_gateway_backend_up{backend="inference-chat"} 1.0' in metrics
    # before any failover, its series already exist at 0: rate() counts the first one
    for alias, deployment in (
        ("chat-7b", "inference-chat"),
        ("chat-7b", "inference-code"),
        ("code-7b", "inference-code"),
        ("code-7b", "inference-chat"),
    ):
        assert (f'localsuite_gateway_failovers_total{{alias="{alias}",'
                f'from_deployment="{deployment}"}} 0.0') in metrics  # fmt: skip


def test_embeddings_without_the_service_is_a_clear_503(stack_factory: Any) -> None:
    stack: Stack = stack_factory(embedding_url="http://127.0.0.1:9")
    with stack.client() as client:
        r = client.post("/v1/embeddings", json={"model": "x", "input": "hello"})
    assert r.status_code == 503
    assert "embedding service" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"messages": []}', 400, "missing_model"),
        (b'{"model": 7}', 400, "missing_model"),
        (b'{"model": "gpt-99", "messages": []}', 404, "model_not_found"),
        (b'{"model": "chat", "stream": "yes"}', 400, "invalid_request"),
    ],
)
def test_bad_input_gets_a_clear_error(stack: Stack, content: bytes, status: int, code: str) -> None:
    with stack.client() as client:
        r = client.post(
            "/v1/chat/completions", content=content, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


def test_body_over_the_limit_is_413(stack_factory: Any) -> None:
    stack: Stack = stack_factory(gateway_max_body_bytes=2048)
    with stack.client() as client:
        r = stack.chat(client, padding="x" * 4096)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_api_key_is_demanded_when_set(stack_factory: Any) -> None:
    stack: Stack = stack_factory(localsuite_api_key="s3cret")
    with stack.client() as client:
        assert stack.chat(client).status_code == 401
        assert client.get("/health/live").status_code == 200
    with stack.client(headers={"Authorization": "Bearer s3cret"}) as client:
        assert stack.chat(client).status_code == 200


def test_a_long_generation_past_the_deadline_does_not_open_the_breaker(stack_factory: Any) -> None:
    stack: Stack = stack_factory(llm_request_timeout=0.3, gateway_breaker_failures=1)
    stack.primary.fault("slow", delay=1.0)
    stack.secondary.fault("slow", delay=1.0)
    with stack.client() as client:
        assert stack.chat(client).status_code == 504
    assert stack.deployment("inference-chat").breaker.state is BreakerState.CLOSED


def test_renamed_aliases_keep_their_short_names(stack_factory: Any) -> None:
    stack: Stack = stack_factory(api_gateway_chat_model="qwen-chat")
    with stack.client() as client:
        r = stack.chat(client, model="chat")
    assert r.status_code == 200 and r.headers["x-localsuite-backend"] == "inference-chat"
