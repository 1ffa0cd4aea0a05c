"""Retry policy as a value. The only module that imports the retry library (tenacity).

A `RetryPolicy` says how many tries and how long to wait between them: exponential
backoff (`ceiling`), with full jitter below the ceiling (`delay`). It gives every retry
in the suite its loop, so none computes waits by hand:

- `call(fn, retry_on=...)` awaits one coroutine function until it succeeds;
- `retrying(retry_on=...)` is the same loop for work that is more than one call
  (stamina's `retry_context`):

      async for attempt in policy.retrying(retry_on=is_transient, deadline=deadline):
          with attempt:
              await step_one()
              await step_two()

Both retry only the errors `retry_on` calls transient (a cancellation never is), stop
after `attempts` tries (`None`: until it works, for a background task nobody waits
on), and never sleep past the request's `Deadline`: when the next wait would not fit,
the last error is raised. Where the waits are not a loop (the supervisor schedules a
restart on its clock), `ceiling(n)` is the one backoff formula.

A caller may also say how to wait (`pause`: the backoff, then until a dependency is
back, say), which is how background work outlives an outage.

`set_testing(True)` turns every jittered wait to zero for tests, without monkeypatching;
`with no_backoff():` does it for a block (a fixture's life).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    AttemptManager,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from localsuite.core.timeouts import Deadline

T = TypeVar("T")

_testing = False


def set_testing(on: bool) -> None:
    """Switch backoff waits off (`True`) or back on, for every policy."""
    global _testing  # noqa: PLW0603 - a process-wide test switch, like stamina's
    _testing = on


@contextmanager
def no_backoff() -> Iterator[None]:
    """Backoff waits off inside the block, as they were after it."""
    before = _testing
    set_testing(True)
    try:
        yield
    finally:
        set_testing(before)


class Attempt:
    """One try of a `retrying()` loop: `with attempt:` records how the try ended."""

    def __init__(self, manager: AttemptManager) -> None:
        self._manager = manager

    @property
    def number(self) -> int:
        """1 for the first try."""
        return self._manager.retry_state.attempt_number

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if exc is not None and not isinstance(exc, Exception):
            return None  # a cancellation or an interrupt ends the loop, never a retry
        return self._manager.__exit__(exc_type, exc, tb)


class Attempts:
    """The tries of one `retrying()` loop; the waits between them happen in `__anext__`."""

    def __init__(self, retrying: AsyncRetrying) -> None:
        self._retrying = retrying

    def __aiter__(self) -> Attempts:
        self._retrying = self._retrying.__aiter__()
        return self

    async def __anext__(self) -> Attempt:
        return Attempt(await self._retrying.__anext__())


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

    def retrying(
        self,
        *,
        retry_on: Callable[[BaseException], bool],
        deadline: Deadline | None = None,
        on_retry: Callable[[BaseException, float], None] | None = None,
        pause: Callable[[float], Awaitable[None]] | None = None,
    ) -> Attempts:
        """The policy's loop: the tries of work that `with attempt:` wraps (see above).
        `on_retry(error, wait)` is called before each wait; `pause(wait)` replaces the
        sleep between tries (an error it raises ends the loop with that error)."""

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

        return Attempts(
            AsyncRetrying(
                sleep=pause or asyncio.sleep,
                stop=stop,
                wait=wait,
                retry=retry_if_exception(retry_on),
                before_sleep=before_sleep,
                reraise=True,
            )
        )

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        retry_on: Callable[[BaseException], bool],
        deadline: Deadline | None = None,
        on_retry: Callable[[BaseException, float], None] | None = None,
        pause: Callable[[float], Awaitable[None]] | None = None,
    ) -> T:
        """Await `fn()` until it succeeds, the error is permanent, tries or deadline run out."""
        async for attempt in self.retrying(
            retry_on=retry_on, deadline=deadline, on_retry=on_retry, pause=pause
        ):
            with attempt:
                return await fn()
        raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover
