"""The attempt engine: one loop for every request, plain or streamed, of every protocol.

    async with aclosing(engine.attempts(exchange)) as attempts:
        async for attempt in attempts:
            ... send it, read the answer ...
            attempt.record(Outcome.OK)          # or what went wrong
            return ...

For one request (`Exchange`) the engine walks the plan: the alias's priority groups, then
its `fallbacks` aliases' groups (after a context-length error, the alias's
`context_window_fallbacks` come first). In a group it asks admission
(`gateway.admission`) for a deployment with a free slot (balanced, with affinity; the
request waits in the alias's queue while every one is busy); a group with no usable
deployment left is passed. Each attempt records its outcome once (`gateway.outcomes`),
to the deployment's breaker, the server's probe, the metrics and the request's notes;
the engine then decides: done, the same deployment once more (a retryable status, after
a short backoff or its `Retry-After`, if that fits the deadline and the deployment still
takes requests), or the next deployment. One deployment is never tried twice in a
request, but another model on a server already tried is a fresh candidate; a server that
refused the connection is skipped for the rest of the request.

One deadline (`LLM_REQUEST_TIMEOUT`, or the routing file's `timeout`) covers every
attempt, backoff and queue wait. When nothing is left, `exhausted()` says why: 504 if the
deadline passed, 429 if every deployment said so, 400 if the prompt is too long for all,
502 if they answered garbage, else 503 with `Retry-After`, naming each deployment and why
it could not answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localsuite.core.errors import (
    DeadlineExceeded,
    InvalidRequest,
    LocalSuiteError,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from localsuite.core.http import ErrorAnswer
from localsuite.core.metrics import GatewayMetrics
from localsuite.core.retry import RetryPolicy
from localsuite.core.timeouts import Deadline
from localsuite.core.tracing import NULL_SPAN, Span
from localsuite.gateway.deployments import Deployment
from localsuite.gateway.outcomes import Outcome
from localsuite.gateway.protocols import Protocol

if TYPE_CHECKING:
    from localsuite.gateway.admission import Admission, Group
    from localsuite.gateway.routing import Table

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


def classify_status(status: int, body: bytes, retry_on: frozenset[int]) -> Outcome:
    """What an upstream's error status means for the attempt."""
    if is_context_length_error(status, body):
        return Outcome.CONTEXT_LENGTH
    if status in retry_on:
        return Outcome.RATE_LIMITED if status == 429 else Outcome.HTTP_ERROR
    return Outcome.CLIENT_ERROR


@dataclass(slots=True)
class Exchange:
    """One client request, across all its attempts."""

    alias: str
    protocol: Protocol
    body: dict[str, Any]
    deadline: Deadline
    request_id: str
    affinity: str | None = None
    priority: int = 0  # 0 interactive, 1 batch: the order in a queue
    pinned: Deployment | None = None  # state lives there (`previous_response_id`)
    forward: dict[str, str] = field(default_factory=dict)  # client headers the backend gets
    span: Span = NULL_SPAN  # the request's trace span; each attempt is a child
    count: int = 0
    notes: list[str] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)  # servers that refused to connect
    outcomes: list[Outcome] = field(default_factory=list)
    rate_limited: list[float | None] = field(default_factory=list)
    context_error: ErrorAnswer | None = None
    garbage: bool = False
    served_by: Deployment | None = None

    def note(self, deployment: str, reason: str) -> None:
        entry = f"{deployment}: {reason}"
        if entry not in self.notes:
            self.notes.append(entry)

    def learn(
        self,
        outcome: Outcome,
        deployment: Deployment,
        detail: str,
        retry_after: float | None,
        answer: ErrorAnswer | None,
    ) -> None:
        """What an attempt's outcome tells the rest of this request."""
        self.outcomes.append(outcome)
        if outcome is Outcome.OK:
            self.served_by = deployment
        elif outcome is Outcome.UNREACHABLE:
            self.unreachable.add(deployment.server.name)
        elif outcome is Outcome.RATE_LIMITED:
            self.rate_limited.append(retry_after)
        elif outcome is Outcome.CONTEXT_LENGTH:
            self.context_error = answer
        elif outcome in (Outcome.GARBAGE, Outcome.STREAM_ERROR):
            self.garbage = True
        if detail and outcome not in (Outcome.OK, Outcome.CANCELLED):
            self.note(deployment.id, detail)


