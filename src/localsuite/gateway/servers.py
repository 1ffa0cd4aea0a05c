"""One inference server: its health, written by its probe alone, and the calls sent to it.

The probe (`core.probe.Prober`, every `GATEWAY_PROBE_INTERVAL`, faster while down) is
the only writer of a server's `health`:

    unknown ──▶ ready      GET /health answered 200 (or 404: a server without /health,
                           judged by its deployments' traffic alone)
            ──▶ loading    503: llama-server is loading its model
            ──▶ down       the connection was refused, the answer was another status,
                           or two probes in a row got no answer in time

A server that is down or loading takes every deployment on it out of rotation; nothing
that one model's requests meet changes the server's health (that is the deployment's
breaker, `gateway.deployments`), though such failures nudge the probe to look at once.
The probe also reads what the server says about itself: its slot count (llama-server's
`/props`: the default concurrency limit of its deployments) and, when deployments name
models, the models it lists (`/v1/models`: router mode marks a model that failed to load).

Draining (the supervisor's model switch, through the admin API) stops new requests
only: attempts and streams already on the server finish. When the probe marks a server
down, every attempt waiting on it is woken at once (its timeout scope rescheduled to
now) and fails over, instead of each waiting out its own timeout.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from localsuite.core.http import AnswerTimeout, ConnectFailed, bearer, translate_errors
from localsuite.core.probe import Prober
from localsuite.gateway.config import ServerSpec

log = logging.getLogger("localsuite.gateway")

# A silent probe is a suspicion; this many in a row make the server down.
SILENT_PROBES_TO_DOWN = 2
# Sends of one request that could not be written on pooled connections the server had
# closed, before the error is the attempt's (each fails at once, before the request
# reached the server).
STALE_CONNECTIONS_TRIED = 4


class Health(enum.Enum):
    UNKNOWN = "unknown"
    READY = "ready"
    LOADING = "loading"
    DOWN = "down"


class Server:
    def __init__(
        self,
        spec: ServerSpec,
        *,
        probe_interval: float,
        probe_timeout: float,
        on_change: Callable[[Server], None],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self._on_change = on_change
        self.health = Health.UNKNOWN
        self.last_error: str | None = None
        self.last_probe_ms: float | None = None
        self.draining = False
        self.in_flight = 0
        self.slots: int | None = None  # what the server says it can run at once
        self.failed_models: dict[str, str] = {}  # model → why the server says it failed
        self.lists_models = False  # set when a deployment names a model on this server
        # The server closes a connection after a streamed answer although it says
        # keep-alive (llama.cpp's HTTP server does): such connections are not reused.
        # Learned from its `Server` header, or from a pooled connection found closed.
        self.closes_after_streams = False
        self.deployments: list[Any] = []  # its `Deployment`s, told when a probe passes
        self._silent_probes = 0
        self._watched: set[asyncio.Timeout] = set()
        self.headers = {"Content-Type": "application/json", **bearer(spec.api_key)}
        self.prober = Prober(spec.name, self._probe_once, self.next_probe_in)
        self._session: aiohttp.ClientSession | None = None

    # --- routing -----------------------------------------------------------------------
    @property
    def routable(self) -> bool:
        return not self.draining and self.health not in (Health.DOWN, Health.LOADING)

    def why_not_routable(self) -> str:
        if self.draining:
            return "draining (taking no new requests)"
        if self.health is Health.DOWN:
            return f"down ({self.last_error or 'health probe failed'})"
        return "loading its model"

    def set_draining(self, draining: bool) -> None:
        if draining != self.draining:
            log.info("server %s: %s", self.name, "draining" if draining else "taking requests")
            self.draining = draining
            self._on_change(self)

    def url(self, path: str) -> str:
        return f"{self.spec.api_base}{path}"

    # --- calls -------------------------------------------------------------------------
    @asynccontextmanager
    async def post(
        self,
        session: aiohttp.ClientSession,
        path: str,
        payload: bytes,
        first_byte: float,
        headers: dict[str, str],
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, asyncio.Timeout]]:
        """POST `payload`; yields the response (headers read) and its live timeout scope.

        The scope first bounds the wait for the response headers by `first_byte`; the
        caller reschedules it to bound later reads. If the probe marks this server down
        meanwhile, the scope fires at once. A connection that breaks before the headers
        (a pooled connection the server had just closed) is tried once more at once.
        """
        self.in_flight += 1
        scope = asyncio.timeout(first_byte)
        try:
            with translate_errors(self.name):
                async with scope:
                    self._watched.add(scope)
                    try:
                        response = await self._send(session, path, payload, headers)
                        async with response:
                            yield response, scope
                    finally:
                        self._watched.discard(scope)
        except AnswerTimeout as exc:
            if self.health is Health.DOWN:
                raise AnswerTimeout(f"{self.name}: stopped answering health probes") from exc
            raise
        finally:
            self.in_flight -= 1

    async def _send(
        self, session: aiohttp.ClientSession, path: str, payload: bytes, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        all_headers = {**self.headers, **headers}
        url = self.url(path)
        sends = 0
        while True:
            sends += 1
            try:
                response = await session.post(url, data=payload, headers=all_headers)
                break
            except aiohttp.ClientConnectorError:
                raise  # refused: nothing listens; trying again at once would say the same
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # A pooled connection the server had closed. The failed one left the pool,
                # so the next send takes another, or a new one. A request that could not
                # be written (OSError) never reached the server: another send is safe, up
                # to a few; one the server dropped unanswered may have, so it gets one.
                unwritten = not isinstance(exc, aiohttp.ServerDisconnectedError)
                if sends >= (STALE_CONNECTIONS_TRIED if unwritten else 2):
                    raise
                if not self.closes_after_streams:
                    log.info("server %s closed a pooled connection: streamed answers from it "
                             "will not be kept alive", self.name)  # fmt: skip
                    self.closes_after_streams = True
        if response.headers.get("Server", "").startswith("llama.cpp"):
            self.closes_after_streams = True
        return response

    # --- probing -----------------------------------------------------------------------
    def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self.prober.start()

    async def stop(self) -> None:
        await self.prober.stop()

    async def probe(self, session: aiohttp.ClientSession) -> Health:
        """Probe once now (the first round before serving, and tests)."""
        self._session = session
        await self._probe_once()
        return self.health

    async def _probe_once(self) -> None:
        session = self._session
        assert session is not None, "start() the server before probing it"
        started = time.perf_counter()
        try:
            status, _ = await self._get(session, self.spec.health_url)
        except ConnectFailed as exc:
            self._silent_probes = 0
            self._set_health(Health.DOWN, str(exc))
            return
        except AnswerTimeout:
            self._silent_probes += 1
            if self._silent_probes >= SILENT_PROBES_TO_DOWN:
                self._set_health(Health.DOWN, f"health probe silent for {self.probe_timeout:g}s")
            return
        except Exception as exc:  # a broken probe says the server is not usable
            self._silent_probes = 0
            self._set_health(Health.DOWN, str(exc) or type(exc).__name__)
            return
        self._silent_probes = 0
        self.last_probe_ms = (time.perf_counter() - started) * 1000
        if status == 503:
            self._set_health(Health.LOADING, "loading model (health answered 503)")
            return
        if status not in (200, 404):
            self._set_health(Health.DOWN, f"health answered HTTP {status}")
            return
        came_back = self.health in (Health.DOWN, Health.LOADING)
        if came_back or self.health is Health.UNKNOWN:
            await self._read_props(session)
        if self.lists_models:
            await self._read_models(session)
        self._set_health(Health.READY, None)
        for deployment in self.deployments:
            deployment.breaker.probe_succeeded(came_back=came_back)

    async def _get(self, session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
        with translate_errors(f"{self.name} health"):
            async with (
                asyncio.timeout(self.probe_timeout),
                session.get(url, headers=self.headers) as response,
            ):
                return response.status, await response.read()

    async def _read_props(self, session: aiohttp.ClientSession) -> None:
        """llama-server's slot count (`total_slots`); other servers say nothing here."""
        slots: int | None = None
        try:
            status, body = await self._get(session, f"{self.spec.root}/props")
            data = orjson.loads(body) if status == 200 else {}
            value = data.get("total_slots") if isinstance(data, dict) else None
            slots = value if isinstance(value, int) and value > 0 else None
        except Exception:  # no slot count: no default limit
            slots = None
        if slots != self.slots:
            self.slots = slots
            self._on_change(self)

    async def _read_models(self, session: aiohttp.ClientSession) -> None:
        """Router mode lists each model with a status; a failed load says so."""
        try:
            status, body = await self._get(session, self.url("/models"))
            data = orjson.loads(body) if status == 200 else {}
        except Exception:
            return  # the health probe decides about the server; this is extra
        failed: dict[str, str] = {}
        for item in data.get("data", []) if isinstance(data, dict) else []:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            state = item.get("status")
            if isinstance(state, dict) and (state.get("failed") or state.get("value") == "failed"):
                code = state.get("exit_code")
                failed[item["id"]] = "failed to load" + (f" (exit code {code})" if code else "")
        if failed != self.failed_models:
            log.info("server %s: models failed to load: %s", self.name, failed or "none")
            self.failed_models = failed
            self._on_change(self)

    def next_probe_in(self) -> float:
        if self._silent_probes:
            return 0.0  # a suspicion is checked again at once
        if self.health is Health.READY:
            return self.probe_interval
        return max(0.1, self.probe_interval / 4)

    def nudge(self) -> None:
        """Traffic saw this server fail: probe it now rather than at the next tick."""
        self.prober.nudge()

    def _set_health(self, health: Health, error: str | None) -> None:
        if error is not None or health is Health.READY:
            self.last_error = error
        if health is self.health:
            return
        log.info("server %s: %s -> %s%s", self.name, self.health.value, health.value,
                 f" ({error})" if error else "")  # fmt: skip
        self.health = health
        if health is Health.DOWN:
            self._wake_waiters()
        self._on_change(self)

    def _wake_waiters(self) -> None:
        now = asyncio.get_running_loop().time()
        for scope in list(self._watched):
            scope.reschedule(now)

    def describe(self) -> dict[str, Any]:
        return {
            "api_base": self.spec.api_base,
            "state": self.health.value,
            "routable": self.routable,
            "draining": self.draining,
            "in_flight": self.in_flight,
            "slots": self.slots,
            "last_error": self.last_error,
            "latency_ms": None if self.last_probe_ms is None else round(self.last_probe_ms, 2),
            "deployments": [d.id for d in self.deployments],
        }
