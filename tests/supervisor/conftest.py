"""Supervisors over fake services (real processes that start in a blink), run in-process."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from localsuite.core.settings import Settings
from localsuite.supervisor.health import HealthCheck
from localsuite.supervisor.process import ProcessState
from localsuite.supervisor.restart import RestartPolicy
from localsuite.supervisor.services import ServiceSpec
from localsuite.supervisor.supervisor import Supervisor
from localsuite.testing.servers import free_port

FAKE = str(Path(__file__).with_name("fake_service.py"))
FAST_POLICY = RestartPolicy(initial=0.05, maximum=0.2, stable_after=60.0, max_crashes=3)


def fake_spec(
    name: str,
    *flags: str,
    depends_on: tuple[str, ...] = (),
    any_dependency: bool = False,
    start_period: float = 10.0,
    interval: float = 0.1,
    retries: int = 2,
    timeout: float = 0.5,
) -> ServiceSpec:
    port = free_port()
    check = HealthCheck(
        url=f"http://127.0.0.1:{port}/health",
        start_period=start_period,
        interval=interval,
        timeout=timeout,
        retries=retries,
        start_interval=0.05,
    )
    argv = [sys.executable, FAKE, "--port", str(port), *flags]
    return ServiceSpec(name, argv, port, check, depends_on, any_dependency)


async def eventually(predicate: Callable[[], bool], within: float, what: str) -> None:
    """Poll `predicate` on the event loop until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


def state(sup: Supervisor, name: str) -> ProcessState:
    return sup.services[name].state


class Transitions:
    """Every (service, state) change, in order, as the supervisor published them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self._last: dict[str, str] = {}

    def __call__(self, sup: Supervisor) -> None:
        for name, svc in sup.services.items():
            if self._last.get(name) != svc.state.value:
                self._last[name] = svc.state.value
                self.seen.append((name, svc.state.value))

    def index(self, name: str, state: str) -> int:
        return self.seen.index((name, state))


Start = Callable[..., Awaitable[Supervisor]]


@pytest.fixture
async def supervise(tmp_path: Path) -> AsyncIterator[Start]:
    """Start a supervisor over the given specs; every one is stopped at the end."""
    running: list[tuple[Supervisor, asyncio.Task[None]]] = []

    async def start(specs: list[ServiceSpec], **kw: Any) -> Supervisor:
        settings = Settings(_env_file=None, data_dir=tmp_path, supervisor_stop_timeout=2.0)
        kw.setdefault("policy", FAST_POLICY)
        sup = Supervisor(settings, specs, environ=os.environ, **kw)
        running.append((sup, asyncio.create_task(sup.run(handle_signals=False))))
        return sup

    yield start
    for sup, task in running:
        sup.request_stop()
        await asyncio.wait_for(task, 30)