class Attempt:
    """One try of one deployment; `record()` is how its outcome reaches everyone."""

    __slots__ = ("continuing", "deployment", "engine", "exchange", "outcome", "retry",
                 "retry_after", "span")  # fmt: skip

    def __init__(self, engine: Engine, exchange: Exchange, deployment: Deployment, retry: int):
        self.engine = engine
        self.exchange = exchange
        self.deployment = deployment
        self.retry = retry
        self.continuing = False
        self.outcome: Outcome | None = None
        self.retry_after: float | None = None
        self.span = exchange.span
        if self.span.recording:
            self.span = self.span.child("gateway.attempt", {
                "localsuite.deployment": deployment.id, "localsuite.server": deployment.server.name,
                "localsuite.attempt": exchange.count, "localsuite.retry": retry,
            })  # fmt: skip

    @property
    def number(self) -> int:
        return self.exchange.count

    def record(
        self,
        outcome: Outcome,
        detail: str = "",
        *,
        retry_after: float | None = None,
        answer: ErrorAnswer | None = None,
    ) -> None:
        if self.outcome is not None:
            return  # recorded once; a later word (a cancel after success) changes nothing
        self.outcome = outcome
        self.retry_after = retry_after
        deployment, exchange = self.deployment, self.exchange
        deployment.judge(outcome, detail)
        exchange.learn(outcome, deployment, detail, retry_after, answer)
        if outcome is Outcome.OK:
            self.engine.admission.balancer.served(exchange.affinity, deployment)
        self.engine.metrics.attempt(deployment.id, outcome.value)
        if outcome.deployment_failure or outcome is Outcome.UNREACHABLE:
            log.info("[%s] %s: attempt %d on %s: %s (%s)", exchange.request_id, exchange.alias,
                     exchange.count, deployment.id, outcome.value, detail)  # fmt: skip
        if self.span.recording:
            self._end_span(outcome, detail)

    def _end_span(self, outcome: Outcome, detail: str) -> None:
        if self.continuing:
            self.span.set("localsuite.continuation", True)
        failed = not outcome.answered and outcome is not Outcome.CANCELLED
        self.span.end(outcome.value, error=(detail or outcome.value) if failed else None)


