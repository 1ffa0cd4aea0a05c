"""The state file (`DATA_DIR/run/state.json`): how other terminals see a running stack.

The supervisor rewrites it (atomically) whenever something changes, from the same
`StackState` (`core/stack.py`) that the control API's `GET /status` answers with;
`status`, `down` and `up --detach` read it back as that model. After a clean stop its
pids are cleared: a stale pid could name an unrelated process later.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from localsuite.core.settings import Settings
from localsuite.core.stack import StackState


def run_dir(settings: Settings) -> Path:
    return settings.data_dir / "run"


def log_dir(settings: Settings) -> Path:
    return settings.data_dir / "logs"


def state_path(settings: Settings) -> Path:
    return run_dir(settings) / "state.json"


def read_state(settings: Settings) -> StackState | None:
    """The last state written; None when there is none (or it is not a state file)."""
    try:
        return StackState.model_validate_json(state_path(settings).read_bytes())
    except (OSError, ValidationError):
        return None


def write_state(settings: Settings, state: StackState) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=2))
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
