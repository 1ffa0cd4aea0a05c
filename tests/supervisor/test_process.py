"""One managed process: its state machine, its log, and a bounded stop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from localsuite.supervisor.health import HealthCheck
from localsuite.supervisor.process import IllegalTransition, ManagedProcess, ProcessState
from localsuite.supervisor.services import ServiceSpec
from localsuite.supervisor.state import pid_alive
from localsuite.testing.servers import wait_until

CHECK = HealthCheck("http://127.0.0.1:1/health", 1, 1, 1, 1, 1)


def process(tmp_path: Path, code: str, seen: list[str] | None = None) -> ManagedProcess:
    spec = ServiceSpec("svc", [sys.executable, "-c", code], 1, CHECK)
    record = None if seen is None else (lambda p: seen.append(p.state.value))
    return ManagedProcess(spec, tmp_path, env={}, on_change=record)


async def test_the_lifecycle_and_its_hook(tmp_path: Path) -> None:
    seen: list[str] = []
    proc = process(tmp_path, "import time; print('hello', flush=True); time.sleep(60)", seen)
    proc.start()
    wait_until(lambda: "hello" in proc.log_tail(), 10, "output in the log")
    proc.ready()
    pid = proc.pid
    await proc.stop(grace=5)
    assert seen == ["starting", "ready", "stopping", "stopped"]
    assert proc.pid is None and not pid_alive(pid)


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (ProcessState.STOPPED, "ready"),
        (ProcessState.READY, "start"),
        (ProcessState.STARTING, "start"),
        (ProcessState.STOPPED, "exited"),
        (ProcessState.READY, "fail"),
    ],
)
def test_illegal_transitions_are_refused(tmp_path: Path, state: ProcessState, action: str) -> None:
    proc = process(tmp_path, "pass")
    proc.state = state  # only to set up the case
    with pytest.raises(IllegalTransition, match=f"while {state.value}"):
        if action == "exited":
            proc.exited("x")
        elif action == "fail":
            proc.fail("x")
        else:
            getattr(proc, action)()


async def test_an_exit_is_recorded_with_its_reason_and_a_failed_one_can_start_again(
    tmp_path: Path,
) -> None:
    proc = process(tmp_path, "print('bad config'); raise SystemExit(4)")
    proc.start()
    wait_until(lambda: proc.exit_code() is not None, 10, "exit")
    assert proc.exit_code() == 4
    proc.exited("exited with status 4")
    proc.fail("gave up")
    assert proc.state is ProcessState.FAILED and proc.last_error == "gave up"
    assert "bad config" in proc.log_tail()
    proc.start()
    assert proc.state is ProcessState.STARTING


async def test_stop_kills_what_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('deaf', flush=True); time.sleep(60)"
    )
    proc = process(tmp_path, code)
    proc.start()
    pid = proc.pid
    wait_until(lambda: "deaf" in proc.log_tail(), 10, "SIGTERM ignored")
    await proc.stop(grace=0.5)
    assert proc.state is ProcessState.STOPPED and not pid_alive(pid)
    assert proc.exit_code() == -9  # SIGTERM did nothing; SIGKILL after the grace did


async def test_stop_reaches_the_whole_process_group(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('child', child.pid, flush=True); time.sleep(60)"
    )
    proc = process(tmp_path, code)
    proc.start()
    wait_until(lambda: "child" in proc.log_tail(), 10, "the grandchild")
    grandchild = int(proc.log_tail().split()[-1])
    await proc.stop(grace=2)
    wait_until(lambda: not pid_alive(grandchild), 10, "the grandchild gone")


def test_a_run_starts_a_new_log_section(tmp_path: Path) -> None:
    proc = process(tmp_path, "print('first run')")
    proc.start()
    wait_until(lambda: proc.exit_code() is not None, 10, "exit")
    proc.exited("done")
    proc.start(ServiceSpec("svc", [sys.executable, "-c", "print('second')"], 1, CHECK))
    wait_until(lambda: proc.exit_code() is not None, 10, "exit")
    assert "second" in proc.log_tail() and "first run" not in proc.log_tail()
    assert "first run" in proc.log_tail(current_run=False)


def test_a_child_gets_the_environment_it_is_given_and_its_specs_own(tmp_path: Path) -> None:
    code = "import os; print('env', sorted(os.environ), flush=True)"
    spec = ServiceSpec("svc", [sys.executable, "-c", code], 1, CHECK, env={"FROM_SPEC": "1"})
    proc = ManagedProcess(spec, tmp_path, env={"FROM_SUPERVISOR": "1"})
    proc.start()
    wait_until(lambda: proc.exit_code() is not None, 10, "exit")
    said = proc.log_tail()
    assert "'FROM_SPEC'" in said and "'FROM_SUPERVISOR'" in said
    assert "'PATH'" not in said  # not this process's own environment
