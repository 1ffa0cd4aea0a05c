"""When tracing is on, and what it costs when it is off."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from localsuite.core.settings import Settings
from localsuite.core.tracing import NULL_SPAN, OFF, Tracing


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"otel_exporter_otlp_endpoint": "http://127.0.0.1:4318"}, True),
        ({"otel_exporter_otlp_traces_endpoint": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"otel_traces_exporter": "console"}, True),
        ({"otel_traces_exporter": "otlp"}, True),
        ({"otel_traces_exporter": "none", "otel_exporter_otlp_endpoint": "http://x:4318"}, False),
        ({"otel_sdk_disabled": True, "otel_exporter_otlp_endpoint": "http://x:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_the_otel_settings_ask(env: dict[str, Any], on: bool) -> None:
    tracing = Tracing.from_settings(Settings(_env_file=None, **env), "api-gateway")
    try:
        assert tracing.enabled is on
        span = tracing.start("x")
        assert (span is NULL_SPAN) is not on
        span.end()
    finally:
        tracing.shutdown()


def test_off_costs_one_shared_null_span_and_no_headers() -> None:
    span = OFF.start("gateway.request", attributes={"a": 1})
    assert span is NULL_SPAN and span.child("gateway.attempt") is NULL_SPAN
    assert span.headers() == {} and OFF.headers() == {}
    assert OFF.extract({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
    with OFF.active("rag.query") as active:
        assert active is NULL_SPAN
    span.end("ok", error="ignored")


def test_an_active_span_is_the_parent_of_what_runs_inside_and_fails_with_it() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.to(exporter)
    with pytest.raises(RuntimeError), tracing.active("outer") as outer:
        outer.set("k", "v")
        headers = tracing.headers()
        with tracing.active("inner"):
            pass
        raise RuntimeError("boom")
    inner, outer_span = exporter.get_finished_spans()
    assert inner.parent is not None and inner.parent.span_id == outer_span.context.span_id
    assert headers["traceparent"].split("-")[2] == f"{outer_span.context.span_id:016x}"
    assert outer_span.status.status_code is StatusCode.ERROR
    assert outer_span.attributes == {"k": "v", "localsuite.outcome": "failed"}


HOST = """
import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from localsuite.gateway.app import create_gateway_app
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.servers import serve_in_thread, wait_until

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
primary, secondary = FakeUpstream("primary"), FakeUpstream("secondary")
primary.fault("status", status=503)
with serve_in_thread(primary.app()) as p, serve_in_thread(secondary.app()) as s:
    with serve_in_thread(create_gateway_app(make_settings(p, s))) as url:
        body = {"model": "chat-7b", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 200
        wait_until(lambda: any(x.name.startswith("gateway ")
                               for x in exporter.get_finished_spans()))
print(sorted({x.name for x in exporter.get_finished_spans()}))
print(all("traceparent" in h for h in primary.headers + secondary.headers))
"""


def test_a_host_process_s_own_global_provider_gets_the_spans() -> None:
    """A process that embeds the gateway and set OpenTelemetry's global provider itself
    (in a child process: the global provider can be set once per process)."""
    done = subprocess.run([sys.executable, "-c", HOST], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    names, told = done.stdout.strip().splitlines()[-2:]
    assert names == "['gateway chat', 'gateway.attempt']"
    assert told == "True"


def test_no_global_provider_means_off() -> None:
    assert Tracing.from_host("api-gateway").enabled is False
