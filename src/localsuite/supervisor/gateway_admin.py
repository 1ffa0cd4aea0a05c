"""The supervisor's client of the gateway's admin API: drain a backend, wait, undrain.

The gateway knows backends by name (`inference-chat` with the default routing; a routing
file may name them after their host): a service's backend is the one named after it, or
else the one whose `api_base` points at the service's port on this machine.

Nothing here decides; every failure to talk to the gateway becomes a 503 that says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from localsuite.core.errors import ServiceUnavailable
from localsuite.core.http import BadAnswer, ErrorAnswer, NoAnswer, call_json

LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}
IDLE_POLL = 0.05  # seconds between looks at a draining backend's in-flight count


class GatewayAdmin:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: dict[str, str],
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self.timeout = timeout  # one admin call
        self.clock = clock

    async def _call(self, method: str, path: str, *, accept: frozenset[int] = frozenset()) -> Any:
        """A JSON call; an error status in `accept` still returns its body (`/health`'s 503)."""
        try:
            return await call_json(
                self.session,
                method,
                f"{self.base_url}{path}",
                budget=self.timeout,
                headers=self.headers,
                what="api-gateway",
            )
        except ErrorAnswer as exc:
            if exc.status in accept:
                return orjson.loads(exc.body)
            raise ServiceUnavailable(
                f"the gateway's {method} {path} answered HTTP {exc.status}: {exc.message()}",
                code="gateway_unavailable",
            ) from exc
        except (NoAnswer, BadAnswer, orjson.JSONDecodeError) as exc:
            raise ServiceUnavailable(
                f"the gateway did not answer {method} {path}: {exc}", code="gateway_unavailable"
            ) from exc

    async def backends(self) -> dict[str, dict[str, Any]]:
        """Each backend's state as the gateway sees it (`/health`, 200 or 503)."""
        health = await self._call("GET", "/health", accept=frozenset({503}))
        backends = health.get("backends") if isinstance(health, dict) else None
        if not isinstance(backends, dict):
            raise ServiceUnavailable("the gateway's /health lists no backends",
                                     code="gateway_unavailable")  # fmt: skip
        return backends

    async def backend_for(self, service: str, port: int) -> str | None:
        """The gateway's name for the backend that is `service`; None if it routes none to it."""
        backends = await self.backends()
        if service in backends:
            return service
        for name, info in backends.items():
            parts = urlsplit(str(info.get("api_base", "")))
            if parts.port == port and (parts.hostname or "") in LOOPBACK:
                return name
        return None

    async def aliases_left_without(self, backend: str) -> list[str]:
        """The model names that no other routable backend would serve if `backend` went."""
        backends = await self.backends()
        models = await self._call("GET", "/v1/models")
        alone = []
        for entry in models.get("data", []) if isinstance(models, dict) else []:
            names = entry.get("backends") or []
            if backend not in names:
                continue
            others = [n for n in names if n != backend and backends.get(n, {}).get("routable")]
            if not others:
                alone.append(str(entry.get("id")))
        return alone

    async def drain(self, backend: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("POST", f"/admin/backends/{backend}/drain")
        return data

    async def undrain(self, backend: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("POST", f"/admin/backends/{backend}/undrain")
        return data

    async def wait_idle(self, backend: str, within: float) -> int:
        """Wait until the backend has no request in flight; returns how many were left."""
        deadline = self.clock() + within
        while True:
            state = await self._call("GET", f"/admin/backends/{backend}")
            in_flight = int(state.get("in_flight", 0))
            if in_flight == 0 or self.clock() >= deadline:
                return in_flight
            await asyncio.sleep(IDLE_POLL)
