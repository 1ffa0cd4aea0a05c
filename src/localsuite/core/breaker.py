"""Circuit breaker: keeps requests away from a backend that keeps failing.

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(cooldown elapsed and a health probe succeeds)──▶ half_open
    open ──(a probe sees the backend back after it was down)──▶ half_open   (no cooldown)
    half_open ──(trial request succeeds)──▶ closed
    half_open ──(trial request fails)──▶ open

An open breaker is let back by a probe, not by a timer alone: during an outage the
backend sees probes, never a storm of real requests. In half_open one trial request at
a time goes through. The breaker is the only writer of its state; `on_change` is how
metrics learn of transitions. The clock is injected so tests can move time.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from localsuite.core.timeouts import Clock


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


StateListener = Callable[[BreakerState], None]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown: float = 5.0,
        clock: Clock = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow_request(self) -> bool:
        """Whether a request may go to the backend now; in half_open this claims the trial."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def would_allow(self) -> bool:
        """Like `allow_request`, without claiming anything."""
        if self._state is BreakerState.CLOSED:
            return True
        return self._state is BreakerState.HALF_OPEN and not self._trial_in_flight

    def record_success(self) -> None:
        self._failures = 0
        self._trial_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_in_flight = False
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._open()

    def release(self) -> None:
        """A claimed trial ended without a verdict (the client went away)."""
        self._trial_in_flight = False

    def probe_succeeded(self, *, came_back: bool = False) -> None:
        """A health probe passed: an open breaker past its cooldown may try a request.

        `came_back`: the probes saw the backend down (refusing connections, or loading)
        and now ready, a new process. The failures that opened the breaker are explained
        by its death, so the cooldown is not waited out; the trial request still decides."""
        if self._state is not BreakerState.OPEN:
            return
        if came_back or self._clock() - self._opened_at >= self.cooldown:
            self._trial_in_flight = False
            self._set(BreakerState.HALF_OPEN)

    def _open(self) -> None:
        self._opened_at = self._clock()
        if self._state is not BreakerState.OPEN:
            self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