class Engine:
    def __init__(
        self,
        table: Table,
        admission: Admission,
        metrics: GatewayMetrics,
        backoff: RetryPolicy,
        default_timeout: float,
    ) -> None:
        self.table = table
        self.admission = admission
        self.metrics = metrics
        self.backoff = backoff
        self.default_timeout = default_timeout

    def new_deadline(self) -> Deadline:
        return Deadline(self.table.config.policy.timeout or self.default_timeout)

    # --- the plan --------------------------------------------------------------------
    def _plan(self, exchange: Exchange) -> Iterator[Group]:
        if exchange.pinned is not None:
            yield self.table.single(exchange.pinned)
            return
        policy = self.table.config.policy
        alias = exchange.alias
        pending = deque(self.table.groups_of((alias, *policy.fallbacks.get(alias, ()))))
        switched = False
        while pending:
            if exchange.context_error is not None and not switched:
                switched = True
                context = policy.context_window_fallbacks.get(alias, ())
                pending.extendleft(reversed(self.table.groups_of(context)))
            yield pending.popleft()

    # --- the loop --------------------------------------------------------------------
    async def attempts(self, exchange: Exchange) -> AsyncGenerator[Attempt, None]:
        policy = self.table.config.policy
        for group in self._plan(exchange):
            while not exchange.deadline.expired:
                deployment = await self.admission.acquire(exchange, group)
                if deployment is None:
                    break
                retry = 0
                while True:
                    exchange.count += 1
                    attempt = Attempt(self, exchange, deployment, retry)
                    try:
                        yield attempt
                    finally:
                        if attempt.outcome is None:
                            attempt.record(Outcome.CANCELLED)
                        deployment.release()
                    assert attempt.outcome is not None
                    if attempt.outcome.final:
                        return
                    if not await self._again(attempt, policy.num_retries):
                        break
                    retry += 1
                exchange.tried.add(deployment.id)
                self.metrics.failover(exchange.alias, deployment.id)

    async def _again(self, attempt: Attempt, num_retries: int) -> bool:
        """Wait and take the same deployment's slot again, if its outcome is worth it."""
        assert attempt.outcome is not None
        if not attempt.outcome.retryable or attempt.retry >= num_retries:
            return False
        given = attempt.retry_after
        wait = given if given is not None else self.backoff.delay(attempt.retry + 1)
        deadline = attempt.exchange.deadline
        if not deadline.fits(wait + 0.05):
            return False
        await asyncio.sleep(wait)
        deployment = attempt.deployment
        # drained, broken or full while we waited: move on rather than wait again
        return deployment.usable and deployment.has_capacity and deployment.claim()

    # --- when nothing is left --------------------------------------------------------
    def exhausted(self, exchange: Exchange) -> LocalSuiteError:
        """The error for a request no deployment could serve."""
        alias = exchange.alias
        detail = "; ".join(exchange.notes) or "no deployment configured"
        if exchange.pinned is not None:
            return ServiceUnavailable(
                f"the state this request refers to lives on {exchange.pinned.id}, which cannot "
                f"answer now ({detail}); no other deployment has it",
                retry_after=self.retry_after_hint(exchange),
                code="state_unavailable",
            )
        tried = set(exchange.outcomes) - {Outcome.CANCELLED}
        if exchange.context_error is not None and tried == {Outcome.CONTEXT_LENGTH}:
            return InvalidRequest(
                f"the prompt is too long for every deployment of {alias!r}: "
                f"{exchange.context_error.message()}",
                code="context_length_exceeded",
            )
        if exchange.deadline.expired:
            return DeadlineExceeded(
                f"no deployment of {alias!r} answered within the "
                f"{exchange.deadline.total:g}s deadline ({detail})"
            )
        if exchange.rate_limited and tried == {Outcome.RATE_LIMITED}:
            waits = [w for w in exchange.rate_limited if w is not None]
            return RateLimited(
                f"every deployment of {alias!r} is busy ({detail})",
                retry_after=min(waits) if waits else 1.0,
            )
        if exchange.garbage and exchange.count:
            return UpstreamError(f"deployments of {alias!r} answered garbage ({detail})")
        return ServiceUnavailable(
            f"no deployment of {alias!r} could answer ({detail})",
            retry_after=self.retry_after_hint(exchange),
            code="no_backend_available",
        )

    def retry_after_hint(self, exchange: Exchange) -> float:
        """How long until a deployment of the alias may be back: the probe cadence."""
        servers = {d.server for g in self._plan_all(exchange) for d in g.deployments}
        return max(1.0, min((s.next_probe_in() for s in servers), default=1.0))

    def _plan_all(self, exchange: Exchange) -> list[Group]:
        if exchange.pinned is not None:
            return [self.table.single(exchange.pinned)]
        return self.table.groups_of((exchange.alias,))


def unknown_state(name: str, value: str) -> NotFound:
    return NotFound(
        f"{name} {value!r} was not served by this gateway (or is older than what it "
        "remembers): it cannot tell which backend holds it",
        code="state_not_found",
        param=name,
    )
