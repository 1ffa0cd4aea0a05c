"""What `localsuite status --watch` shows: the stack's numbers, read from each service's
own `/health` and `/metrics`, as one typed `Snapshot` per refresh.

    collect(...)                 one round of calls, concurrent and short: the supervisor's
                                 `/status` (the services and their ports), then every
                                 service's `/health`, and the `/metrics` of the suite's own
                                 services (llama-servers are seen through the gateway)
    snapshot(stack, probes, at)  the pure part: those answers -> the numbers
    rates(earlier, later)        counters' change per second between two snapshots

A service that does not answer is data (`Probe.error`), never an exception: the view
shows it as down, or as "not yet" while the supervisor is still starting it or it waits
for its dependencies. Counters are totals since each service started; a total that went
down means the service restarted, and its new total is what happened since.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from localsuite.core.stack import ProcessState, StackState

if TYPE_CHECKING:
    import httpx

PROBE_TIMEOUT = 2.0  # seconds for any one call: a slow answer is as good as none here
GATEWAY, RAG = "api-gateway", "rag"
FAILED = "failed"  # the requests outcome that counts as an error (not the client's)

Labels = Mapping[str, str]
Samples = dict[str, list[tuple[Labels, float]]]


@dataclass(frozen=True, slots=True)
class Probe:
    """What one service answered: `/health`'s status and JSON body, and `/metrics`' text;
    `error` says why it did not answer `/health` (it is down)."""

    status: int | None = None
    health: Mapping[str, Any] = field(default_factory=dict)
    metrics: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Histogram:
    """A Prometheus histogram: cumulative counts per upper bound (ascending, +Inf last)."""

    buckets: tuple[tuple[float, float], ...]
    total: float
    count: float

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """As PromQL's `histogram_quantile`: linear within the bucket the rank falls in."""
        if not self.count:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for upper, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * (rank - below) / (cumulative - below)
            lower, below = upper, cumulative
        return lower


@dataclass(frozen=True, slots=True)
class ServiceView:
    name: str
    state: ProcessState | None  # as the supervisor last saw it
    restarts: int
    answered: bool
    status: int | None  # `/health`'s status code
    healthy: bool
    problem: str  # why it is down or unhealthy


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The stack at clock time `at`: counters are totals since each service started."""

    at: float
    stack: StackState | None  # the services, as the supervisor last described them
    supervisor_error: str | None
    services: tuple[ServiceView, ...]
    gateway_up: bool
    requests: dict[tuple[str, str], float]  # (alias, outcome), every endpoint summed
    failovers: dict[str, float]  # by alias
    attempts: dict[tuple[str, str], float]  # (deployment, result)
    queues: dict[str, float]  # requests waiting, by alias
    first_token: dict[str, Histogram]  # time to first token, by alias
    servers: dict[str, Mapping[str, Any]]  # the gateway's `/health` detail, per server
    deployments: dict[str, Mapping[str, Any]]  # ... and per deployment (circuit)
    rag_up: bool
    rag_queries: dict[str, float]  # by outcome
    rag_jobs: dict[str, float]  # jobs not finished, by state
    rag_dependencies: dict[str, bool]

    def runs(self, service: str) -> bool:
        """Whether the stack has `service` (whatever its state)."""
        return any(s.name == service for s in self.services)

    def aliases(self) -> list[str]:
        seen = [a for a, _ in self.requests] + list(self.queues) + list(self.first_token)
        return sorted(set(seen))


@dataclass(frozen=True, slots=True)
class Rates:
    """Per second, over the `seconds` between two snapshots."""

    seconds: float
    requests: dict[str, float]  # by alias, every outcome
    failed: dict[str, float]  # by alias


def snapshot(
    stack: StackState | None,
    probes: Mapping[str, Probe],
    at: float,
    supervisor_error: str | None = None,
) -> Snapshot:
    """The numbers in the services' answers (`probes`, by service name)."""
    services = tuple(_service(name, stack, probes.get(name, Probe(error="not asked")))
                     for name in _names(stack, probes))  # fmt: skip
    gateway = probes.get(GATEWAY, Probe(error="not asked"))
    rag = probes.get(RAG, Probe(error="not asked"))
    g, r = _samples(gateway.metrics), _samples(rag.metrics)
    return Snapshot(
        at=at,
        stack=stack,
        supervisor_error=supervisor_error,
        services=services,
        gateway_up=gateway.error is None,
        requests=_sum(g, "localsuite_gateway_requests_total", "alias", "outcome"),
        failovers=_sum(g, "localsuite_gateway_failovers_total", "alias"),
        attempts=_sum(g, "localsuite_gateway_attempts_total", "deployment", "result"),
        queues=_sum(g, "localsuite_gateway_queue_depth", "alias"),
        first_token=_histograms(g, "localsuite_gateway_time_to_first_token_seconds", "alias"),
        servers=_details(gateway.health, "backends"),
        deployments=_details(gateway.health, "deployments"),
        rag_up=rag.error is None,
        rag_queries=_sum(r, "localsuite_rag_queries_total", "outcome"),
        rag_jobs=_sum(r, "localsuite_rag_jobs", "state"),
        rag_dependencies={name: up == 1 for name, up in
                          _sum(r, "localsuite_rag_dependency_up", "dependency").items()},
    )  # fmt: skip


