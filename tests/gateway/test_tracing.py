"""Traces of requests that fail over: one trace, a span per attempt, the backend told.

The gateway's spans go to an in-memory exporter (`Tracing.to`); the fake upstreams
record the `traceparent` each attempt sent."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from localsuite.core.tracing import Tracing
from localsuite.testing.gateway_stack import Stack
from localsuite.testing.servers import wait_until

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


def traced(stack_factory: Any) -> tuple[Stack, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return stack_factory(tracing=Tracing.to(exporter, "api-gateway")), exporter


def request_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The request's span, once it has ended (a stream's ends after its last event)."""
    wait_until(lambda: any(s.name.startswith("gateway ") for s in exporter.get_finished_spans()),
               what="the request's span")  # fmt: skip
    (span,) = [s for s in exporter.get_finished_spans() if s.name.startswith("gateway ")]
    return span


def attempts_of(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    spans = [s for s in exporter.get_finished_spans() if s.name == "gateway.attempt"]
    return sorted(spans, key=lambda s: s.attributes["localsuite.attempt"])  # type: ignore[index]


def sent_traceparents(stack: Stack) -> list[str]:
    upstreams = [*stack.primary.headers, *stack.secondary.headers]
    return [h["traceparent"] for h in upstreams if "traceparent" in h]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_request_that_fails_over_is_one_trace_with_a_span_per_attempt(
    stack_factory: Any, stream: bool
) -> None:
    stack, exporter = traced(stack_factory)
    stack.primary.fault("status", status=503)
    with stack.client(headers={"traceparent": TRACEPARENT, "x-request-id": "trace-me"}) as c:
        answer = stack.chat(c, stream=stream)
    assert answer.status_code == 200, answer.text
    count = int(answer.headers["x-localsuite-attempts"])
    assert count >= 2

    root = request_span(exporter)
    attempts = attempts_of(exporter)
    assert len(attempts) == count
    # one trace, continuing the client's: the request under the client's span, every
    # attempt under the request
    assert {format(s.context.trace_id, "032x") for s in [root, *attempts]} == {CLIENT_TRACE}
    assert root.parent is not None and format(root.parent.span_id, "016x") == CLIENT_SPAN
    assert all(a.parent is not None and a.parent.span_id == root.context.span_id
               for a in attempts)  # fmt: skip
    assert root.attributes is not None
    assert root.attributes["localsuite.outcome"] == "ok"
    assert root.attributes["localsuite.request_id"] == "trace-me"
    assert root.attributes["localsuite.attempts"] == count
    assert root.attributes["localsuite.deployment"] == answer.headers["x-localsuite-deployment"]

    outcomes = [a.attributes["localsuite.outcome"] for a in attempts]  # type: ignore[index]
    assert outcomes == ["http_error"] * (count - 1) + ["ok"]
    deployments = [a.attributes["localsuite.deployment"] for a in attempts]  # type: ignore[index]
    assert deployments[-1] == answer.headers["x-localsuite-deployment"]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[-1].status.status_code is not StatusCode.ERROR

    # each backend was told which attempt's span it answers
    expected = [f"00-{CLIENT_TRACE}-{a.context.span_id:016x}-01" for a in attempts]
    assert sent_traceparents(stack) == expected


def test_a_stream_continued_elsewhere_marks_the_continuing_attempt(stack_factory: Any) -> None:
    stack, exporter = traced(stack_factory)
    stack.primary.fault("cut", after_events=3)
    with stack.client() as c:
        answer = stack.chat(c, stream=True)
    assert answer.status_code == 200 and "[DONE]" in answer.text
    root = request_span(exporter)
    attempts = attempts_of(exporter)
    assert [a.attributes["localsuite.outcome"] for a in attempts] == ["cut", "ok"]  # type: ignore[index]
    assert attempts[-1].attributes is not None
    assert attempts[-1].attributes.get("localsuite.continuation") is True
    assert root.attributes is not None and root.attributes["localsuite.outcome"] == "ok"


def test_a_request_no_deployment_can_serve_ends_its_span_failed(stack_factory: Any) -> None:
    stack, exporter = traced(stack_factory)
    stack.primary.fault("status", status=503)
    stack.secondary.fault("status", status=503)
    with stack.client() as c:
        answer = stack.chat(c)
    assert answer.status_code == 503
    root = request_span(exporter)
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None and root.attributes["localsuite.outcome"] == "failed"
    attempts = attempts_of(exporter)
    assert len(attempts) == root.attributes["localsuite.attempts"] >= 2
    assert {a.attributes["localsuite.outcome"] for a in attempts} == {"http_error"}  # type: ignore[index]


def test_tracing_off_sends_no_traceparent(stack: Stack) -> None:
    with stack.client() as c:
        assert stack.chat(c).status_code == 200
    assert sent_traceparents(stack) == []
