"""Prometheus metrics: every metric of the suite is defined here, with low-cardinality labels.

Each app owns a `CollectorRegistry` (tests build many apps in one process). Logic does
not import prometheus_client: it calls the small hook methods below.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "RagMetrics", "new_registry", "render"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RESTART_REASONS = ("crash", "unhealthy", "requested", "model_switch")
_BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def new_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class GatewayMetrics:
    """The gateway: requests by alias and outcome, attempts and circuits per deployment,
    servers' probe state, queues. Label children are cached: these run per request."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "localsuite_gateway_requests_total",
            "Client requests by alias, endpoint and outcome (ok, client_error, failed, cancelled).",
            ["alias", "endpoint", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "localsuite_gateway_attempts_total",
            "Attempts by deployment and outcome (ok, http_error, no_answer, cut, ...).",
            ["deployment", "result"],
            registry=registry,
        )
        self.failovers = Counter(
            "localsuite_gateway_failovers_total",
            "Requests moved from one deployment to the next.",
            ["alias", "from_deployment"],
            registry=registry,
        )
        self.continuations = Counter(
            "localsuite_gateway_stream_continuations_total",
            "Streams continued on another deployment after breaking mid-answer, by outcome.",
            ["deployment", "outcome"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "localsuite_gateway_breaker_state",
            "Circuit breaker per deployment: 0 closed, 1 half_open, 2 open.",
            ["deployment"],
            registry=registry,
        )
        self.backend_up = Gauge(
            "localsuite_gateway_backend_up",
            "1 when the server's last health probe passed (it is ready).",
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
        self.queued = Gauge(
            "localsuite_gateway_queue_depth",
            "Requests waiting for a free deployment, by alias.",
            ["alias"],
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "localsuite_gateway_queue_wait_seconds",
            "Time requests waited in the queue for a free deployment, by alias.",
            ["alias"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.rejected = Counter(
            "localsuite_gateway_queue_rejected_total",
            "Requests answered 429 because the alias's queue was full.",
            ["alias"],
            registry=registry,
        )
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, alias: str, endpoint: str, outcome: str, seconds: float | None) -> None:
        self._child(self.requests, alias, endpoint, outcome).inc()
        if seconds is not None:
            self._child(self.latency, alias, endpoint).observe(seconds)

    def first_token(self, alias: str, seconds: float) -> None:
        self._child(self.ttft, alias).observe(seconds)

    def attempt(self, deployment: str, result: str) -> None:
        self._child(self.attempts, deployment, result).inc()

    def failover(self, alias: str, deployment: str) -> None:
        self._child(self.failovers, alias, deployment).inc()

    def declare(self, alias: str, deployments: Iterable[str]) -> None:
        """An alias's failover series, at 0 before their first failover: a series that
        first appears with its first increment has no sample before it, so `rate()` and
        `increase()` never count that first failover."""
        for deployment in deployments:
            self._child(self.failovers, alias, deployment)

    def continuation(self, deployment: str, outcome: str) -> None:
        self._child(self.continuations, deployment, outcome).inc()

    def breaker_changed(self, deployment: str, state: BreakerState) -> None:
        self._child(self.breaker_state, deployment).set(_BREAKER_VALUE[state])

    def probe_result(self, server: str, up: bool) -> None:
        self._child(self.backend_up, server).set(1 if up else 0)

    def queue_depth(self, alias: str, depth: int) -> None:
        self._child(self.queued, alias).set(depth)

    def queue_wait(self, alias: str, seconds: float) -> None:
        self._child(self.queue_seconds, alias).observe(seconds)

    def queue_rejected(self, alias: str) -> None:
        self._child(self.rejected, alias).inc()


class SupervisorMetrics:
    """The supervisor's view of each service: lifecycle state, health, restarts, switches."""

    STATES = ("stopped", "starting", "ready", "stopping", "failed")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            "localsuite_supervisor_service_state",
            "1 for the state each service is in (stopped, starting, ready, stopping, failed).",
            ["service", "state"],
            registry=registry,
        )
        self.healthy = Gauge(
            "localsuite_supervisor_service_healthy",
            "1 while the service's last health check passed.",
            ["service"],
            registry=registry,
        )
        self.restarts = Counter(
            "localsuite_supervisor_restarts_total",
            f"Restarts by service and reason ({', '.join(RESTART_REASONS)}).",
            ["service", "reason"],
            registry=registry,
        )
        self.switches = Counter(
            "localsuite_supervisor_model_switches_total",
            "Model switches by service and outcome (ok, rolled_back, refused).",
            ["service", "outcome"],
            registry=registry,
        )

    def state_changed(self, service: str, state: str) -> None:
        for name in self.STATES:
            self.state.labels(service, name).set(1 if name == state else 0)

    def health_changed(self, service: str, healthy: bool) -> None:
        self.healthy.labels(service).set(1 if healthy else 0)

    def declare(self, service: str) -> None:
        """A service's restart series at 0 before its first restart (see
        `GatewayMetrics.declare`)."""
        for reason in RESTART_REASONS:
            self.restarts.labels(service, reason)

    def restarted(self, service: str, reason: str) -> None:
        self.restarts.labels(service, reason).inc()

    def switched(self, service: str, outcome: str) -> None:
        self.switches.labels(service, outcome).inc()


class EmbeddingMetrics:
    """The embedding service: requests, texts, batches the model ran, and its load state."""

    STATES = ("loading", "ready", "failed")
    _BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "localsuite_embedding_requests_total",
            "Requests by endpoint (embed, openai) and outcome (ok, client_error, failed).",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.texts = Counter(
            "localsuite_embedding_texts_total",
            "Texts embedded for clients, by endpoint.",
            ["endpoint"],
            registry=registry,
        )
        self.latency = Histogram(
            "localsuite_embedding_request_seconds",
            "Time from request to answer, by endpoint (answered requests only).",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "localsuite_embedding_batch_texts",
            "Texts per model call (requests are coalesced into batches).",
            buckets=self._BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "localsuite_embedding_batch_seconds",
            "Duration of one model call, by result (ok, error).",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queued = Gauge(
            "localsuite_embedding_queued_texts",
            "Texts waiting for the model.",
            registry=registry,
        )
        self.state = Gauge(
            "localsuite_embedding_model_state",
            "1 for the state the model is in (loading, ready, failed).",
            ["state"],
            registry=registry,
        )
        self.load_seconds = Gauge(
            "localsuite_embedding_model_load_seconds",
            "How long loading the model (or reaching the remote API) took.",
            registry=registry,
        )

    def state_changed(self, state: str, load_seconds: float | None = None) -> None:
        for name in self.STATES:
            self.state.labels(name).set(1 if name == state else 0)
        if load_seconds is not None:
            self.load_seconds.set(load_seconds)

    def queue(self, texts: int) -> None:
        self.queued.set(texts)

    def batch(self, texts: int, seconds: float, ok: bool) -> None:
        self.batch_size.observe(texts)
        self.batch_seconds.labels("ok" if ok else "error").observe(seconds)

    def request(self, endpoint: str, outcome: str, texts: int, seconds: float) -> None:
        self.requests.labels(endpoint, outcome).inc()
        if outcome == "ok":
            self.texts.labels(endpoint).inc(texts)
            self.latency.labels(endpoint).observe(seconds)


class RagMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queries = Counter(
            "localsuite_rag_queries_total",
            "Queries by outcome (ok, client_error, unavailable, failed, cancelled).",
            ["outcome"],
            registry=registry,
        )
        self.query_seconds = Histogram(
            "localsuite_rag_query_seconds",
            "Query time by phase (retrieval: embedding + search; generation: the gateway).",
            ["phase"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.chunks_written = Counter(
            "localsuite_rag_chunks_total",
            "Chunks added to or removed from Qdrant by index jobs.",
            ["action"],
            registry=registry,
        )
        self.retries = Counter(
            "localsuite_rag_dependency_retries_total",
            "Calls to a dependency tried again after a failure that can pass (queries and jobs).",
            ["dependency"],
            registry=registry,
        )
        self.dependency_up = Gauge(
            "localsuite_rag_dependency_up",
            "1 when the last probe of the dependency passed.",
            ["dependency"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "localsuite_rag_query_cache_hits_total",
            "Queries answered from the query cache (also counted in queries_total as ok).",
            registry=registry,
        )
        self.jobs = Gauge(
            "localsuite_rag_jobs",
            "Index jobs not finished, by state (queued, running, waiting).",
            ["state"],
            registry=registry,
        )

    def query(self, outcome: str) -> None:
        self.queries.labels(outcome).inc()

    def phase(self, phase: str, seconds: float) -> None:
        self.query_seconds.labels(phase).observe(seconds)

    def cached(self) -> None:
        self.cache_hits.inc()

    def chunks(self, *, added: int, removed: int) -> None:
        self.chunks_written.labels("added").inc(added)
        self.chunks_written.labels("removed").inc(removed)

    def retry(self, dependency: str) -> None:
        self.retries.labels(dependency).inc()

    def dependency(self, name: str, up: bool) -> None:
        self.dependency_up.labels(name).set(1 if up else 0)

    def job_states(self, counts: dict[str, int]) -> None:
        for state, count in counts.items():
            self.jobs.labels(state).set(count)


class McpMetrics:
    """The MCP server: tool calls by tool and outcome, and how long they took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "localsuite_mcp_tool_calls_total",
            "Tool calls by tool and outcome (ok, invalid_input, unavailable, rejected, "
            "timeout, failed).",
            ["tool", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "localsuite_mcp_tool_call_seconds",
            "Time from a tool call to its result, by tool (errors included).",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def call(self, tool: str, outcome: str, seconds: float) -> None:
        self.calls.labels(tool, outcome).inc()
        self.seconds.labels(tool).observe(seconds)
