"""Failover: which backend gets each attempt, and what an attempt's outcome means.

For one request, `Router.plan()` lists the candidates: the alias's deployments in order,
then those of its `fallbacks` aliases (each backend once). An attempt ends in one of:

    success         2xx with a body that parses           → answer the client
    no answer       connect error, reset, timeout         → next backend (never the same one)
    transient       408, 429, 500, 502, 503, 504          → the same backend once more after a
                                                            short backoff or its Retry-After,
                                                            if that fits the deadline; else next
    context length  400 saying the prompt is too long     → next backend (or the
                                                            `context_window_fallbacks` aliases)
    client error    any other 4xx                         → straight back, upstream's reason
    garbage         2xx that is not JSON                   → next backend; 502 if all do it

Backends that are down or whose breaker is open are skipped without a wait. One deadline
(`LLM_REQUEST_TIMEOUT`, or the routing file's `timeout`) covers every attempt and backoff.
When nothing is left: 504 if the deadline passed, 429 if every backend said so, else 503
with `Retry-After`, naming each backend and why it could not answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import orjson

from localsuite.core.errors import (
    DeadlineExceeded,
    InvalidRequest,
    LocalSuiteError,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from localsuite.core.http import AnswerTimeout, ErrorAnswer, NoAnswer, parse_retry_after
from localsuite.core.metrics import GatewayMetrics
from localsuite.core.retry import RetryPolicy
from localsuite.core.timeouts import Deadline, Timeouts
from localsuite.gateway.config import Deployment, RoutingConfig
from localsuite.gateway.upstream import Upstream

log = logging.getLogger("localsuite.gateway")

_CONTEXT_LENGTH = re.compile(
    r"context.{0,20}(length|size|window)|exceed_context_size|context_length_exceeded"
    r"|maximum context|too many tokens|prompt is too long|n_ctx",
    re.IGNORECASE,
)


def is_context_length_error(status: int, body: bytes) -> bool:
    return (
        status == 400 and _CONTEXT_LENGTH.search(body[:2000].decode("utf-8", "replace")) is not None
    )


def classify_status(status: int, body: bytes, retry_on: frozenset[int]) -> str:
    """What an upstream's error status means: 'context', 'transient' or 'client'."""
    if is_context_length_error(status, body):
        return "context"
    if status in retry_on:
        return "transient"
    return "client"


class GarbageAnswer(Exception):
    """A 2xx whose body is not what the protocol promises."""


@dataclass(slots=True)
class Attempts:
    """What happened to one request so far: for errors, headers and metrics."""

    alias: str
    deadline: Deadline
    count: int = 0
    failures: list[str] = field(default_factory=list)
    rate_limited: list[float | None] = field(default_factory=list)
    context_error: ErrorAnswer | None = None
    garbage: bool = False
    tried: set[str] = field(default_factory=set)

    def note(self, backend: str, reason: str) -> None:
        self.failures.append(f"{backend}: {reason}")


