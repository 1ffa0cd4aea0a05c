"""The supervision loop over fake services: start order, crashes, health, stops."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from localsuite.core.settings import Settings
from localsuite.supervisor.process import ProcessState
from localsuite.supervisor.restart import RestartPolicy
from localsuite.supervisor.state import pid_alive, read_state
from localsuite.supervisor.supervisor import Supervisor

from .conftest import Start, Transitions, eventually, fake_spec, state

READY = ProcessState.READY


async def test_a_service_starts_only_once_its_dependency_is_healthy(supervise: Start) -> None:
    seen = Transitions()
    db = fake_spec("db", "--ready-after", "0.6")
    app = fake_spec("app", depends_on=("db",))
    sup = await supervise([db, app], on_change=seen)
    await eventually(lambda: sup.all_ready, 20, "both ready")
    assert seen.index("db", "ready") < seen.index("app", "starting")
    assert sup.snapshot().services["app"].waiting_for == []


async def test_any_dependency_is_enough_for_the_gateway_kind(supervise: Start) -> None:
    broken = fake_spec("chat", "--exit-after", "0")
    code = fake_spec("code")
    gateway = fake_spec("gateway", depends_on=("chat", "code"), any_dependency=True)
    sup = await supervise([broken, code, gateway])
    await eventually(lambda: state(sup, "gateway") is READY, 20, "gateway ready")
    await eventually(lambda: state(sup, "chat") is ProcessState.FAILED, 20, "chat failed")


async def test_a_crash_is_restarted_and_repeated_crashes_fail_with_the_log(
    supervise: Start,
) -> None:
    steady = fake_spec("steady")
    flaky = fake_spec("flaky", "--exit-after", "0", "--exit-code", "7", "--say", "boom at start")
    sup = await supervise([steady, flaky])
    await eventually(lambda: state(sup, "flaky") is ProcessState.FAILED, 20, "flaky failed")
    await eventually(lambda: state(sup, "steady") is READY, 20, "steady ready")
    steady_pid = sup.services["steady"].process.pid

    described = sup.snapshot().services["flaky"]
    assert described.last_error == "exited with status 7; gave up after 3 crashes in a row"
    assert "boom at start" in described.log_tail
    assert described.restarts == 2 and described.pid is None
    on_disk = read_state(sup.settings)
    assert on_disk is not None and on_disk.services["flaky"].state is ProcessState.FAILED
    # The others keep running, untouched.
    assert state(sup, "steady") is READY and sup.services["steady"].process.pid == steady_pid


async def test_a_crash_after_ready_is_restarted_after_the_backoff(supervise: Start) -> None:
    sup = await supervise([fake_spec("short", "--exit-after", "1.0")])
    await eventually(lambda: state(sup, "short") is READY, 20, "ready")
    first = sup.services["short"].process.pid
    await eventually(lambda: sup.services["short"].restarts == 1, 20, "restarted")
    await eventually(lambda: state(sup, "short") is READY, 20, "ready again")
    assert sup.services["short"].process.pid != first
    assert sup.services["short"].crashes == 1
    assert not pid_alive(first)


async def test_a_ready_service_that_stops_answering_health_is_restarted(supervise: Start) -> None:
    sup = await supervise([fake_spec("hangs", "--hang-after", "1.0", timeout=0.3)])
    await eventually(lambda: state(sup, "hangs") is READY, 20, "ready")
    first = sup.services["hangs"].process.pid
    await eventually(lambda: sup.services["hangs"].restarts == 1, 20, "restarted")
    assert "unhealthy: 2 failed health checks in a row" in str(
        sup.services["hangs"].process.last_error
    )
    assert not pid_alive(first)


async def test_the_start_period_covers_a_slow_start(supervise: Start) -> None:
    """Failed probes inside the start period do not count: a slow loader is not killed."""
    spec = fake_spec("slow", "--ready-after", "1.5", start_period=5.0, retries=1)
    sup = await supervise([spec])
    await eventually(lambda: state(sup, "slow") is READY, 20, "ready")
    assert sup.services["slow"].restarts == 0


async def test_never_healthy_after_the_start_period_counts_as_a_crash(supervise: Start) -> None:
    spec = fake_spec("never", "--ready-after", "999", start_period=0.3, retries=2, interval=0.1)
    sup = await supervise([spec])
    await eventually(lambda: state(sup, "never") is ProcessState.FAILED, 30, "failed")
    error = str(sup.services["never"].process.last_error)
    assert error.startswith("never became healthy: 2 failed health checks in a row")
    assert "gave up after 3 crashes" in error


async def test_stop_is_bounded_and_leaves_no_process(supervise: Start) -> None:
    stubborn = fake_spec("stubborn", "--ignore-term")
    polite = fake_spec("polite", depends_on=("stubborn",))
    sup = await supervise([stubborn, polite])
    await eventually(lambda: sup.all_ready, 20, "ready")
    pids = [svc.process.pid for svc in sup.services.values()]
    await sup.shutdown()  # stop_timeout is 2 s: the stubborn one gets SIGKILL
    assert all(svc.state is ProcessState.STOPPED for svc in sup.services.values())
    assert not [pid for pid in pids if pid_alive(pid)]


def test_crash_accounting_follows_the_policy(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    policy = RestartPolicy(initial=1.0, maximum=4.0, max_crashes=4)
    sup = Supervisor(settings, [fake_spec("svc")], environ={}, policy=policy)
    svc = sup.services["svc"]
    waits = []
    for now in (10.0, 20.0, 30.0):
        svc.crashed("exited with status 1", now)
        waits.append(svc.restart_at - now)
    assert waits == [1.0, 2.0, 4.0] and svc.state is ProcessState.STOPPED
    svc.crashed("exited with status 1", 40.0)
    assert svc.state is ProcessState.FAILED
    assert svc.process.last_error == "exited with status 1; gave up after 4 crashes in a row"


@pytest.mark.parametrize(
    ("any_dependency", "ready", "waiting"),
    [
        (False, set(), ["a", "b"]),
        (False, {"a"}, ["b"]),
        (False, {"a", "b"}, []),
        (True, set(), ["a", "b"]),
        (True, {"b"}, []),
    ],
)
def test_dependencies_gate_the_start(
    tmp_path: Path, any_dependency: bool, ready: set[str], waiting: list[str]
) -> None:
    specs = [fake_spec("a"), fake_spec("b"), fake_spec("c", depends_on=("a", "b"),
                                                      any_dependency=any_dependency)]  # fmt: skip
    sup = Supervisor(Settings(_env_file=None, data_dir=tmp_path), specs, environ={})
    for name in ready:
        sup.services[name].process.state = ProcessState.READY  # only to set up the case
    assert sup.waiting_for(sup.services["c"]) == waiting


async def test_a_state_file_that_cannot_be_written_does_not_stop_the_stack(
    supervise: Start, tmp_path: Path
) -> None:
    blocker = tmp_path / "run" / "state.json"
    blocker.mkdir(
        parents=True
    )  # a folder where the file goes: every write fails, as on a full disk
    sup = await supervise([fake_spec("steady")])
    await eventually(lambda: state(sup, "steady") is READY, 20, "steady ready")
    assert read_state(sup.settings) is None
    blocker.rmdir()  # space again: the state is written at the next change or tick
    sup.publish(final=False)
    await eventually(lambda: read_state(sup.settings) is not None, 10, "the state file")
    assert state(sup, "steady") is READY


def test_replicas_of_one_service_are_one_dependency(tmp_path: Path) -> None:
    """Two processes of one service (`group`): a dependent waits for both; with
    `any_dependency` one of them is enough. `depends_on` names the service."""
    replicas = [replace(fake_spec(f"chat-{n}"), group="chat") for n in (1, 2)]
    specs = [*replicas, fake_spec("gateway", depends_on=("chat",)),
             fake_spec("any", depends_on=("chat",), any_dependency=True)]  # fmt: skip
    sup = Supervisor(Settings(_env_file=None, data_dir=tmp_path), specs, environ={})
    assert [s.name for s in sup.groups["chat"]] == ["chat-1", "chat-2"]
    assert sup.waiting_for(sup.services["gateway"]) == ["chat"]
    sup.services["chat-1"].process.state = ProcessState.READY  # only to set up the case
    assert sup.waiting_for(sup.services["gateway"]) == ["chat"]
    assert sup.waiting_for(sup.services["any"]) == []
    sup.services["chat-2"].process.state = ProcessState.READY
    assert sup.waiting_for(sup.services["gateway"]) == []
