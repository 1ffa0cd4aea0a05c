"""Circuit breaker transitions, with a clock the test moves."""

from __future__ import annotations

import pytest

from localsuite.core.breaker import BreakerState, CircuitBreaker

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    threshold: int = 3, cooldown: float = 5.0
) -> tuple[CircuitBreaker, FakeClock, list[BreakerState]]:
    clock, seen = FakeClock(), []
    breaker = CircuitBreaker(threshold, cooldown, clock=clock, on_change=seen.append)
    return breaker, clock, seen


def trip(breaker: CircuitBreaker) -> None:
    """Open it the way traffic does: as many failures in a row as it allows."""
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()


@pytest.mark.parametrize(
    ("events", "state"),
    [
        ([], CLOSED),
        (["fail", "fail"], CLOSED),
        (["fail", "fail", "fail"], OPEN),
        (["fail", "fail", "ok", "fail", "fail"], CLOSED),  # success resets the count
        (["trip"], OPEN),
        (["trip", "probe"], OPEN),  # a probe before the cooldown changes nothing
        (["trip", "wait", "probe"], HALF),
        (["trip", "wait", "probe", "ok"], CLOSED),
        (["trip", "wait", "probe", "fail"], OPEN),  # one failed trial re-opens
        (["trip", "wait", "probe", "fail", "probe"], OPEN),  # and restarts the cooldown
        (["trip", "back"], HALF),  # a backend seen back from down needs no cooldown
        (["trip", "back", "fail"], OPEN),  # but its trial still decides
        (["back"], CLOSED),  # nothing to let back
    ],
)
def test_transitions(events: list[str], state: BreakerState) -> None:
    breaker, clock, _ = make()
    for event in events:
        if event == "fail":
            breaker.record_failure()
        elif event == "ok":
            breaker.record_success()
        elif event == "trip":
            trip(breaker)
        elif event == "wait":
            clock.now += 5.0
        elif event == "probe":
            breaker.probe_succeeded()
        elif event == "back":
            breaker.probe_succeeded(came_back=True)
    assert breaker.state is state


def test_open_refuses_and_half_open_admits_one_trial_at_a_time() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    assert not breaker.allow_request() and not breaker.would_allow()
    clock.now += 5
    breaker.probe_succeeded()
    assert breaker.would_allow()
    assert breaker.allow_request()  # claims the trial
    assert not breaker.would_allow() and not breaker.allow_request()
    breaker.release()  # the trial ended without a verdict
    assert breaker.allow_request()


def test_listener_hears_each_transition_once() -> None:
    breaker, clock, seen = make(threshold=1)
    breaker.record_failure()
    breaker.record_failure()  # already open: no second event
    clock.now += 5
    breaker.probe_succeeded()
    breaker.record_success()
    assert seen == [OPEN, HALF, CLOSED]


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0)