class Router:
    def __init__(
        self,
        config: RoutingConfig,
        upstreams: dict[str, Upstream],
        session: aiohttp.ClientSession,
        timeouts: Timeouts,
        metrics: GatewayMetrics,
        backoff: RetryPolicy,
    ) -> None:
        self.config = config
        self.upstreams = upstreams
        self.session = session
        self.timeouts = timeouts
        self.metrics = metrics
        self.backoff = backoff

    def new_deadline(self) -> Deadline:
        return Deadline(self.config.policy.timeout or self.timeouts.total)

    def plan(self, alias: str) -> list[Deployment]:
        """The alias's deployments in order, then its fallback aliases', each backend once."""
        return self._deployments((alias, *self.config.policy.fallbacks.get(alias, ())))

    def _deployments(self, aliases: tuple[str, ...]) -> list[Deployment]:
        seen: set[str] = set()
        plan: list[Deployment] = []
        for name in aliases:
            for deployment in self.config.routes.get(name, ()):
                if deployment.backend not in seen:
                    seen.add(deployment.backend)
                    plan.append(deployment)
        return plan

    def candidates(self, state: Attempts) -> Iterator[Deployment]:
        """Deployments to try, in order, skipping the ones that cannot take a request.

        After a context-length error the alias's `context_window_fallbacks` come next."""
        pending = deque(self.plan(state.alias))
        context_switched = False
        while pending and not state.deadline.expired:
            if state.context_error is not None and not context_switched:
                context_switched = True
                context = self.config.policy.context_window_fallbacks.get(state.alias, ())
                pending.extendleft(reversed(self._deployments(context)))
            deployment = pending.popleft()
            if deployment.backend in state.tried:
                continue
            upstream = self.upstreams[deployment.backend]
            if not upstream.routable or not upstream.breaker.allow_request():
                state.note(upstream.name, upstream.why_not_routable())
                continue
            state.tried.add(upstream.name)
            yield deployment

    def payload(self, body: dict[str, object], deployment: Deployment) -> bytes:
        if deployment.model is None:
            return orjson.dumps(body)
        return orjson.dumps({**body, "model": deployment.model})

    def first_byte_budget(self, deployment: Deployment, deadline: Deadline, stream: bool) -> float:
        """Streams: the first-byte timeout. Plain answers arrive whole, after the whole
        generation: they are bounded by the deadline and by the prober (a hung backend
        is marked down and its waiting attempts woken), not by a first-byte timeout."""
        limit = deadline.remaining()
        if deployment.timeout is not None:
            limit = min(limit, deployment.timeout)
        if stream:
            limit = min(limit, deployment.stream_timeout or self.timeouts.first_byte)
        return limit

    async def wait_before_retry(
        self, state: Attempts, retry_number: int, retry_after: float | None
    ) -> bool:
        """Sleep before retrying the same backend; False if the wait does not fit."""
        wait = retry_after if retry_after is not None else self.backoff.delay(retry_number)
        if not state.deadline.fits(wait + 0.05):
            return False
        await asyncio.sleep(wait)
        return True

    def classify_error_answer(
        self, upstream: Upstream, answer: ErrorAnswer, state: Attempts
    ) -> str:
        """'transient', 'context' or 'client' for an upstream's error status."""
        verdict = classify_status(answer.status, answer.body, self.config.policy.retry_on_status)
        if verdict == "context":
            state.context_error = answer
            upstream.breaker.record_success()  # it answered sanely
            self.metrics.attempts.labels(upstream.name, "context_length").inc()
            state.note(upstream.name, "context too long")
            return "context"
        if verdict == "transient":
            if answer.status == 429:
                upstream.breaker.release()  # busy is not broken
                state.rate_limited.append(answer.retry_after)
            else:
                upstream.breaker.record_failure()
            self.metrics.attempts.labels(upstream.name, f"http_{answer.status}").inc()
            state.note(upstream.name, f"HTTP {answer.status}: {answer.message()}")
            return "transient"
        upstream.breaker.record_success()
        self.metrics.attempts.labels(upstream.name, "client_error").inc()
        return "client"

    def record_no_answer(self, upstream: Upstream, error: NoAnswer, state: Attempts) -> None:
        if isinstance(error, AnswerTimeout) and state.deadline.expired:
            # The request's budget ran out (a long generation): not the backend's fault.
            upstream.breaker.release()
            self.metrics.attempts.labels(upstream.name, "deadline").inc()
            state.note(upstream.name, str(error))
            return
        upstream.breaker.record_failure()
        upstream.last_error = str(error)
        upstream.nudge()
        self.metrics.attempts.labels(upstream.name, error.kind).inc()
        state.note(upstream.name, str(error))

    def exhausted(self, state: Attempts) -> LocalSuiteError:
        """The error for a request no backend could serve."""
        detail = "; ".join(state.failures) or "no backend configured"
        if state.context_error is not None and not state.rate_limited:
            return InvalidRequest(
                f"the prompt is too long for every backend of {state.alias!r}: "
                f"{state.context_error.message()}",
                code="context_length_exceeded",
            )
        if state.deadline.expired:
            return DeadlineExceeded(
                f"no backend of {state.alias!r} answered within the "
                f"{state.deadline.total:g}s deadline ({detail})"
            )
        if state.rate_limited and len(state.rate_limited) == state.count:
            waits = [w for w in state.rate_limited if w is not None]
            return RateLimited(
                f"every backend of {state.alias!r} is busy ({detail})",
                retry_after=min(waits) if waits else 1.0,
            )
        if state.garbage and state.count:
            return UpstreamError(f"backends of {state.alias!r} answered garbage ({detail})")
        return ServiceUnavailable(
            f"no backend of {state.alias!r} could answer ({detail})",
            retry_after=self.retry_after_hint(state.alias),
            code="no_backend_available",
        )

    def retry_after_hint(self, alias: str) -> float:
        """How long until a backend of the alias may be back: the probe cadence."""
        intervals = [self.upstreams[d.backend].next_probe_in() for d in self.plan(alias)]
        return max(1.0, min(intervals, default=1.0))

    @staticmethod
    def retry_after_of(response: aiohttp.ClientResponse) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"))


def upstream_client_error(answer: ErrorAnswer) -> LocalSuiteError:
    """An upstream's 4xx, for the client: its status and its own reason, in our shape."""
    error = InvalidRequest(answer.message(), code=f"upstream_{answer.status}")
    error.status = answer.status  # type: ignore[misc]  # the upstream's own status
    return error


@dataclass(frozen=True, slots=True)
class Served:
    """A plain (non-stream) answer and who gave it."""

    body: bytes
    status: int
    backend: str
    attempts: int


async def complete(router: Router, path: str, body: dict[str, object], alias: str) -> Served:
    """Forward a non-stream request through the failover policy."""
    state = Attempts(alias, router.new_deadline())
    policy = router.config.policy
    for deployment in router.candidates(state):
        upstream = router.upstreams[deployment.backend]
        payload = router.payload(body, deployment)
        retries = 0
        while not state.deadline.expired:
            state.count += 1
            budget = router.first_byte_budget(deployment, state.deadline, stream=False)
            try:
                async with upstream.post(router.session, path, payload, budget) as (response, _):
                    data = await response.read()
                    status = response.status
                    retry_after = router.retry_after_of(response)
            except NoAnswer as exc:
                router.record_no_answer(upstream, exc, state)
                break
            if status < 300:
                if _is_json_object(data):
                    upstream.breaker.record_success()
                    router.metrics.attempts.labels(upstream.name, "ok").inc()
                    return Served(data, status, upstream.name, state.count)
                upstream.breaker.record_failure()
                router.metrics.attempts.labels(upstream.name, "garbage").inc()
                state.garbage = True
                state.note(upstream.name, f"HTTP {status} with a body that is not JSON")
                break
            answer = ErrorAnswer(status, data, retry_after)
            verdict = router.classify_error_answer(upstream, answer, state)
            if verdict == "client":
                raise upstream_client_error(answer)
            if verdict == "context" or retries >= policy.num_retries:
                break
            retries += 1
            if not await router.wait_before_retry(state, retries, retry_after):
                break
            if upstream.draining:  # drained while we waited: no new attempt here
                break
        router.metrics.failovers.labels(alias, upstream.name).inc()
        log.info("%s: moving on from %s (%s)", alias, upstream.name, state.failures[-1:])
    raise router.exhausted(state)


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False
