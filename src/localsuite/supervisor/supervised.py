"""One supervised service: its process, the health of its current run, its crash count.

A `SupervisedService` is the one writer of what the supervisor knows about a service
(its `ManagedProcess` writes the lifecycle state, through its own methods). Whoever owns
the service at the moment calls it: the loop, through `watch(now)`, while no operation
holds it; else the operation (a restart, a model switch, a recovery) that `hold()` it.

    watch(now)       the loop's look at a running service: an exit is a crash (restart
                     after the backoff, or `failed`); a finished probe goes to the
                     tracker and the next is launched when due; healthy makes a starting
                     service ready; a stable run forgets earlier crashes. Returns why
                     the service must be recovered when it turned unhealthy.
    wait_healthy()   the same look, awaited by an operation until the run it started is
                     ready, or says why not (it exited, or it turned unhealthy and has
                     been stopped).
    start / crashed / recover / cycle   the transitions both of them use.

Both looks are one method (`_look`), so a service is judged the same way whoever waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path

from localsuite.core.errors import Conflict
from localsuite.core.metrics import SupervisorMetrics
from localsuite.core.stack import HealthStatus, ProcessState, ServiceState
from localsuite.supervisor.health import HealthTracker
from localsuite.supervisor.process import ManagedProcess
from localsuite.supervisor.restart import RestartPolicy
from localsuite.supervisor.services import ServiceSpec

log = logging.getLogger("localsuite.supervisor")

TICK = 0.1  # seconds between looks at a service (the loop's and an operation's)
FAILURE_LOG_LINES = 6  # log lines an operation's failure quotes

Prober = Callable[[str, float], Coroutine[None, None, tuple[bool, str | None]]]


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


@dataclass(frozen=True, slots=True)
class Supervision:
    """What every service of one supervisor shares."""

    policy: RestartPolicy
    prober: Prober  # one GET of a health URL within a timeout: (passed, why not)
    metrics: SupervisorMetrics
    stop_timeout: float  # SIGTERM, this long, then SIGKILL
    clock: Callable[[], float]
    environ: Mapping[str, str]  # the children's environment, besides their spec's own
    log_dir: Path
    on_change: Callable[[], None]  # something others see has changed


@dataclass(frozen=True, slots=True)
class Exited:
    reason: str


class SupervisedService:
    def __init__(self, spec: ServiceSpec, shared: Supervision) -> None:
        self.shared = shared
        self.process = ManagedProcess(
            spec, shared.log_dir, env=shared.environ, on_change=self._state_changed,
            clock=shared.clock,
        )  # fmt: skip
        self.tracker: HealthTracker | None = None  # of the current run
        self.crashes = 0  # in a row
        self.restarts = 0
        self.restart_at = 0.0
        self.restart_reason = "crash"
        self.ready_at: float | None = None
        self.operation: str | None = None
        self._probe: asyncio.Task[tuple[bool, str | None]] | None = None
        shared.metrics.state_changed(spec.name, self.state.value)

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def spec(self) -> ServiceSpec:
        return self.process.spec

    @property
    def state(self) -> ProcessState:
        return self.process.state

    def _state_changed(self, process: ManagedProcess) -> None:
        self.shared.metrics.state_changed(process.name, process.state.value)
        self.shared.on_change()

    # --- the loop's look ---------------------------------------------------------------
    def restart_due(self, now: float) -> bool:
        """Whether a stopped service's restart wait (if any) has passed."""
        return self.state is ProcessState.STOPPED and now >= self.restart_at

    def watch(self, now: float) -> str | None:
        """One look at a running service; returns why it must be recovered, if it must."""
        if self.state not in (ProcessState.STARTING, ProcessState.READY):
            return None
        seen = self._look(now)
        if isinstance(seen, Exited):
            self.crashed(seen.reason, now)
        elif seen is HealthStatus.HEALTHY and self.state is ProcessState.STARTING:
            self._ready(now)
        elif seen is HealthStatus.UNHEALTHY and self.tracker is not None:
            started = self.state is ProcessState.STARTING
            verdict = "never became healthy: " if started else "unhealthy: "
            return verdict + self.tracker.describe_failure()
        elif self.crashes and self._stable(now):
            self.crashes = 0  # a stable run forgives earlier crashes
            self.shared.on_change()
        return None

    def _stable(self, now: float) -> bool:
        return self.ready_at is not None and now - self.ready_at >= self.shared.policy.stable_after

    # --- an operation's wait -----------------------------------------------------------
    async def wait_healthy(self) -> StartFailure | None:
        """For an operation that holds the service (just started): None once it is ready,
        else why not (it exited, or turned unhealthy: then it has been stopped)."""
        while (tracker := self.tracker) is not None:
            seen = self._look(self.shared.clock())
            if isinstance(seen, Exited):
                self.process.exited(seen.reason)
                return StartFailure(seen.reason, self.process.log_tail(lines=FAILURE_LOG_LINES))
            if seen is HealthStatus.HEALTHY:
                self._ready(self.shared.clock())
                return None
            if seen is HealthStatus.UNHEALTHY:
                self.drop_probe()
                reason = f"never became healthy: {tracker.describe_failure()}"
                await self.process.stop(self.shared.stop_timeout, reason)
                return StartFailure(reason, self.process.log_tail(lines=FAILURE_LOG_LINES))
            await self._until_next_look(tracker)
        return StartFailure(self.process.last_error or "it could not be started")

    async def _until_next_look(self, tracker: HealthTracker) -> None:
        if self._probe is not None:
            await asyncio.wait({self._probe}, timeout=TICK)
        else:
            await asyncio.sleep(min(TICK, max(0.0, tracker.next_probe_at - self.shared.clock())))

    # --- the one look --------------------------------------------------------------------
    def _look(self, now: float) -> Exited | HealthStatus | None:
        """Reap an exit; feed a finished probe to the tracker, launch the next when due."""
        code = self.process.exit_code()
        if code is not None:
            self.drop_probe()
            return Exited(describe_exit(code))
        tracker = self.tracker
        if tracker is None:
            return None
        task = self._probe
        if task is not None and task.done():
            self._probe = None
            ok, detail = task.result()
            before = tracker.status
            if tracker.record(ok, detail, now) is not before:
                self.shared.metrics.health_changed(
                    self.name, tracker.status is HealthStatus.HEALTHY
                )
                self.shared.on_change()
        if self._probe is None and tracker.due(now):
            url = tracker.check.probe_url(ready=self.state is ProcessState.READY)
            self._probe = asyncio.create_task(self.shared.prober(url, tracker.check.timeout))
        return tracker.status

    def drop_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    # --- transitions -------------------------------------------------------------------
    def start(self, now: float, spec: ServiceSpec | None = None, reason: str | None = None) -> None:
        """Spawn the service; `reason` (crash, unhealthy, requested) counts it as a restart."""
        reason = reason or (self.restart_reason if self.process.started_wall is not None else None)
        self.tracker = None
        self.ready_at = None
        try:
            self.process.start(spec)
        except OSError as exc:  # the executable is gone, say: a crash that never ran
            self.crashed(f"cannot start {self.spec.argv[0]}: {exc}", now)
            return
        self.tracker = HealthTracker(self.spec.health, now)
        if reason is not None:
            self.shared.metrics.restarted(self.name, reason)
            if reason != "model_switch":  # the column counts what `status` users look for
                self.restarts += 1
        log.info("%s: started (pid %s)", self.name, self.process.pid)

    def _ready(self, now: float) -> None:
        self.process.ready()
        self.ready_at = now
        log.info("%s: ready", self.name)

    def crashed(self, reason: str, now: float, kind: str = "crash") -> None:
        """Count a crash: restart after the backoff, or give up and mark the service failed."""
        self.crashes += 1
        self.ready_at = None
        self.tracker = None
        if self.state in (ProcessState.STARTING, ProcessState.READY):
            self.process.exited(reason)
        policy = self.shared.policy
        if policy.gives_up(self.crashes):
            self.process.fail(f"{reason}; gave up after {self.crashes} crashes in a row")
            log.error("%s: %s\n%s", self.name, self.process.last_error, self.process.log_tail())
        else:
            self.process.last_error = reason
            delay = policy.delay(self.crashes)
            self.restart_at = now + delay
            self.restart_reason = kind
            log.warning("%s: %s; restarting in %.2fs", self.name, reason, delay)
        self.shared.on_change()

    async def recover(self, reason: str) -> None:
        """Stop a service that turned unhealthy and count it as a crash."""
        await self.process.stop(self.shared.stop_timeout, reason)
        self.crashed(reason, self.shared.clock(), kind="unhealthy")

    async def stop(self, reason: str | None = None) -> None:
        self.drop_probe()
        await self.process.stop(self.shared.stop_timeout, reason)

    async def cycle(self, spec: ServiceSpec, reason: str) -> StartFailure | None:
        """Stop (if running) and start with `spec`; None once healthy, else why not."""
        await self.process.stop(self.shared.stop_timeout)
        self.start(self.shared.clock(), spec, reason=reason)
        if self.state is not ProcessState.STARTING:
            return StartFailure(self.process.last_error or "it could not be started")
        return await self.wait_healthy()

    def forgive(self) -> None:
        """Forget the crashes in a row: a restart someone asked for starts from zero."""
        self.crashes = 0

    def use_spec(self, spec: ServiceSpec) -> None:
        """Run `spec` from the next start on (a rolled-back model); stopped/failed only."""
        self.process.use_spec(spec)

    def fail(self, reason: str) -> None:
        """Leave the service down until someone asks for it again."""
        self.process.fail(reason)

    # --- operations ----------------------------------------------------------------------
    def hold(self, what: str) -> None:
        """Claim the service for an operation; the loop leaves it alone until `release()`."""
        if self.operation is not None:
            raise Conflict(
                f"{self.name} is busy ({self.operation}); try again when it is done",
                code="operation_in_progress",
            )
        self.operation = what
        self.drop_probe()
        self.shared.on_change()

    def release(self) -> None:
        self.operation = None
        self.shared.on_change()

    # --- what others see -----------------------------------------------------------------
    def describe(self, wall_now: float, waiting_for: list[str]) -> ServiceState:
        process = self.process
        running = self.state in (ProcessState.STARTING, ProcessState.READY)
        started = process.started_wall if running else None
        return ServiceState(
            state=self.state,
            health=self.tracker.status if running and self.tracker is not None else None,
            pid=process.pid,
            port=self.spec.port,
            health_url=self.spec.health.url,
            model=self.spec.model,
            restarts=self.restarts,
            crashes=self.crashes,
            started_at=started,
            uptime_s=None if started is None else round(wall_now - started, 1),
            last_error=process.last_error,
            operation=self.operation,
            depends_on=list(self.spec.depends_on),
            waiting_for=waiting_for,
            log=str(process.log_path),
            log_tail=process.log_tail() if self.state is ProcessState.FAILED else "",
        )
