"""Retry policy values, backoff bounds, and deadline arithmetic."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from localsuite.core.retry import RetryPolicy, no_backoff
from localsuite.core.timeouts import Deadline, Timeouts


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def no_waits() -> Iterator[None]:
    with no_backoff():
        yield


@pytest.mark.parametrize(("retry", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)])
def test_backoff_ceiling_grows_and_caps(retry: int, ceiling: float) -> None:
    policy = RetryPolicy.from_retries(3, wait_min=2, wait_max=10)
    assert policy.attempts == 4
    assert policy.ceiling(retry) == ceiling
    assert policy.delay(retry, rand=lambda: 0.0) == 2.0
    assert policy.delay(retry, rand=lambda: 1.0) == ceiling


def test_testing_switch_turns_waits_off(no_waits: None) -> None:
    assert RetryPolicy(wait_min=5, wait_max=50).delay(3) == 0.0


def test_the_switch_is_back_as_it_was_after_the_block() -> None:
    with no_backoff():
        assert RetryPolicy(wait_min=5, wait_max=50).delay(3) == 0.0
    assert RetryPolicy(wait_min=5, wait_max=50).delay(3) >= 5


@pytest.mark.parametrize(
    ("kw"), [{"attempts": 0}, {"wait_min": -1}, {"wait_min": 5, "wait_max": 1}]
)
def test_invalid_policies_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kw)  # type: ignore[arg-type]


class Transient(Exception): ...


class Permanent(Exception): ...


async def test_call_retries_only_transient_errors(no_waits: None) -> None:
    calls: list[int] = []
    retried: list[str] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Transient
        return "ok"

    policy = RetryPolicy(attempts=3, wait_min=0, wait_max=0)
    result = await policy.call(
        flaky,
        retry_on=lambda e: isinstance(e, Transient),
        on_retry=lambda e, _: retried.append(type(e).__name__),
    )
    assert result == "ok" and len(calls) == 3 and retried == ["Transient", "Transient"]

    async def broken() -> str:
        calls.append(1)
        raise Permanent

    calls.clear()
    with pytest.raises(Permanent):
        await policy.call(broken, retry_on=lambda e: isinstance(e, Transient))
    assert len(calls) == 1


async def test_call_gives_up_after_its_attempts(no_waits: None) -> None:
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise Transient

    with pytest.raises(Transient):
        await RetryPolicy(attempts=3, wait_min=0, wait_max=0).call(down, retry_on=lambda e: True)
    assert len(calls) == 3


async def test_call_never_sleeps_past_the_deadline() -> None:
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise Transient

    policy = RetryPolicy(attempts=5, wait_min=30, wait_max=60)
    with pytest.raises(Transient):
        await policy.call(down, retry_on=lambda e: True, deadline=Deadline(1.0))
    assert len(calls) == 1  # the first wait (>= 30 s) does not fit a 1 s deadline


async def test_without_a_limit_it_tries_until_success_and_waits_as_told() -> None:
    policy = RetryPolicy(attempts=None, wait_min=0.5, wait_max=0.5)
    pauses: list[float] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 12:  # far more than the default's 3 tries
            raise ConnectionError("down")
        return "up"

    async def pause(wait: float) -> None:  # e.g. back off, then wait for the dependency
        pauses.append(wait)

    result = await policy.call(flaky, retry_on=lambda e: True, pause=pause)
    assert (result, calls) == ("up", 12) and pauses == [0.5] * 11

    async def down() -> str:
        raise ConnectionError("down")

    async def cancelled(_: float) -> None:
        raise LookupError("the job was cancelled meanwhile")

    with pytest.raises(LookupError):  # an error of the pause ends the loop
        await RetryPolicy(attempts=None).call(down, retry_on=lambda e: True, pause=cancelled)


def test_deadline_arithmetic() -> None:
    clock = Clock()
    deadline = Deadline(10.0, clock=clock)
    assert deadline.remaining() == 10.0 and deadline.budget(3.0) == 3.0
    clock.now = 8.0
    assert deadline.budget(3.0) == 2.0
    assert deadline.fits(1.5) and not deadline.fits(2.0)
    clock.now = 12.0
    assert deadline.remaining() == 0.0 and deadline.expired


def test_timeouts_are_one_validated_value() -> None:
    timeouts = Timeouts(connect=1, first_byte=2, idle=3, total=4)
    assert timeouts == Timeouts(1, 2, 3, 4)
    with pytest.raises(AttributeError):
        timeouts.idle = 9  # type: ignore[misc]  # frozen: one value, passed down as it is
    with pytest.raises(ValueError, match="first_byte"):
        Timeouts(connect=1, first_byte=0, idle=1, total=1)


async def test_the_loop_retries_work_of_several_steps(no_waits: None) -> None:
    steps: list[str] = []
    numbers: list[int] = []
    policy = RetryPolicy(attempts=3, wait_min=0, wait_max=0)
    async for attempt in policy.retrying(retry_on=lambda e: isinstance(e, Transient)):
        with attempt:
            numbers.append(attempt.number)
            steps.append("one")
            if len(steps) < 3:
                raise Transient
            steps.append("two")
    assert numbers == [1, 2, 3] and steps == ["one", "one", "one", "two"]


async def test_the_loop_without_a_limit_goes_on_until_it_works(no_waits: None) -> None:
    tries: list[int] = []
    async for attempt in RetryPolicy(attempts=None).retrying(retry_on=lambda e: True):
        with attempt:
            tries.append(attempt.number)
            if len(tries) < 12:
                raise Transient
    assert tries == list(range(1, 13))


async def test_a_cancellation_is_never_retried(no_waits: None) -> None:
    tries: list[int] = []
    with pytest.raises(asyncio.CancelledError):
        async for attempt in RetryPolicy(attempts=5).retrying(retry_on=lambda e: True):
            with attempt:
                tries.append(attempt.number)
                raise asyncio.CancelledError
    assert tries == [1]
