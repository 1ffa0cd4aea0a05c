"""Health checks with Docker Compose's semantics, and the probe that feeds them.

A `HealthCheck` is a service's `healthcheck:` block: `start_period`, `interval`,
`timeout`, `retries`, plus `start_interval` (compose's probe cadence inside the start
period). A `HealthTracker` turns probe results into compose's three statuses:

    starting ──probe passes──▶ healthy ──`retries` counted failures in a row──▶ unhealthy
    starting ──`retries` counted failures──▶ unhealthy        (healthy again on a pass)

A failure counts unless it happens inside the start period before the first pass (so a
7B GGUF loading for a minute is not unhealthy); once a probe has passed, every failure
counts. The tracker is pure: the caller passes the time (tests use a fake clock).

Readiness and liveness may differ: a Python service is ready when its `/health` passes
(its dependencies answer), and once ready it is restarted only when `/health/live`
stops answering: a rag whose Qdrant is down is not cured by a restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from localsuite.core.http import NoAnswer, translate_errors
from localsuite.core.stack import HealthStatus


@dataclass(frozen=True, slots=True)
class HealthCheck:
    url: str  # readiness: gates the service's own READY and its dependents' start
    start_period: float
    interval: float
    timeout: float
    retries: int
    start_interval: float
    live_url: str | None = None  # liveness once ready; None: the readiness URL

    def probe_url(self, ready: bool) -> str:
        return (self.live_url or self.url) if ready else self.url


class HealthTracker:
    """The health of one run of a process; a new run gets a new tracker."""

    def __init__(self, check: HealthCheck, started_at: float) -> None:
        self.check = check
        self.started_at = started_at
        self.status = HealthStatus.STARTING
        self.failures = 0  # counted failures in a row
        self.last_failure: str | None = None
        self.next_probe_at = started_at

    def in_start_period(self, now: float) -> bool:
        return now - self.started_at < self.check.start_period

    def due(self, now: float) -> bool:
        return now >= self.next_probe_at

    def record(self, ok: bool, detail: str | None, now: float) -> HealthStatus:
        """One probe's result; returns the status after it."""
        if ok:
            self.status = HealthStatus.HEALTHY
            self.failures = 0
        else:
            self.last_failure = detail or "health check failed"
            counts = self.status is not HealthStatus.STARTING or not self.in_start_period(now)
            if counts:
                self.failures += 1
                if self.failures >= self.check.retries:
                    self.status = HealthStatus.UNHEALTHY
        fast = self.status is HealthStatus.STARTING and self.in_start_period(now)
        self.next_probe_at = now + (self.check.start_interval if fast else self.check.interval)
        return self.status

    def describe_failure(self) -> str:
        return f"{self.failures} failed health checks in a row ({self.last_failure})"


async def probe(
    session: aiohttp.ClientSession, url: str, within: float, headers: dict[str, str]
) -> tuple[bool, str | None]:
    """One GET of a health URL: (passed, why not). Only 200 passes (llama-server answers
    503 while it loads its model)."""
    try:
        with translate_errors(url):
            async with (
                asyncio.timeout(within),
                session.get(url, headers=headers, allow_redirects=False) as response,
            ):
                await response.read()
                status = response.status
    except NoAnswer as exc:
        return False, str(exc)
    return (True, None) if status == 200 else (False, f"{url} answered HTTP {status}")
