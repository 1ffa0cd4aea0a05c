"""One managed OS process: an explicit lifecycle with a single writer.

    stopped ──start()──▶ starting ──health 200──▶ ready
    starting/ready ──exit──▶ (the launcher decides: starting again after a backoff, or failed)
    any ──stop()──▶ stopping ──▶ stopped

Only the methods of `ManagedProcess` write `state`; the launcher reads it. Children run
in their own process group (a stop reaches their children too) and are killed by the
kernel if the launcher dies (PR_SET_PDEATHSIG), so nothing is orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from localsuite.supervisor.services import ServiceSpec

PR_SET_PDEATHSIG = 1


class ProcessState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    def __init__(
        self,
        spec: ServiceSpec,
        log_dir: Path,
        env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.env = env
        self._clock = clock
        self.state = ProcessState.STOPPED
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None  # monotonic, for decisions
        self.started_wall: float | None = None  # wall clock, for people
        self.restarts = 0
        self.last_error: str | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n--- starting {self.spec.name}: {' '.join(self.spec.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.spec.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**(self.env or os.environ), **self.spec.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks
            )
        self.started_at = self._clock()
        self.started_wall = time.time()
        self.state = ProcessState.STARTING

    def exit_code(self) -> int | None:
        """The exit status if the process has ended (and is reaped), else None."""
        return None if self.proc is None else self.proc.poll()

    def check_health(self, timeout: float = 2.0) -> bool:
        """One health probe; a starting process that passes becomes ready."""
        try:
            ok = httpx.get(self.spec.health_url, timeout=timeout).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok and self.state is ProcessState.STARTING:
            self.state = ProcessState.READY
        return ok

    def start_period_over(self) -> bool:
        return self.started_at is not None and (
            self._clock() - self.started_at > self.spec.start_period
        )

    def exited(self, reason: str) -> None:
        """The process ended on its own: record why, before the launcher decides."""
        self.last_error = reason
        self.state = ProcessState.STOPPED

    def fail(self, reason: str) -> None:
        self.last_error = reason
        self.state = ProcessState.FAILED

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group, then SIGKILL after `grace` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            if self.state is not ProcessState.FAILED:
                self.state = ProcessState.STOPPED
            return
        self.state = ProcessState.STOPPING
        self._signal_group(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.state = ProcessState.STOPPED

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
