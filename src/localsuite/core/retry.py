"""Retry policy as a value. The only module that imports the retry library (tenacity).

A `RetryPolicy` says how many tries (`attempts=None`: until it succeeds) and how long to
wait between them (exponential backoff with full jitter, capped). `call()` runs a
coroutine under it, retrying only the errors the caller's predicate calls transient, and
never sleeping past the request's `Deadline`: when the next wait would not fit, the last
error is raised. A caller may also say how to wait (`pause`: the backoff, then until a
dependency is back, say), which is how background work outlives an outage.

`set_testing(True)` turns every wait to zero for tests, without monkeypatching.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from localsuite.core.timeouts import Deadline

T = TypeVar("T")

_testing = False


def set_testing(on: bool) -> None:
    """Switch backoff waits off (`True`) or back on, for every policy."""
    global _testing  # noqa: PLW0603 - a process-wide test switch, like stamina's
    _testing = on


def is_testing() -> bool:
    return _testing


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int | None = 3  # None: until it succeeds (or the deadline passes)
    wait_min: float = 2.0
    wait_max: float = 10.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")
        if self.wait_min < 0 or self.wait_max < self.wait_min:
            raise ValueError("need 0 <= wait_min <= wait_max")

    @classmethod
    def from_retries(cls, retries: int, wait_min: float, wait_max: float) -> RetryPolicy:
        """From the spec's knobs, where `retries` counts tries after the first."""
        return cls(attempts=retries + 1, wait_min=wait_min, wait_max=max(wait_min, wait_max))

    def ceiling(self, retry_number: int) -> float:
        """The largest wait before retry number `retry_number` (1 = the first retry)."""
        return min(self.wait_max, self.wait_min * self.multiplier ** max(0, retry_number - 1))

    def delay(self, retry_number: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before retry `retry_number`: jittered between `wait_min` and the ceiling."""
        if _testing:
            return 0.0
        ceiling = self.ceiling(retry_number)
        return self.wait_min + (ceiling - self.wait_min) * rand()

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        retry_on: Callable[[BaseException], bool],
        deadline: Deadline | None = None,
        on_retry: Callable[[BaseException, float], None] | None = None,
        pause: Callable[[float], Awaitable[None]] | None = None,
    ) -> T:
        """Await `fn()` until it succeeds, the error is permanent, tries or deadline run out.

        `on_retry(error, wait)` is told of each retry; `pause(wait)` replaces the sleep
        between tries (an error it raises ends the loop with that error)."""

        def wait(state: RetryCallState) -> float:
            return self.delay(state.attempt_number)

        def stop(state: RetryCallState) -> bool:
            if self.attempts is not None and stop_after_attempt(self.attempts)(state):
                return True
            return deadline is not None and not deadline.fits(state.upcoming_sleep)

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                error = state.outcome.exception()
                if error is not None:
                    on_retry(error, state.upcoming_sleep)

        retrying = AsyncRetrying(
            sleep=pause or asyncio.sleep,
            stop=stop,
            wait=wait,
            retry=retry_if_exception(retry_on),
            before_sleep=before_sleep,
            reraise=True,
        )

        async def attempt() -> T:
            # tenacity calls a plain function without awaiting its result, and a lambda
            # returning a coroutine is a plain function: await it here, for every caller.
            return await fn()

        return await retrying(attempt)
