"""Prometheus metrics: every metric of the suite is defined here, with low-cardinality labels.

Each app owns a `CollectorRegistry` (tests build many apps in one process). Logic does
not import prometheus_client: it calls the small hook methods below.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from localsuite.core.breaker import BreakerState

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "new_registry", "render"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def new_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "localsuite_gateway_requests_total",
            "Client requests by alias, endpoint and outcome (ok, client_error, failed).",
            ["alias", "endpoint", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "localsuite_gateway_attempts_total",
            "Upstream attempts by backend and result.",
            ["backend", "result"],
            registry=registry,
        )
        self.failovers = Counter(
            "localsuite_gateway_failovers_total",
            "Requests moved from one backend to the next.",
            ["alias", "from_backend"],
            registry=registry,
        )
        self.continuations = Counter(
            "localsuite_gateway_stream_continuations_total",
            "Streams continued on another backend after dying mid-answer, by outcome.",
            ["backend", "outcome"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "localsuite_gateway_breaker_state",
            "Circuit breaker per backend: 0 closed, 1 half_open, 2 open.",
            ["backend"],
            registry=registry,
        )
        self.backend_up = Gauge(
            "localsuite_gateway_backend_up",
            "1 when the last health probe of the backend passed.",
            ["backend"],
            registry=registry,
        )
        self.latency = Histogram(
            "localsuite_gateway_request_seconds",
            "Time from request to the end of the answer, by alias and endpoint.",
            ["alias", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "localsuite_gateway_time_to_first_token_seconds",
            "Time from request to the first streamed event sent to the client.",
            ["alias"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def breaker_changed(self, backend: str, state: BreakerState) -> None:
        self.breaker_state.labels(backend).set(_BREAKER_VALUE[state])

    def probe_result(self, backend: str, up: bool) -> None:
        self.backend_up.labels(backend).set(1 if up else 0)
