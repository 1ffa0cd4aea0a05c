"""Health at two levels: a server (its probe decides) and each deployment on it (its own
breaker), and request ids through the whole path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from localsuite.core.breaker import BreakerState
from localsuite.core.settings import Settings
from localsuite.gateway.app import create_gateway_app
from localsuite.gateway.config import parse_litellm_config
from localsuite.gateway.gateway import Gateway
from localsuite.gateway.servers import Health
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import FAST
from localsuite.testing.servers import serve_in_thread, wait_until

# alias a → model-a on server one; falls back to alias b → model-b on the same server,
# then alias c → model-c on server two.
ROUTING = """
model_list:
  - {model_name: a, litellm_params: {model: openai/model-a, api_base: "ONE/v1"}}
  - {model_name: b, litellm_params: {model: openai/model-b, api_base: "ONE/v1"}}
  - {model_name: c, litellm_params: {model: openai/model-c, api_base: "TWO/v1"}}
router_settings:
  allowed_fails: 2
  fallbacks: [{a: [b, c]}]
"""


@dataclass
class Pair:
    url: str
    one: FakeUpstream
    two: FakeUpstream
    gateway: Gateway
    one_url: str
    one_serving: ExitStack  # close it and server one is gone: its port refuses

    def ask(self, client: httpx.Client, alias: str, **kw: Any) -> httpx.Response:
        body = {"model": alias, "messages": [{"role": "user", "content": "hi"}], **kw}
        return client.post("/v1/chat/completions", json=body)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)


@pytest.fixture
def pair_factory() -> Iterator[Any]:
    with ExitStack() as stack:

        def build(**overrides: Any) -> Pair:
            one, two = FakeUpstream("one"), FakeUpstream("two")
            one_serving = stack.enter_context(ExitStack())
            one_url = one_serving.enter_context(serve_in_thread(one.app()))
            two_url = stack.enter_context(serve_in_thread(two.app()))
            settings = Settings(_env_file=None, **{**FAST, **overrides})  # type: ignore[arg-type]
            text = ROUTING.replace("ONE", one_url).replace("TWO", two_url)
            routing = parse_litellm_config(yaml.safe_load(text), settings, {})
            app = create_gateway_app(settings, routing)
            url = stack.enter_context(serve_in_thread(app))
            return Pair(url, one, two, app.state.gateway, one_url, one_serving)

        yield build


def test_another_model_on_a_server_already_tried_is_a_fresh_candidate(pair_factory: Any) -> None:
    pair = pair_factory()
    pair.one.fault("status", status=503, model="model-a")
    with pair.client() as client:
        answer = pair.ask(client, "a")
    assert answer.status_code == 200
    assert answer.headers["x-localsuite-deployment"].endswith("/model-b")
    assert pair.one_url in pair.gateway.table.servers[answer.headers["x-localsuite-backend"]
                                                      ].spec.api_base  # fmt: skip
    assert [r["model"] for r in pair.one.requests] == ["model-a", "model-a", "model-b"]


def test_one_models_failures_open_its_own_circuit_only(pair_factory: Any) -> None:
    pair = pair_factory()
    table = pair.gateway.table
    (a,) = [d for d in table.deployments.values() if d.spec.model == "model-a"]
    (b,) = [d for d in table.deployments.values() if d.spec.model == "model-b"]
    pair.one.fault("status", status=500, model="model-a")
    with pair.client() as client:
        assert pair.ask(client, "a").headers["x-localsuite-deployment"] == b.id
        assert a.breaker.state is BreakerState.OPEN  # two failures: its own circuit opened
        assert b.breaker.state is BreakerState.CLOSED and a.server is b.server
        assert a.server.health is Health.READY  # the server is fine: its probe says so
        calls = len(pair.one.requests)
        assert pair.ask(client, "a").headers["x-localsuite-deployment"] == b.id
        assert [r["model"] for r in pair.one.requests[calls:]] == ["model-b"]  # a skipped
        assert pair.ask(client, "b").headers["x-localsuite-deployment"] == b.id
        health = client.get("/health").json()
        metrics = client.get("/metrics").text
    assert health["deployments"][a.id]["circuit"] == "open"
    assert health["deployments"][b.id]["circuit"] == "closed"
    assert health["backends"][a.server.name]["state"] == "ready"
    assert f'localsuite_gateway_breaker_state{{deployment="{a.id}"}} 2.0' in metrics
    assert f'localsuite_gateway_breaker_state{{deployment="{b.id}"}} 0.0' in metrics
    assert f'localsuite_gateway_backend_up{{backend="{a.server.name}"}} 1.0' in metrics
    assert f'localsuite_gateway_attempts_total{{deployment="{a.id}",result="http_error"}}' in (
        metrics
    )
    pair.one.heal()  # a passing probe after the cooldown lets one trial through
    wait_until(lambda: a.breaker.state is BreakerState.HALF_OPEN, 5, "model-a half open")
    with pair.client() as client:
        assert pair.ask(client, "a").headers["x-localsuite-deployment"] == a.id
    assert a.breaker.state is BreakerState.CLOSED


def test_a_refused_connection_takes_every_deployment_of_the_server_out(pair_factory: Any) -> None:
    # A long probe interval: it is the request that meets the dead server first.
    pair = pair_factory(gateway_probe_interval=30.0)
    (server,) = [s for s in pair.gateway.table.servers.values() if pair.one_url in s.spec.api_base]
    assert server.health is Health.READY
    pair.one_serving.close()  # server one is gone: its port refuses connections
    with pair.client() as client:
        answer = pair.ask(client, "a")
    assert answer.status_code == 200
    assert answer.headers["x-localsuite-deployment"].endswith("/model-c")
    assert answer.headers["x-localsuite-attempts"] == "2"  # model-b was not tried: same server
    wait_until(lambda: server.health is Health.DOWN, 5, "the probe, nudged, marks it down")
    assert all(d.breaker.state is BreakerState.CLOSED for d in server.deployments)
    assert not any(d.usable for d in server.deployments)


def test_a_model_the_server_failed_to_load_is_out_until_it_loads(pair_factory: Any) -> None:
    pair = pair_factory()
    (a,) = [d for d in pair.gateway.table.deployments.values() if d.spec.model == "model-a"]
    pair.one.model_status = {"model-a": {"value": "unloaded", "failed": True, "exit_code": 1}}
    wait_until(lambda: a.load_failure is not None, 5, "the probe reads the model list")
    with pair.client() as client:
        answer = pair.ask(client, "a")
        health = client.get("/health").json()
    assert answer.headers["x-localsuite-deployment"].endswith("/model-b")
    assert "model-a" not in [r["model"] for r in pair.one.requests]
    assert "failed to load (exit code 1)" in health["deployments"][a.id]["load_failure"]
    pair.one.model_status = {"model-a": {"value": "loaded"}}
    wait_until(lambda: a.usable, 5, "loaded again")


def test_request_ids_go_to_the_backend_and_back(pair_factory: Any, caplog: Any) -> None:
    pair = pair_factory()
    pair.one.fault("status", status=503, model="model-a")
    with caplog.at_level(logging.INFO, "localsuite.gateway"), pair.client() as client:
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "a", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-request-id": "req-42"},
        )
        made = pair.ask(client, "b")
        bad = client.post(
            "/v1/chat/completions",
            json={"model": "b", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-request-id": "spaces are not allowed"},
        )
        error = client.post("/v1/chat/completions", json={"model": "nope", "messages": []},
                            headers={"x-request-id": "req-43"})  # fmt: skip
    assert answer.headers["x-request-id"] == "req-42"
    assert {h["x-request-id"] for h in pair.one.headers[:3]} == {"req-42"}  # every attempt
    assert any("req-42" in r.getMessage() and "model-a" in r.getMessage() for r in caplog.records)
    generated = made.headers["x-request-id"]
    assert len(generated) == 32 and pair.one.headers[-2]["x-request-id"] == generated
    assert bad.headers["x-request-id"] != "spaces are not allowed"
    assert error.status_code == 404 and error.headers["x-request-id"] == "req-43"