def rates(earlier: Snapshot, later: Snapshot) -> Rates | None:
    """What the counters did between two snapshots; None without time between them."""
    seconds = later.at - earlier.at
    if seconds <= 0:
        return None
    requests = _increase(earlier.requests, later.requests)
    return Rates(
        seconds=seconds,
        requests=_by_alias(requests, seconds),
        failed=_by_alias({k: v for k, v in requests.items() if k[1] == FAILED}, seconds),
    )


def _increase(old: Mapping[Any, float], new: Mapping[Any, float]) -> dict[Any, float]:
    return {key: value - old.get(key, 0.0) if value >= old.get(key, 0.0) else value
            for key, value in new.items()}  # fmt: skip


def _by_alias(counts: Mapping[tuple[str, str], float], seconds: float) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (alias, _), count in counts.items():
        out[alias] += count / seconds
    return dict(out)


async def collect(
    control_url: str,
    control_headers: Mapping[str, str],
    service_headers: Mapping[str, str],
    *,
    known: StackState | None = None,
    clock: Callable[[], float],
) -> Snapshot:
    """Ask the supervisor for its services (or keep `known` when it does not answer),
    then ask each service, all at once; `clock` stamps the snapshot."""
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(PROBE_TIMEOUT)) as client:
        stack, supervisor_error = await _status(client, control_url, control_headers)
        stack = stack or known
        targets = stack.services.items() if stack else []
        found = await asyncio.gather(*(
            _probe(client, _base(s.health_url), service_headers, metrics=s.model is None)
            for _, s in targets
        ))  # fmt: skip
    probes = {name: probe for (name, _), probe in zip(targets, found, strict=True)}
    return snapshot(stack, probes, clock(), supervisor_error)


async def _status(
    client: httpx.AsyncClient, url: str, headers: Mapping[str, str]
) -> tuple[StackState | None, str | None]:
    import httpx

    try:
        response = await client.get(f"{url.rstrip('/')}/status", headers=dict(headers))
        response.raise_for_status()
        return StackState.model_validate_json(response.content), None
    except (httpx.HTTPError, ValidationError) as exc:
        return None, _why(exc)


async def _probe(
    client: httpx.AsyncClient, base: str, headers: Mapping[str, str], *, metrics: bool
) -> Probe:
    import httpx

    async def get(path: str) -> httpx.Response:
        return await client.get(f"{base}{path}", headers=dict(headers))

    calls = [get("/health"), get("/metrics")] if metrics else [get("/health")]
    health, *rest = await asyncio.gather(*calls, return_exceptions=True)
    if isinstance(health, BaseException):
        return Probe(error=_why(health))
    try:
        body = health.json()
    except ValueError:
        body = {}
    text = ""
    if rest and isinstance(rest[0], httpx.Response) and rest[0].status_code == 200:
        text = rest[0].text
    return Probe(health.status_code, body if isinstance(body, dict) else {}, text)


def _base(health_url: str) -> str:
    parts = urlsplit(health_url)
    return f"{parts.scheme}://{parts.netloc}"


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _names(stack: StackState | None, probes: Mapping[str, Probe]) -> list[str]:
    return list(dict.fromkeys([*(stack.services if stack else ()), *probes]))


def _service(name: str, stack: StackState | None, probe: Probe) -> ServiceView:
    known = stack.services.get(name) if stack else None
    healthy = probe.status == 200
    if probe.error is not None:
        why = probe.error
    elif not healthy:
        failing = [f"{check}: {info.get('detail', 'failing')}"
                   for check, info in probe.health.get("checks", {}).items()
                   if isinstance(info, dict) and not info.get("ok", True)]  # fmt: skip
        why = "; ".join(failing) or f"/health answered {probe.status}"
    else:
        why = ""
    return ServiceView(
        name=name,
        state=known.state if known else None,
        restarts=known.restarts if known else 0,
        answered=probe.error is None,
        status=probe.status,
        healthy=healthy,
        problem=why,
    )


def _samples(text: str) -> Samples:
    """Every sample of a `/metrics` text by its sample name (`..._total`, `..._bucket`)."""
    found: Samples = defaultdict(list)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[sample.name].append((sample.labels, sample.value))
    except ValueError:  # not Prometheus text: a service that is not the suite's
        return {}
    return found


def _sum(samples: Samples, name: str, *by: str) -> dict[Any, float]:
    """The samples of `name` summed by the labels `by` (a tuple key for several)."""
    out: dict[Any, float] = defaultdict(float)
    for labels, value in samples.get(name, ()):
        key = tuple(labels.get(label, "") for label in by)
        out[key if len(by) > 1 else key[0]] += value
    return dict(out)


def _histograms(samples: Samples, name: str, by: str) -> dict[str, Histogram]:
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in samples.get(f"{name}_bucket", ()):
        buckets[labels.get(by, "")][float(labels["le"])] += value
    totals = _sum(samples, f"{name}_sum", by)
    counts = _sum(samples, f"{name}_count", by)
    return {key: Histogram(tuple(sorted(b.items())), totals.get(key, 0.0), counts.get(key, 0.0))
            for key, b in buckets.items()}  # fmt: skip


def _details(health: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    found = health.get(key)
    if not isinstance(found, dict):
        return {}
    return {name: info for name, info in found.items() if isinstance(info, dict)}


def outcomes(requests: Iterable[tuple[str, str]]) -> list[str]:
    """The request outcomes seen, `ok` first."""
    seen = {outcome for _, outcome in requests}
    return sorted(seen, key=lambda o: (o != "ok", o))
