"""One managed OS process: an explicit lifecycle, written only by its own methods.

    stopped ──start()──▶ starting ──ready()──▶ ready
    starting/ready ──exited()──▶ stopped          (the supervisor schedules a restart)
    starting/ready ──stop()──▶ stopping ──▶ stopped
    stopped ──fail()──▶ failed ──start()──▶ starting   (only when asked: `restart`)

Each method states which states it accepts and refuses the others (`IllegalTransition`),
so a caller that lost track of the state fails loudly instead of forking a second
server. Whoever owns the service at the moment (the supervisor's loop, or one operation
such as a model switch) is the only caller.

Children run in their own process group (a stop reaches anything they spawned) and get
SIGKILL from the kernel if the supervisor dies (PR_SET_PDEATHSIG), so nothing is
orphaned. PR_SET_PDEATHSIG fires when the *thread* that forked exits: `start()` must be
called from the supervisor's main (event loop) thread, never from a worker thread.

A child's environment is the one it is given (the supervisor's, read once at start-up)
plus its spec's own variables; this module never reads `os.environ`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from localsuite.core.stack import ProcessState
from localsuite.supervisor.services import ServiceSpec

PR_SET_PDEATHSIG = 1
LOG_ROTATE_BYTES = 20 * 2**20  # a log past this is moved to NAME.log.1 at the next start
KILL_WAIT = 10.0  # seconds for the kernel to reap a group after SIGKILL
EXIT_POLL = 0.02  # seconds between looks at a stopping process

try:  # resolved here: the child, between fork and exec, must not load libraries
    _prctl: Callable[..., int] | None = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


class IllegalTransition(RuntimeError):
    """A lifecycle method called in a state that does not allow it: a supervisor bug."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    def __init__(
        self,
        spec: ServiceSpec,
        log_dir: Path,
        *,
        env: Mapping[str, str],
        on_change: Callable[[ManagedProcess], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.env = env
        self.on_change = on_change
        self.clock = clock
        self.state = ProcessState.STOPPED
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_wall: float | None = None  # wall clock of the current run, for people
        self.last_error: str | None = None
        self.log_offset = 0  # where the current run's output starts in the log

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        running = self.state in (ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPING)
        return self.proc.pid if self.proc is not None and running else None

    def _set(self, state: ProcessState) -> None:
        if state is not self.state:
            self.state = state
            if self.on_change is not None:
                self.on_change(self)

    def _expect(self, action: str, *allowed: ProcessState) -> None:
        if self.state not in allowed:
            raise IllegalTransition(f"{self.name}: cannot {action} while {self.state.value}")

    # --- transitions -------------------------------------------------------------------
    def start(self, spec: ServiceSpec | None = None) -> None:
        """Spawn the process (with a new spec, for a model switch); stopped/failed only."""
        self._expect("start", ProcessState.STOPPED, ProcessState.FAILED)
        if spec is not None:
            self.spec = spec
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._rotate_log()
        with self.log_path.open("ab") as log:
            header = f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}: "
            log.write(f"{header}{' '.join(self.spec.argv)}\n".encode())
            log.flush()
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.spec.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **self.spec.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, no locks
            )
        self.started_wall = time.time()  # last_error stays: why the previous run ended
        self._set(ProcessState.STARTING)

    def use_spec(self, spec: ServiceSpec) -> None:
        """Run `spec` from the next start on (a rolled-back model); stopped/failed only."""
        self._expect("change its command", ProcessState.STOPPED, ProcessState.FAILED)
        self.spec = spec

    def ready(self) -> None:
        self._expect("become ready", ProcessState.STARTING)
        self._set(ProcessState.READY)

    def exit_code(self) -> int | None:
        """The exit status if the process has ended (and is reaped), else None."""
        return None if self.proc is None else self.proc.poll()

    def exited(self, reason: str) -> None:
        """The process ended on its own: record why; its group's leftovers are killed."""
        self._expect("record an exit", ProcessState.STARTING, ProcessState.READY)
        self._signal_group(signal.SIGKILL)
        self.last_error = reason
        self._set(ProcessState.STOPPED)

    def fail(self, reason: str) -> None:
        """Give up on the service: it stays down until someone asks for it again."""
        self._expect("fail", ProcessState.STOPPED, ProcessState.FAILED)
        self.last_error = reason
        self._set(ProcessState.FAILED)

    async def stop(self, grace: float, reason: str | None = None) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds; bounded."""
        if self.state in (ProcessState.STOPPED, ProcessState.FAILED):
            return
        if reason is not None:
            self.last_error = reason
        self._set(ProcessState.STOPPING)
        self._signal_group(signal.SIGCONT)  # a stopped (SIGSTOP) process cannot act on TERM
        self._signal_group(signal.SIGTERM)
        if not await self._wait_exit(grace):
            self._signal_group(signal.SIGKILL)
            await self._wait_exit(KILL_WAIT)
        self._signal_group(signal.SIGKILL)  # anything the leader left in its group
        self._set(ProcessState.STOPPED)

    async def _wait_exit(self, within: float) -> bool:
        deadline = self.clock() + within
        while self.exit_code() is None:
            if self.clock() >= deadline:
                return False
            await asyncio.sleep(EXIT_POLL)
        return True

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    # --- the log -----------------------------------------------------------------------
    def _rotate_log(self) -> None:
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))

    def log_tail(self, lines: int = 12, current_run: bool = True) -> str:
        """The last lines of the log (of the current or last run only, by default)."""
        try:
            with self.log_path.open("rb") as log:
                if current_run:
                    log.seek(self.log_offset)
                text = log.read()[-64 * 1024 :].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])
