"""The launcher: starts services in health order, restarts what crashes, stops cleanly.

One loop owns every decision. Signal handlers only set a flag; each tick the loop:

- starts a stopped service once its dependencies are ready (`depends_on:
  condition: service_healthy`), and when its restart backoff has elapsed;
- probes starting services; one still not ready after its start period is restarted;
- notices exits: a crash is restarted after an exponential backoff (reset after a
  stable run); a service that keeps crashing is marked failed, with its last log lines,
  and the others keep running;
- writes the state (`DATA_DIR/run/state.json`) that `status` and `down` read.

On SIGTERM/SIGINT it stops services in reverse start order (SIGTERM, wait, SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from localsuite.core.settings import Settings
from localsuite.supervisor.process import ManagedProcess, ProcessState
from localsuite.supervisor.services import build_services

TICK = 0.2


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    stable_after: float = 60.0  # a run this long resets the count
    give_up_after: int = 5  # crashes in a row before the service is failed

    def delay(self, crashes: int) -> float:
        return min(self.maximum, self.initial * self.factor ** max(0, crashes - 1))


def run_dir(settings: Settings) -> Path:
    return settings.data_dir / "run"


def state_path(settings: Settings) -> Path:
    return run_dir(settings) / "state.json"


def read_state(settings: Settings) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Launcher:
    def __init__(
        self,
        settings: Settings,
        preset: str,
        *,
        backoff: Backoff = Backoff(),
        on_change: Callable[[Launcher], None] | None = None,
    ) -> None:
        self.settings = settings
        self.preset = preset
        self.backoff = backoff
        self.on_change = on_change
        specs, self.skipped = build_services(settings, preset)
        log_dir = settings.data_dir / "logs"
        self.processes = {s.name: ManagedProcess(s, log_dir) for s in specs}
        self._crashes = dict.fromkeys(self.processes, 0)
        self._start_at = dict.fromkeys(self.processes, 0.0)
        self._stop_requested = False

    # --- the loop ----------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stop_requested = True

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> None:
        """Supervise until asked to stop; then stop everything."""
        run_dir(self.settings).mkdir(parents=True, exist_ok=True)
        try:
            while not self._stop_requested:
                if self.tick():
                    self.write_state()
                    if self.on_change is not None:
                        self.on_change(self)
                time.sleep(TICK)
        finally:
            self.shutdown()

    def tick(self) -> bool:
        """One round of decisions; True if any state changed."""
        changed = False
        now = time.monotonic()
        for name, proc in self.processes.items():
            before = (proc.state, proc.pid)
            if proc.state in (ProcessState.STARTING, ProcessState.READY):
                self._watch(name, proc, now)
            elif proc.state is ProcessState.STOPPED and self._may_start(name, proc, now):
                if proc.pid is not None:
                    proc.restarts += 1
                proc.start()
            changed = changed or before != (proc.state, proc.pid)
        return changed

    def _watch(self, name: str, proc: ManagedProcess, now: float) -> None:
        code = proc.exit_code()
        if code is not None:
            self._crashed(name, proc, f"exited with status {code}", now)
        elif proc.state is ProcessState.STARTING and not proc.check_health():
            if proc.start_period_over():
                proc.stop(grace=5)
                self._crashed(name, proc, "never became healthy", now)
        elif proc.started_at is not None and now - proc.started_at > self.backoff.stable_after:
            self._crashes[name] = 0  # a stable run forgives earlier crashes

    def _may_start(self, name: str, proc: ManagedProcess, now: float) -> bool:
        ready = [self.processes[d].state is ProcessState.READY for d in proc.spec.depends_on]
        deps_ready = any(ready) if proc.spec.any_dependency and ready else all(ready)
        return deps_ready and now >= self._start_at[name]

    def _crashed(self, name: str, proc: ManagedProcess, reason: str, now: float) -> None:
        self._crashes[name] += 1
        crashes = self._crashes[name]
        if crashes >= self.backoff.give_up_after:
            proc.fail(f"{reason}; gave up after {crashes} tries in a row")
            return
        proc.exited(reason)
        self._start_at[name] = now + self.backoff.delay(crashes)

    def shutdown(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        self.write_state(stopped=True)

    # --- state for the other commands --------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "supervisor_pid": os.getpid(),
            "preset": self.preset,
            "skipped": self.skipped,
            "written_at": time.time(),
            "services": {
                name: {
                    "state": p.state.value,
                    "pid": p.pid,
                    "port": p.spec.port,
                    "health_url": p.spec.health_url,
                    "model": p.spec.model,
                    "restarts": p.restarts,
                    "started_at": p.started_wall,
                    "last_error": p.last_error,
                    "log": str(p.log_path),
                    "log_tail": p.log_tail() if p.state is ProcessState.FAILED else "",
                }
                for name, p in self.processes.items()
            },
        }

    def write_state(self, *, stopped: bool = False) -> None:
        data = self.snapshot()
        if stopped:  # stale pids could name unrelated processes later: `down` must not see them
            data["supervisor_pid"] = None
            for service in data["services"].values():
                service["pid"] = None
        path = state_path(self.settings)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)

    @property
    def all_ready(self) -> bool:
        return all(p.state is ProcessState.READY for p in self.processes.values())
