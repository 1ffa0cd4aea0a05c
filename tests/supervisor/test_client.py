"""What the supervisor's client derives from the settings: how long it waits."""

from __future__ import annotations

from localsuite.core.settings import Settings
from localsuite.core.stack import ProcessState, ServiceState, StackState
from localsuite.supervisor.client import operation_bound, stop_bound
from localsuite.supervisor.process import KILL_WAIT
from localsuite.supervisor.services import build_services


def test_an_operation_may_take_a_drain_and_two_bounded_starts() -> None:
    """With the defaults: a 60 s drain, 4 admin calls of 5 s, and twice a stop (10 s, then
    the kill), the slowest start period (a llama-server's 120 s) and 3 checks of 5 + 5 s."""
    one_round = (10 + KILL_WAIT) + 120 + 3 * (5 + 5)
    assert operation_bound(Settings(_env_file=None)) == 60 + 4 * 5 + 2 * one_round
    slower = Settings(_env_file=None, inference_start_period=300)
    assert operation_bound(slower) == operation_bound(Settings(_env_file=None)) + 2 * 180


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
