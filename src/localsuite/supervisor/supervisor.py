"""The supervisor: one asyncio loop that starts, watches, restarts and stops the services.

Who writes what (one writer at a time per service):

- Signal handlers only set the stop event. The control API's handlers only ask for an
  operation (`restart`, `switch_model` in `operations.py`).
- The loop (`tick`, every `TICK` seconds) owns every service that no operation holds. It
  starts a stopped service once its dependencies are ready (`depends_on: condition:
  service_healthy`; the gateway needs any one inference backend) and its restart wait
  has passed, and gives every running one a look (`SupervisedService.watch`: exits,
  health probes, readiness). A service that turned unhealthy (a hung server, or one that
  never came up) is handed to a recovery operation that stops it (SIGTERM, wait,
  SIGKILL) and counts a crash.
- An operation holds its service (`SupervisedService.hold`) from start to end: the loop
  leaves that service alone meanwhile, and a second operation on it gets 409.

Every change is published as one `StackState` (`core/stack.py`): to the state file
(`DATA_DIR/run/state.json`), and to the `on_change` hook (the CLI's live table); the
metrics (`SupervisorMetrics`) follow each transition. On stop the services are stopped
dependents first, each wave at once, each stop bounded. The control API is served
beside the loop by `control.serve_supervisor`; this module does not know it.

Services are kept per process (`services`, by name) and per service (`groups`, by the
name `depends_on` uses): one process per service today, several (replicas) tomorrow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import aiohttp

from localsuite.core.errors import LocalSuiteError, NotFound, ServiceUnavailable
from localsuite.core.http import bearer, create_session
from localsuite.core.metrics import SupervisorMetrics, new_registry
from localsuite.core.settings import Settings
from localsuite.core.stack import ProcessState, StackState
from localsuite.inference.registry import ModelRegistry
from localsuite.supervisor.health import probe
from localsuite.supervisor.restart import RestartPolicy
from localsuite.supervisor.services import ServiceSpec, stop_waves
from localsuite.supervisor.state import log_dir, write_state
from localsuite.supervisor.supervised import TICK, SupervisedService, Supervision

log = logging.getLogger("localsuite.supervisor")

T = TypeVar("T")
REFRESH = 1.0  # seconds: `on_change` runs at least this often (a live table's uptimes move)


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        specs: Iterable[ServiceSpec],
        *,
        environ: Mapping[str, str],
        preset: str = "custom",
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Supervisor], None] | None = None,
    ) -> None:
        """`environ` is what the services are started with (the environment `localsuite
        up` was given), besides each spec's own variables."""
        self.settings = settings
        self.preset = preset
        self.policy = policy or RestartPolicy.from_settings(settings)
        self.clock = clock
        self.on_change = on_change
        self.registry = new_registry()
        self.metrics = SupervisorMetrics(self.registry)
        self.models = ModelRegistry(settings.models_dir)
        shared = Supervision(
            policy=self.policy,
            prober=self.probe,
            metrics=self.metrics,
            stop_timeout=settings.supervisor_stop_timeout,
            clock=clock,
            environ=environ,
            log_dir=log_dir(settings),
            on_change=self._changed,
        )
        self.services = {spec.name: SupervisedService(spec, shared) for spec in specs}
        for name in self.services:
            self.metrics.declare(name)
        self.groups: dict[str, list[SupervisedService]] = {}
        for svc in self.services.values():
            self.groups.setdefault(svc.spec.group, []).append(svc)
        self.stopping = False
        self.control_url: str | None = None
        # the admin key: it drains backends at the gateway (and opens every other route)
        self.headers = bearer(settings.admin_key)
        self._stop = asyncio.Event()
        self._operations: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._dirty = True
        self._state_unwritable = False
        self._last_shown = -REFRESH

    # --- lifecycle -------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ServiceUnavailable("the supervisor is not running")
        return self._session

    async def run(self, *, handle_signals: bool = True) -> None:
        """Supervise until asked to stop (SIGTERM, SIGINT, `request_stop`), then stop all."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        self._session = create_session(connect_timeout=self.settings.supervisor_connect_timeout)
        try:
            while not self._stop.is_set():
                self.tick()
                self.publish()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK):
                        await self._stop.wait()
        finally:
            try:
                await self.shutdown()
            finally:
                await self.session.close()
                self.publish(final=True)

    async def shutdown(self) -> None:
        log.info("stopping every service, dependents first")
        self.stopping = True
        self._dirty = True
        for task in list(self._operations):
            task.cancel()
        await asyncio.gather(*self._operations, return_exceptions=True)
        for wave in stop_waves(s.spec for s in self.services.values()):
            await asyncio.gather(*(self.services[name].stop() for name in wave))
            self.publish()

    # --- the loop --------------------------------------------------------------------
    def tick(self) -> None:
        """One round of decisions over every service that no operation holds."""
        now = self.clock()
        for svc in self.services.values():
            if svc.operation is not None:
                continue
            if svc.state is ProcessState.STOPPED:
                if svc.restart_due(now) and not self.waiting_for(svc):
                    svc.start(now)
                continue
            reason = svc.watch(now)
            if reason is not None:
                self.spawn(svc, "recovering", svc.recover(reason))

    def waiting_for(self, svc: SupervisedService) -> list[str]:
        """The dependencies that keep a stopped service from starting (none: it may start).

        A dependency is ready when every process of it is; with `any_dependency` one
        ready process of any dependency is enough."""
        needed = {d: self.groups[d] for d in svc.spec.depends_on if d in self.groups}
        ready = {d: [m.state is ProcessState.READY for m in ms] for d, ms in needed.items()}
        if svc.spec.any_dependency and any(any(r) for r in ready.values()):
            return []
        return [d for d, r in ready.items() if not all(r)]

    # --- health probes ---------------------------------------------------------------
    async def probe(self, url: str, within: float) -> tuple[bool, str | None]:
        try:
            return await probe(self.session, url, within, self.headers)
        except Exception as exc:  # a probe that breaks says "not healthy", never stops the loop
            return False, f"{url}: {type(exc).__name__}: {exc}"

    # --- operations ------------------------------------------------------------------
    def service(self, name: str) -> SupervisedService:
        svc = self.services.get(name)
        if svc is None:
            raise NotFound(
                f"no service {name!r} in this stack; services: {', '.join(self.services)}",
                code="service_not_found",
            )
        return svc

    def spawn(
        self, svc: SupervisedService, what: str, work: Coroutine[Any, Any, T]
    ) -> asyncio.Task[T]:
        """Run `work` as an operation holding `svc`; released when it ends, however it ends."""
        try:
            if self.stopping:
                raise ServiceUnavailable("the supervisor is stopping", code="supervisor_stopping")
            svc.hold(what)
        except Exception:
            work.close()
            raise
        task = asyncio.create_task(work, name=f"{svc.name}: {what}")
        self._operations.add(task)

        def release(done: asyncio.Task[T]) -> None:
            self._operations.discard(done)
            svc.release()
            error = None if done.cancelled() else done.exception()
            if isinstance(error, LocalSuiteError):  # an answer to the request, already logged
                log.warning("%s: %s: %s", svc.name, what, error.message.splitlines()[0])
            elif error is not None:
                log.error("%s: %s failed: %s", svc.name, what, error, exc_info=error)

        task.add_done_callback(release)
        return task

    async def run_operation(
        self, svc: SupervisedService, what: str, work: Coroutine[Any, Any, T]
    ) -> T:
        """An operation for a request: the caller waits for it; a client that goes away does
        not cancel it."""
        task = self.spawn(svc, what, work)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise ServiceUnavailable(
                    f"the supervisor stopped before {what} of {svc.name} finished",
                    code="supervisor_stopping",
                ) from None
            raise

    # --- what the others see ---------------------------------------------------------
    def _changed(self) -> None:
        self._dirty = True

    def snapshot(self, *, final: bool = False) -> StackState:
        """The stack as others see it: the state file's content and `GET /status`'s answer.
        Times in it are wall-clock times, for people; `final` clears the supervisor's pid
        (a stale pid could name an unrelated process later)."""
        wall_now = time.time()
        return StackState(
            supervisor_pid=None if final else os.getpid(),
            preset=self.preset,
            control_url=self.control_url,
            stopping=self.stopping,
            written_at=wall_now,
            services={
                name: svc.describe(wall_now, self._waiting_shown(svc))
                for name, svc in self.services.items()
            },
        )

    def _waiting_shown(self, svc: SupervisedService) -> list[str]:
        if svc.state is ProcessState.STOPPED and not self.stopping:
            return self.waiting_for(svc)
        return []

    def publish(self, final: bool = False) -> None:
        """Write the state file if anything changed; call `on_change` then, and at least
        every `REFRESH` seconds."""
        now = self.clock()
        if self._dirty or final:
            self._dirty = False
            try:
                write_state(self.settings, self.snapshot(final=final))
            except OSError as exc:  # a full disk must not stop the stack: try again later
                self._dirty = True
                if not self._state_unwritable:
                    log.warning("cannot write the state file (%s); `status` may be stale", exc)
                self._state_unwritable = True
            else:
                self._state_unwritable = False
        elif now - self._last_shown < REFRESH:
            return
        self._last_shown = now
        if self.on_change is not None:
            self.on_change(self)

    @property
    def all_ready(self) -> bool:
        return all(s.state is ProcessState.READY for s in self.services.values())
