"""What the supervisor's client derives from the settings: how long it waits."""

from __future__ import annotations

from localsuite.core.settings import Settings
from localsuite.core.stack import ProcessState, ServiceState, StackState
from localsuite.supervisor.client import operation_bound, stop_bound
from localsuite.supervisor.process import KILL_WAIT
from localsuite.supervisor.services import build_services


def test_an_operation_may_take_a_drain_and_two_bounded_starts() -> None:
    settings = Settings(
        _env_file=None,
        supervisor_drain_timeout=60,
        supervisor_admin_timeout=5,
        supervisor_stop_timeout=10,
        inference_start_period=120,
        supervisor_start_period=60,
        supervisor_health_retries=3,
        supervisor_health_interval=5,
        supervisor_health_timeout=5,
    )
    one_round = (10 + KILL_WAIT) + 120 + 3 * (5 + 5)
    assert operation_bound(settings) == 60 + 4 * 5 + 2 * one_round


def test_a_stop_is_bounded_wave_by_wave() -> None:
    settings = Settings(_env_file=None, supervisor_stop_timeout=3)
    specs = build_services(settings, "p3")  # waves: mcp, rag, gateway, the rest
    services = {
        s.name: ServiceState(
            state=ProcessState.READY,
            port=s.port,
            health_url=s.health.url,
            log="x",
            depends_on=list(s.depends_on),
        )
        for s in specs
    }
    state = StackState(supervisor_pid=1, preset="p3", written_at=0, services=services)
    bound = stop_bound(settings, state)
    assert bound == 4 * (3 + KILL_WAIT) + 10
    one_service = StackState(
        supervisor_pid=1, preset="p1", written_at=0, services=dict(list(services.items())[:1])
    )
    assert stop_bound(settings, one_service) == 3 + KILL_WAIT + 10
