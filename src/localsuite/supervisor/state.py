"""The state file (`DATA_DIR/run/state.json`): how other terminals see a running stack.

The supervisor rewrites it (atomically) whenever something changes; `status`, `down`
and `up --detach` read it, and it holds the same data as the control API's `GET /status`
(both built by `snapshot`).
After a clean stop its pids are cleared: a stale pid could name an unrelated process later.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localsuite.core.settings import Settings
from localsuite.supervisor.process import ProcessState

if TYPE_CHECKING:
    from localsuite.supervisor.supervisor import Service, Supervisor


def run_dir(settings: Settings) -> Path:
    return settings.data_dir / "run"


def log_dir(settings: Settings) -> Path:
    return settings.data_dir / "logs"


def state_path(settings: Settings) -> Path:
    return run_dir(settings) / "state.json"


def read_state(settings: Settings) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(settings: Settings, data: dict[str, Any]) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def pid_alive(pid: object) -> bool:
    """Whether `pid` names a live (not zombie) process."""
    if not isinstance(pid, int) or pid <= 0:
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


def snapshot(sup: Supervisor) -> dict[str, Any]:
    """The stack as others see it: the state file's content and `GET /status`'s answer."""
    now = time.time()
    return {
        "supervisor_pid": os.getpid(),
        "preset": sup.preset,
        "control_url": sup.control_url,
        "stopping": sup.stopping,
        "written_at": now,
        "services": {name: describe(sup, svc, now) for name, svc in sup.services.items()},
    }


def describe(sup: Supervisor, svc: Service, now: float) -> dict[str, Any]:
    process = svc.process
    running = svc.state in (ProcessState.STARTING, ProcessState.READY)
    started = process.started_wall if running else None
    health = svc.tracker.status.value if running and svc.tracker is not None else None
    return {
        "state": svc.state.value,
        "health": health,
        "pid": process.pid,
        "port": svc.spec.port,
        "health_url": svc.spec.health.url,
        "model": svc.spec.model,
        "restarts": svc.restarts,
        "crashes": svc.crashes,
        "started_at": started,
        "uptime_s": None if started is None else round(now - started, 1),
        "last_error": process.last_error,
        "operation": svc.operation,
        "depends_on": list(svc.spec.depends_on),
        "waiting_for": sup.waiting_for(svc)
        if svc.state is ProcessState.STOPPED and not sup.stopping
        else [],
        "log": str(process.log_path),
        "log_tail": process.log_tail() if svc.state is ProcessState.FAILED else "",
    }
