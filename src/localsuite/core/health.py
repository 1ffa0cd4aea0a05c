"""Health primitives: what a service says about itself and its dependencies.

`/health/live` answers "the process serves HTTP" and never looks further (liveness).
`/health` answers "it can do its job" (readiness): each dependency is a `Check`; a hard
dependency that fails makes the report unhealthy, rendered as 503 with `Retry-After`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    latency_ms: float | None = None
    detail: str | None = None
    hard: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "hard": self.hard}
        if self.latency_ms is not None:
            out["latency_ms"] = round(self.latency_ms, 2)
        if self.detail:
            out["detail"] = self.detail
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class HealthReport:
    service: str
    checks: tuple[Check, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    retry_after: float = 1.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.hard)

    @property
    def status_code(self) -> int:
        return 200 if self.ok else 503

    def headers(self) -> dict[str, str]:
        return {} if self.ok else {"Retry-After": str(max(1, round(self.retry_after)))}

    def body(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": "ok" if self.ok else "unavailable",
            "service": self.service,
            **self.info,
            "checks": {c.name: c.as_dict() for c in self.checks},
        }


HealthSource = Callable[[], Awaitable[HealthReport]]


async def timed_check(
    name: str, probe: Callable[[], Awaitable[str | None]], *, hard: bool = True
) -> Check:
    """Run `probe` (returns an optional detail, raises on failure) and time it."""
    started = time.perf_counter()
    try:
        detail = await probe()
    except Exception as exc:  # a failing dependency is data here, not an error
        return Check(name, False, (time.perf_counter() - started) * 1000, _describe(exc), hard)
    return Check(name, True, (time.perf_counter() - started) * 1000, detail, hard)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
