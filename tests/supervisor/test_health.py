"""Compose healthcheck semantics on a fake clock: start period, interval, retries."""

from __future__ import annotations

import pytest

from localsuite.supervisor.health import HealthCheck, HealthStatus, HealthTracker

CHECK = HealthCheck(
    url="http://x/health",
    start_period=10.0,
    interval=5.0,
    timeout=1.0,
    retries=3,
    start_interval=0.5,
    live_url="http://x/health/live",
)
S, H, U = HealthStatus.STARTING, HealthStatus.HEALTHY, HealthStatus.UNHEALTHY


def run(results: list[tuple[float, bool]]) -> list[HealthStatus]:
    tracker = HealthTracker(CHECK, started_at=0.0)
    return [tracker.record(ok, None if ok else "HTTP 503", now) for now, ok in results]


@pytest.mark.parametrize(
    ("results", "statuses"),
    [
        # Failures inside the start period do not count, however many.
        ([(t, False) for t in (1, 2, 3, 4, 5, 6, 7, 8, 9)], [S] * 9),
        # A pass inside the start period: healthy at once.
        ([(1, False), (2, True)], [S, H]),
        # After the start period, `retries` failures in a row make it unhealthy.
        ([(10, False), (15, False), (20, False)], [S, S, U]),
        # Once healthy, failures count even inside the start period.
        ([(1, True), (2, False), (3, False), (4, False)], [H, H, H, U]),
        # A pass resets the count.
        ([(1, True), (2, False), (3, False), (4, True), (5, False), (6, False)], [H] * 6),
        # Unhealthy is not final: a pass makes it healthy again.
        ([(11, False), (12, False), (13, False), (14, True)], [S, S, U, H]),
    ],
)
def test_statuses_follow_compose(
    results: list[tuple[float, bool]], statuses: list[HealthStatus]
) -> None:
    assert run(results) == statuses


@pytest.mark.parametrize(
    ("results", "next_probe_at"),
    [
        ([], 0.0),  # the first probe at once
        ([(1.0, False)], 1.5),  # inside the start period: every start_interval
        ([(1.0, True)], 6.0),  # healthy: every interval
        ([(12.0, False)], 17.0),  # still starting after the start period: every interval
    ],
)
def test_probe_cadence(results: list[tuple[float, bool]], next_probe_at: float) -> None:
    tracker = HealthTracker(CHECK, started_at=0.0)
    for now, ok in results:
        tracker.record(ok, None, now)
    assert tracker.next_probe_at == next_probe_at
    assert tracker.due(next_probe_at) and not tracker.due(next_probe_at - 0.01)


def test_the_failure_is_described_for_people() -> None:
    tracker = HealthTracker(CHECK, started_at=0.0)
    for now in (10, 15, 20):
        tracker.record(False, "http://x/health answered HTTP 503", now)
    assert tracker.describe_failure() == (
        "3 failed health checks in a row (http://x/health answered HTTP 503)"
    )


def test_readiness_and_liveness_urls() -> None:
    assert CHECK.probe_url(ready=False) == "http://x/health"
    assert CHECK.probe_url(ready=True) == "http://x/health/live"
    same = HealthCheck("http://y/health", 1, 1, 1, 1, 1)
    assert same.probe_url(ready=True) == "http://y/health"
