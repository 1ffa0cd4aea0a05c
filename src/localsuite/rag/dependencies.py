"""The rag service's dependencies (Qdrant, the embedding service, the gateway): who is up,
and how a call to one of them is retried.

A `Dependency` is probed in the background: every `interval` seconds while it is up,
every `interval / 4` while it is down, so that a dependency that comes back is seen
within a fraction of a second. The prober is the only writer of its state; traffic that
fails only nudges it to probe at once. Index jobs wait on `wait_up()` during an outage
and resume as soon as the probe passes.

`guarded()` runs one call under the retry policy (exponential backoff with jitter,
bounded by the request's deadline), retrying only what can pass: no answer, a timeout,
429 or 5xx, Qdrant unavailable. When the tries or the deadline run out, the caller gets
503 + Retry-After naming the dependency; a refusal (4xx) comes back as it is.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from localsuite.core.errors import (
    InvalidRequest,
    LocalSuiteError,
    NotFound,
    ServiceUnavailable,
)
from localsuite.core.failures import dependency_error
from localsuite.core.health import Check
from localsuite.core.http import ErrorAnswer, NoAnswer
from localsuite.core.probe import Prober
from localsuite.core.retry import RetryPolicy
from localsuite.core.timeouts import Deadline
from localsuite.rag.store import CollectionMissing, StoreRejected, StoreUnavailable

log = logging.getLogger("localsuite.rag")

T = TypeVar("T")
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later can succeed."""
    if isinstance(exc, NoAnswer | StoreUnavailable):
        return True
    return isinstance(exc, ErrorAnswer) and exc.status in TRANSIENT_STATUSES


class State(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Dependency:
    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[str | None]],
        interval: float,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.name = name
        self._probe = probe
        self.interval = interval
        self._on_change = on_change
        self.state = State.UNKNOWN
        self.detail: str | None = None
        self.latency_ms: float | None = None
        self.since = time.time()
        self._changed = asyncio.Condition()
        self.prober = Prober(name, self.probe, self.next_probe_in)  # core's one loop

    @property
    def up(self) -> bool:
        return self.state is State.UP

    async def probe(self) -> State:
        started = time.perf_counter()
        try:
            detail = await self._probe()
        except Exception as exc:  # a failing probe is data: the dependency is down
            await self._set(State.DOWN, f"{type(exc).__name__}: {exc}".rstrip(": "))
        else:
            self.latency_ms = (time.perf_counter() - started) * 1000
            await self._set(State.UP, detail)
        return self.state

    async def _set(self, state: State, detail: str | None) -> None:
        self.detail = detail
        if state is self.state:
            return
        log.log(
            logging.WARNING if state is State.DOWN else logging.INFO,
            "dependency %s: %s -> %s%s", self.name, self.state.value, state.value,
            f" ({detail})" if detail else "",
        )  # fmt: skip
        self.state = state
        self.since = time.time()
        if self._on_change is not None:
            self._on_change(self.name, state is State.UP)
        async with self._changed:
            self._changed.notify_all()

    def nudge(self) -> None:
        """Traffic saw a failure: probe now rather than at the next tick."""
        self.prober.nudge()

    def next_probe_in(self) -> float:
        return self.interval if self.up else max(0.05, self.interval / 4)

    async def run(self) -> None:
        await self.prober.run()

    async def wait_up(self) -> None:
        """Return once the dependency is up (at once if it is)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.up)

    def check(self) -> Check:
        detail = self.detail if self.detail else None
        if self.state is State.UNKNOWN:
            detail = "not probed yet"
        return Check(
            self.name,
            self.up,
            self.latency_ms if self.up else None,
            detail,
            extra={"state": self.state.value, "since": round(self.since, 3)},
        )


class Guard:
    """Runs calls to the dependencies under one retry policy."""

    def __init__(
        self,
        dependencies: dict[str, Dependency],
        policy: RetryPolicy,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.dependencies = dependencies
        self.policy = policy
        self._on_retry = on_retry

    def retry_after(self, name: str) -> float:
        return max(1.0, self.dependencies[name].next_probe_in())

    async def call(self, name: str, fn: Callable[[], Awaitable[T]], deadline: Deadline) -> T:
        dependency = self.dependencies[name]

        def on_retry(exc: BaseException, wait: float) -> None:
            dependency.nudge()
            if self._on_retry is not None:
                self._on_retry(name)
            log.info("%s: %s; retrying in %.2fs", name, exc, wait)

        try:
            return await self.policy.call(
                fn, retry_on=is_transient, deadline=deadline, on_retry=on_retry
            )
        except LocalSuiteError:
            raise
        except Exception as exc:
            raise self.translate(name, exc) from exc

    def translate(self, name: str, exc: BaseException) -> LocalSuiteError:
        """A dependency's failure, as the error this service answers with."""
        if is_transient(exc):
            self.dependencies[name].nudge()
            return ServiceUnavailable(
                f"{name} is unavailable ({exc}); retry shortly",
                retry_after=self.retry_after(name),
                code=f"{name.replace('-', '_')}_unavailable",
            )
        if isinstance(exc, CollectionMissing):
            return NotFound(str(exc), code="collection_not_found")
        if isinstance(exc, StoreRejected):
            return InvalidRequest(str(exc), code="qdrant_rejected")
        return dependency_error(name, exc, retry_after=self.retry_after(name))  # core's table
