"""One upstream backend: its health (from probes), its breaker (from traffic), its calls.

Two writers, two states, never crossed:

- the prober alone writes `health` (unknown → ready | loading | down) from `GET /health`:
  llama-server answers 503 while loading a model, 200 once it can generate;
- real traffic alone writes the breaker (closed/open/half_open), except that a passing
  probe is what lets an open breaker try again (`CircuitBreaker.probe_succeeded`).

A backend takes requests when its health is not down/loading, it is not draining and
its breaker allows. Draining (set by the supervisor through the admin API during a model
switch) stops new requests only: attempts and streams already on the backend finish.

A backend that stops answering while requests wait on it (SIGSTOP, a wedged process)
is caught by the prober: when it marks the backend down, every attempt waiting on it
is woken at once (`_watched` timeout scopes are rescheduled to now) and fails over,
instead of each waiting out its own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from localsuite.core.breaker import CircuitBreaker
from localsuite.core.http import AnswerTimeout, ConnectFailed, translate_errors
from localsuite.core.metrics import GatewayMetrics
from localsuite.gateway.config import BackendSpec

log = logging.getLogger("localsuite.gateway")

# A silent probe is a suspicion; this many in a row make the backend down.
SILENT_PROBES_TO_DOWN = 2


class Health(enum.Enum):
    UNKNOWN = "unknown"
    READY = "ready"
    LOADING = "loading"
    DOWN = "down"


class Upstream:
    def __init__(
        self,
        spec: BackendSpec,
        breaker: CircuitBreaker,
        metrics: GatewayMetrics,
        *,
        probe_interval: float,
        probe_timeout: float,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.breaker = breaker
        self.metrics = metrics
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.health = Health.UNKNOWN
        self.last_error: str | None = None
        self.last_probe_ms: float | None = None
        self.in_flight = 0
        self.draining = False
        self._silent_probes = 0
        self._watched: set[asyncio.Timeout] = set()
        self._nudged = asyncio.Event()
        self._headers = {"Content-Type": "application/json"}
        if spec.api_key:
            self._headers["Authorization"] = f"Bearer {spec.api_key}"

    # --- routing -----------------------------------------------------------------------
    @property
    def routable(self) -> bool:
        """Whether a request may be sent now, without claiming a half-open trial."""
        return (
            not self.draining
            and self.health not in (Health.DOWN, Health.LOADING)
            and self.breaker.would_allow()
        )

    def why_not_routable(self) -> str:
        if self.draining:
            return "draining (taking no new requests)"
        if self.health is Health.DOWN:
            return f"down ({self.last_error or 'health probe failed'})"
        if self.health is Health.LOADING:
            return "loading its model"
        return f"circuit {self.breaker.state.value} ({self.last_error or 'recent failures'})"

    def set_draining(self, draining: bool) -> None:
        if draining != self.draining:
            what = "draining" if draining else "taking requests again"
            log.info("backend %s: %s", self.name, what)
        self.draining = draining

    def url(self, path: str) -> str:
        return f"{self.spec.api_base}{path}"

    # --- calls -------------------------------------------------------------------------
    @asynccontextmanager
    async def post(
        self, session: aiohttp.ClientSession, path: str, payload: bytes, first_byte: float
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, asyncio.Timeout]]:
        """POST `payload`; yields the response (headers read) and its live timeout scope.

        The scope first bounds the wait for the response headers by `first_byte`; the
        caller reschedules it to bound later reads (stream idle timeouts). If the prober
        marks this backend down meanwhile, the scope fires at once.
        """
        self.in_flight += 1
        scope = asyncio.timeout(first_byte)
        try:
            with translate_errors(self.name):
                async with scope:
                    self._watched.add(scope)
                    try:
                        async with session.post(
                            self.url(path), data=payload, headers=self._headers
                        ) as response:
                            yield response, scope
                    finally:
                        self._watched.discard(scope)
        except AnswerTimeout as exc:
            if self.health is Health.DOWN:
                raise AnswerTimeout(f"{self.name}: stopped answering health probes") from exc
            raise
        finally:
            self.in_flight -= 1

    # --- probing -----------------------------------------------------------------------
    async def probe(self, session: aiohttp.ClientSession) -> Health:
        """Ask `/health` once and update `health`; the prober's only write."""
        started = time.perf_counter()
        try:
            with translate_errors(f"{self.name} health"):
                async with (
                    asyncio.timeout(self.probe_timeout),
                    session.get(self.spec.health_url, headers=self._headers) as response,
                ):
                    await response.read()
                    status = response.status
        except ConnectFailed as exc:
            self._silent_probes = 0
            self._set_health(Health.DOWN, str(exc))
        except AnswerTimeout:
            self._silent_probes += 1
            if self._silent_probes >= SILENT_PROBES_TO_DOWN:
                self._set_health(Health.DOWN, f"health probe silent for {self.probe_timeout:g}s")
        except Exception as exc:  # a broken probe says the backend is not usable
            self._silent_probes = 0
            self._set_health(Health.DOWN, str(exc) or type(exc).__name__)
        else:
            self._silent_probes = 0
            self.last_probe_ms = (time.perf_counter() - started) * 1000
            if status in {200, 404}:
                # 404: a server without /health (not llama.cpp, not vLLM): traffic and the
                # breaker judge it alone.
                came_back = self.health in (Health.DOWN, Health.LOADING)
                self._set_health(Health.READY, None)
                self.breaker.probe_succeeded(came_back=came_back)
            elif status == 503:
                self._set_health(Health.LOADING, "loading model (health answered 503)")
            else:
                self._set_health(Health.DOWN, f"health answered HTTP {status}")
        return self.health

    def next_probe_in(self) -> float:
        if self._silent_probes:
            return 0.0  # a suspicion is checked again at once
        if self.health is Health.READY:
            return self.probe_interval
        return max(0.1, self.probe_interval / 4)

    def nudge(self) -> None:
        """Traffic saw this backend fail: probe it now rather than at the next tick."""
        self._nudged.set()

    async def run_prober(self, session: aiohttp.ClientSession) -> None:
        while True:
            self._nudged.clear()
            await self.probe(session)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.next_probe_in()):
                    await self._nudged.wait()

    def _set_health(self, health: Health, error: str | None) -> None:
        if error is not None or health is Health.READY:
            self.last_error = error
        if health is self.health:
            return
        log.info("backend %s: %s -> %s%s", self.name, self.health.value, health.value,
                 f" ({error})" if error else "")  # fmt: skip
        self.health = health
        self.metrics.probe_result(self.name, health is Health.READY)
        if health is Health.DOWN:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        now = asyncio.get_running_loop().time()
        for scope in list(self._watched):
            scope.reschedule(now)

    def describe(self) -> dict[str, Any]:
        return {
            "api_base": self.spec.api_base,
            "state": self.health.value,
            "circuit": self.breaker.state.value,
            "routable": self.routable,
            "draining": self.draining,
            "consecutive_failures": self.breaker.consecutive_failures,
            "in_flight": self.in_flight,
            "last_error": self.last_error,
            "latency_ms": None if self.last_probe_ms is None else round(self.last_probe_ms, 2),
        }
