"""The supervisor's clients, for the CLI, tests and benchmarks: start a stack in the
background, call its control API, stop it.

They find a stack through the state file (the supervisor's pid and the address its
control API is bound to), so they work from any terminal. Every failure is a
`ControlError` with the supervisor's own message; nothing here prints.

    launch(settings, preset, environ)   `localsuite up --supervise` in the background;
                                        `Detached.wait_ready()` follows it until every
                                        service is ready (or one failed, or it exited)
    ControlClient(settings)             the control API: status, models, restart, switch
    stop(settings, state)               SIGTERM to the supervisor, a bounded wait, SIGKILL
                                        to what is left
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from localsuite.core.http import bearer
from localsuite.core.settings import Settings
from localsuite.core.stack import ProcessState, StackState
from localsuite.supervisor.process import KILL_WAIT
from localsuite.supervisor.services import waves
from localsuite.supervisor.state import log_dir, pid_alive, read_state, state_path

CONNECT_TIMEOUT = 10.0  # seconds to reach the control API (it listens on loopback)
STATE_POLL = 0.2  # seconds between looks at the state file of a starting stack
EXIT_POLL = 0.1  # seconds between looks at a stopping stack's processes
ADMIN_CALLS = 4  # the gateway's admin calls of one switch: /health, /v1/models, drain, undrain
STOP_MARGIN = 10.0  # seconds, past the stop waves, for the supervisor's own exit


class ControlError(Exception):
    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class NoStack(ControlError):
    """No supervisor is running for this DATA_DIR."""


def running_state(settings: Settings) -> StackState | None:
    """The state file of a stack whose supervisor is alive, else None."""
    state = read_state(settings)
    if state is not None and pid_alive(state.supervisor_pid):
        return state
    return None


def operation_bound(settings: Settings) -> float:
    """The longest a restart or a model switch may take: the drain, then two rounds (the
    new run, and the rollback to the previous model) of a bounded stop, a load within
    its start period and the health checks that judge it, and the gateway's admin calls."""
    load = max(settings.inference_start_period, settings.supervisor_start_period)
    checks = settings.supervisor_health_retries * (
        settings.supervisor_health_interval + settings.supervisor_health_timeout
    )
    stop_one = settings.supervisor_stop_timeout + KILL_WAIT
    admin = ADMIN_CALLS * settings.supervisor_admin_timeout
    return settings.supervisor_drain_timeout + admin + 2 * (stop_one + load + checks)


class ControlClient:
    def __init__(self, settings: Settings, base_url: str | None = None) -> None:
        if base_url is None:
            state = running_state(settings)
            if state is None:
                raise NoStack("no stack is running; `localsuite up --detach` starts one")
            base_url = state.control_url or settings.supervisor_service_url
        self.base_url = base_url.rstrip("/")
        self.operation_wait = operation_bound(settings)
        self.headers = bearer(settings.admin_key)  # restarts and switches are admin

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, wait: float = 30.0
    ) -> dict[str, Any]:
        """One call; `wait` bounds the answer (a model switch waits for a model load)."""
        url = f"{self.base_url}{path}"
        try:
            response = httpx.request(
                method, url, json=body, headers=self.headers,
                timeout=httpx.Timeout(CONNECT_TIMEOUT, read=wait),
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise ControlError(f"the supervisor at {self.base_url} did not answer: {exc}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            message = error.get("message") or f"HTTP {response.status_code}"
            raise ControlError(message, response.status_code, error.get("code"))
        if not isinstance(data, dict):
            raise ControlError(f"the supervisor answered {path} with something that is not JSON")
        return data

    def status(self) -> StackState:
        return StackState.model_validate(self.call("GET", "/status"))

    def models(self) -> dict[str, Any]:
        return self.call("GET", "/models")

    def restart(self, service: str) -> dict[str, Any]:
        path = f"/services/{quote(service, safe='')}/restart"
        return self.call("POST", path, wait=self.operation_wait)

    def switch_model(self, service: str, model: str) -> dict[str, Any]:
        path = f"/services/{quote(service, safe='')}/model"
        return self.call("POST", path, {"model": model}, wait=self.operation_wait)


# --- a stack in the background ------------------------------------------------------------
class NotReady(ControlError):
    """A detached stack that did not come up: its supervisor exited, a service failed, or
    not every service was ready in time."""


@dataclass
class Detached:
    """A supervisor started in the background (`launch`), until it is ready."""

    settings: Settings
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def states(
        self, within: float, clock: Callable[[], float] = time.monotonic
    ) -> Iterator[StackState]:
        """The stack's state each time it is looked at, until every service is ready;
        `NotReady` when the supervisor exits, a service fails or `within` seconds pass."""
        deadline = clock() + within
        while True:
            if self.process.poll() is not None:
                raise NotReady(
                    f"the supervisor exited (status {self.process.returncode}):\n"
                    f"{_tail(self.log_path)}"
                )
            state = read_state(self.settings)
            if state is not None and state.supervisor_pid == self.pid:
                for name, info in state.in_state(ProcessState.FAILED).items():
                    raise NotReady(
                        f"{name} failed: {info.last_error}\n{info.log_tail}\n(full log: "
                        f"{info.log}); the other services keep running: `localsuite status` "
                        "shows them, `localsuite down` stops them"
                    )
                yield state
                if state.all_ready:
                    return
            if clock() > deadline:
                raise NotReady(f"not every service is healthy after {within:g}s; "
                               "`localsuite status` shows where it stands")  # fmt: skip
            time.sleep(STATE_POLL)


def launch(settings: Settings, preset: str, environ: Mapping[str, str]) -> Detached:
    """Start the supervisor of `preset` in the background, in a session of its own."""
    logs = log_dir(settings)
    logs.mkdir(parents=True, exist_ok=True)
    state_path(settings).unlink(missing_ok=True)
    log_path = logs / "supervisor.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "localsuite", "up", "--preset", preset, "--supervise"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(environ), start_new_session=True,
        )  # fmt: skip
    return Detached(settings, process, log_path)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- stopping -------------------------------------------------------------------------------
def stop_bound(settings: Settings, state: StackState) -> float:
    """How long a stack's stop may take: each of its stop waves is bounded by the stop
    timeout (and the kill after it), then the supervisor exits."""
    wave_count = len(waves({name: s.depends_on for name, s in state.services.items()}))
    return wave_count * (settings.supervisor_stop_timeout + KILL_WAIT) + STOP_MARGIN


def stop(
    settings: Settings,
    state: StackState,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[int], list[int]]:
    """Stop the stack `state` describes and wait until none of its processes is left:
    SIGTERM to the supervisor (it stops its services, dependents first), and after
    `timeout` (default: `stop_bound`) SIGKILL to what still runs. Returns the pids that
    were alive, and those that had to be killed."""
    pids = [pid for pid in state.pids() if pid_alive(pid)]
    supervisor = state.supervisor_pid
    if supervisor is not None and pid_alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
    limit = timeout if timeout is not None else stop_bound(settings, state)
    deadline = clock() + limit
    while any(pid_alive(p) for p in pids) and clock() < deadline:
        time.sleep(EXIT_POLL)
    killed = [pid for pid in pids if pid_alive(pid)]
    for pid in killed:
        try:
            os.killpg(pid, signal.SIGKILL)  # services lead their own process group
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids, killed
