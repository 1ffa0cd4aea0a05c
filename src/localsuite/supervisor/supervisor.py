"""The supervisor: one asyncio loop that starts, watches, restarts and stops the services.

Who writes what (one writer at a time per service):

- Signal handlers only set the stop event. The control API's handlers only ask for an
  operation (`restart`, `switch_model` in `operations.py`).
- The loop (`tick`, every 0.1 s) owns every service that no operation holds. It:
  starts a stopped service once its dependencies are ready (`depends_on: condition:
  service_healthy`; the gateway needs any one inference backend) and its restart wait
  has passed; reaps exits (a crash: restart after the `RestartPolicy` backoff, or
  `failed` with the last log lines after too many in a row, the others keep running);
  launches health probes when due and feeds their results to the service's
  `HealthTracker` (compose semantics): `healthy` makes a starting service `ready`,
  `unhealthy` (a hung server, or one that never came up) hands it to a recovery
  operation that stops it (SIGTERM, wait, SIGKILL) and counts a crash.
- An operation holds its service (`Service.operation`) from start to end: the loop
  leaves that service alone meanwhile, and a second operation on it gets 409.

Every change is published: the state file (`DATA_DIR/run/state.json`), the metrics
(`SupervisorMetrics`) and the `on_change` hook (the CLI's live table). On stop the
services are stopped dependents first, each wave at once, each stop bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from localsuite.core.errors import (
    Conflict,
    LocalSuiteError,
    NotFound,
    ServiceUnavailable,
)
from localsuite.core.http import create_session
from localsuite.core.metrics import SupervisorMetrics, new_registry
from localsuite.core.settings import Settings
from localsuite.inference.registry import ModelRegistry
from localsuite.supervisor.health import HealthStatus, HealthTracker, probe
from localsuite.supervisor.process import ManagedProcess, ProcessState
from localsuite.supervisor.restart import RestartPolicy
from localsuite.supervisor.services import ServiceSpec, stop_waves
from localsuite.supervisor.state import log_dir, snapshot, write_state

log = logging.getLogger("localsuite.supervisor")

TICK = 0.1
T = TypeVar("T")


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


@dataclass(frozen=True, slots=True)
class StartFailure:
    """Why a run started by an operation did not become healthy."""

    reason: str
    log_tail: str = ""

    def with_log(self) -> str:
        return (
            f"{self.reason}; its last log lines:\n{self.log_tail}" if self.log_tail else self.reason
        )


@dataclass(eq=False)
class Service:
    """What the supervisor knows about one service besides its process."""

    process: ManagedProcess
    tracker: HealthTracker | None = None
    crashes: int = 0  # in a row
    restarts: int = 0
    restart_at: float = 0.0
    restart_reason: str = "crash"
    ready_at: float | None = None
    operation: str | None = None
    probe: asyncio.Task[tuple[bool, str | None]] | None = None

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def spec(self) -> ServiceSpec:
        return self.process.spec

    @property
    def state(self) -> ProcessState:
        return self.process.state


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        specs: Iterable[ServiceSpec],
        *,
        preset: str = "custom",
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Supervisor], None] | None = None,
    ) -> None:
        self.settings = settings
        self.preset = preset
        self.policy = policy or RestartPolicy.from_settings(settings)
        self.clock = clock
        self.on_change = on_change
        self.registry = new_registry()
        self.metrics = SupervisorMetrics(self.registry)
        self.models = ModelRegistry(settings.models_dir)
        self.services: dict[str, Service] = {}
        for spec in specs:
            process = ManagedProcess(spec, log_dir(settings), on_change=self._process_changed)
            self.services[spec.name] = Service(process)
            self.metrics.state_changed(spec.name, process.state.value)
        self.stopping = False
        self.control_url: str | None = None
        self.headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._stop = asyncio.Event()
        self._operations: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._dirty = True
        self._state_unwritable = False
        self._last_shown = 0.0

    # --- lifecycle -------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ServiceUnavailable("the supervisor is not running")
        return self._session

    async def run(
        self, control_socket: socket.socket | None = None, *, handle_signals: bool = True
    ) -> None:
        """Supervise until asked to stop (SIGTERM, SIGINT, `request_stop`), then stop all."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        self._session = create_session(connect_timeout=2.0)
        control = None
        if control_socket is not None:
            from localsuite.supervisor.control import ControlServer

            control = ControlServer.for_supervisor(self, control_socket)
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
                if control is not None:
                    await control.close()
                await self.session.close()
                self.publish(final=True)

    async def shutdown(self) -> None:
        log.info("stopping every service, dependents first")
        self.stopping = True
        self._dirty = True
        for task in list(self._operations):
            task.cancel()
        await asyncio.gather(*self._operations, return_exceptions=True)
        for svc in self.services.values():
            self._drop_probe(svc)
        for wave in stop_waves(s.spec for s in self.services.values()):
            stops = [self.services[name].process.stop(self.settings.supervisor_stop_timeout)
                     for name in wave]  # fmt: skip
            await asyncio.gather(*stops)
            self.publish()

    # --- the loop --------------------------------------------------------------------
    def tick(self) -> None:
        """One round of decisions over every service that no operation holds."""
        now = self.clock()
        for svc in self.services.values():
            if svc.operation is None:
                self._watch(svc, now)

    def _watch(self, svc: Service, now: float) -> None:
        if svc.state is ProcessState.STOPPED:
            if now >= svc.restart_at and not self.waiting_for(svc):
                self.start(svc, now)
            return
        if svc.state not in (ProcessState.STARTING, ProcessState.READY):
            return
        code = svc.process.exit_code()
        if code is not None:
            self._drop_probe(svc)
            self.crashed(svc, describe_exit(code), now)
            return
        status = self._collect_probe(svc, now)
        if status is HealthStatus.HEALTHY and svc.state is ProcessState.STARTING:
            self.mark_ready(svc, now)
        elif status is HealthStatus.UNHEALTHY and svc.tracker is not None:
            started = svc.state is ProcessState.STARTING
            reason = ("never became healthy: " if started else "unhealthy: ") + (
                svc.tracker.describe_failure()
            )
            self.spawn(svc, "recovering", self._recover(svc, reason))
        elif (
            svc.crashes
            and svc.ready_at is not None
            and (now - svc.ready_at >= self.policy.stable_after)
        ):
            svc.crashes = 0  # a stable run forgives earlier crashes
            self._dirty = True

    def waiting_for(self, svc: Service) -> list[str]:
        """The dependencies that keep a stopped service from starting (none: it may start)."""
        deps = [self.services[d] for d in svc.spec.depends_on if d in self.services]
        missing = [d.name for d in deps if d.state is not ProcessState.READY]
        if svc.spec.any_dependency and len(missing) < len(deps):
            return []
        return missing

    def start(
        self, svc: Service, now: float, spec: ServiceSpec | None = None, reason: str | None = None
    ) -> None:
        """Spawn the service; `reason` (crash, unhealthy, requested) counts it as a restart."""
        reason = reason or (svc.restart_reason if svc.process.started_wall is not None else None)
        svc.tracker = None
        svc.ready_at = None
        try:
            svc.process.start(spec)
        except OSError as exc:  # the executable is gone, say: a crash that never ran
            self.crashed(svc, f"cannot start {svc.spec.argv[0]}: {exc}", now)
            return
        svc.tracker = HealthTracker(svc.spec.health, now)
        if reason is not None:
            self.metrics.restarted(svc.name, reason)
            if reason != "model_switch":  # the column counts what `status` users look for
                svc.restarts += 1
        log.info("%s: started (pid %s)", svc.name, svc.process.pid)

    def mark_ready(self, svc: Service, now: float) -> None:
        svc.process.ready()
        svc.ready_at = now
        log.info("%s: ready", svc.name)

    def crashed(self, svc: Service, reason: str, now: float, kind: str = "crash") -> None:
        """Count a crash: restart after the backoff, or give up and mark the service failed."""
        svc.crashes += 1
        svc.ready_at = None
        svc.tracker = None
        if svc.state in (ProcessState.STARTING, ProcessState.READY):
            svc.process.exited(reason)
        if self.policy.gives_up(svc.crashes):
            svc.process.fail(f"{reason}; gave up after {svc.crashes} crashes in a row")
            log.error("%s: %s\n%s", svc.name, svc.process.last_error, svc.process.log_tail())
        else:
            svc.process.last_error = reason
            delay = self.policy.delay(svc.crashes)
            svc.restart_at = now + delay
            svc.restart_reason = kind
            log.warning("%s: %s; restarting in %.2fs", svc.name, reason, delay)
        self._dirty = True

    async def _recover(self, svc: Service, reason: str) -> None:
        await svc.process.stop(self.settings.supervisor_stop_timeout, reason)
        self.crashed(svc, reason, self.clock(), kind="unhealthy")

    # --- health probes ---------------------------------------------------------------
    async def probe(self, url: str, within: float) -> tuple[bool, str | None]:
        try:
            return await probe(self.session, url, within, self.headers)
        except Exception as exc:  # a probe that breaks says "not healthy", never stops the loop
            return False, f"{url}: {type(exc).__name__}: {exc}"

    def _collect_probe(self, svc: Service, now: float) -> HealthStatus | None:
        """Feed a finished probe to the tracker; launch the next one when it is due."""
        tracker = svc.tracker
        if tracker is None:
            return None
        task = svc.probe
        if task is not None and task.done():
            svc.probe = None
            ok, detail = task.result()
            self.record_probe(svc, tracker, ok, detail, now)
        if svc.probe is None and tracker.due(now):
            url = tracker.check.probe_url(ready=svc.state is ProcessState.READY)
            svc.probe = asyncio.create_task(self.probe(url, tracker.check.timeout))
        return tracker.status

    def record_probe(
        self, svc: Service, tracker: HealthTracker, ok: bool, detail: str | None, now: float
    ) -> HealthStatus:
        before = tracker.status
        status = tracker.record(ok, detail, now)
        if status is not before:
            self.metrics.health_changed(svc.name, status is HealthStatus.HEALTHY)
            self._dirty = True
        return status

    def _drop_probe(self, svc: Service) -> None:
        if svc.probe is not None:
            svc.probe.cancel()
            svc.probe = None

    # --- operations ------------------------------------------------------------------
    def service(self, name: str) -> Service:
        svc = self.services.get(name)
        if svc is None:
            raise NotFound(
                f"no service {name!r} in this stack; services: {', '.join(self.services)}",
                code="service_not_found",
            )
        return svc

    def _claim(self, svc: Service, what: str) -> None:
        if self.stopping:
            raise ServiceUnavailable("the supervisor is stopping", code="supervisor_stopping")
        if svc.operation is not None:
            raise Conflict(
                f"{svc.name} is busy ({svc.operation}); try again when it is done",
                code="operation_in_progress",
            )
        svc.operation = what
        self._drop_probe(svc)
        self._dirty = True

    def spawn(self, svc: Service, what: str, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` as an operation holding `svc`; released when it ends, however it ends."""
        try:
            self._claim(svc, what)
        except Exception:
            work.close()
            raise
        task = asyncio.create_task(work, name=f"{svc.name}: {what}")
        self._operations.add(task)

        def release(done: asyncio.Task[T]) -> None:
            self._operations.discard(done)
            svc.operation = None
            self._dirty = True
            error = None if done.cancelled() else done.exception()
            if isinstance(error, LocalSuiteError):  # an answer to the request, already logged
                log.warning("%s: %s: %s", svc.name, what, error.message.splitlines()[0])
            elif error is not None:
                log.error("%s: %s failed: %s", svc.name, what, error, exc_info=error)

        task.add_done_callback(release)
        return task

    async def run_operation(self, svc: Service, what: str, work: Coroutine[Any, Any, T]) -> T:
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
    def _process_changed(self, process: ManagedProcess) -> None:
        self.metrics.state_changed(process.name, process.state.value)
        self._dirty = True

    def publish(self, final: bool = False) -> None:
        """Write the state file if anything changed; call `on_change` then, and at least once
        a second (a live table's uptimes move)."""
        now = time.monotonic()
        if self._dirty or final:
            self._dirty = False
            data = snapshot(self)
            if final:  # stale pids could name unrelated processes later
                data["supervisor_pid"] = None
            try:
                write_state(self.settings, data)
            except OSError as exc:  # a full disk must not stop the stack: try again later
                self._dirty = True
                if not self._state_unwritable:
                    log.warning("cannot write the state file (%s); `status` may be stale", exc)
                self._state_unwritable = True
            else:
                self._state_unwritable = False
        elif now - self._last_shown < 1.0:
            return
        self._last_shown = now
        if self.on_change is not None:
            self.on_change(self)

    @property
    def all_ready(self) -> bool:
        return all(s.state is ProcessState.READY for s in self.services.values())
