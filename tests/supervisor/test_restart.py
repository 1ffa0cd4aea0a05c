"""The restart policy: exponential backoff with a cap, and when to give up."""

from __future__ import annotations

import pytest

from localsuite.core.settings import Settings
from localsuite.supervisor.restart import RestartPolicy


@pytest.mark.parametrize(
    ("crashes", "delay"), [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (8, 30.0), (20, 30.0)]
)
def test_backoff_doubles_up_to_a_cap(crashes: int, delay: float) -> None:
    assert RestartPolicy().delay(crashes) == delay


@pytest.mark.parametrize(("crashes", "gives_up"), [(1, False), (4, False), (5, True), (6, True)])
def test_gives_up_after_max_crashes_in_a_row(crashes: int, gives_up: bool) -> None:
    assert RestartPolicy().gives_up(crashes) is gives_up


def test_the_policy_comes_from_settings() -> None:
    settings = Settings(
        _env_file=None,
        supervisor_restart_delay=1,
        supervisor_restart_delay_max=4,
        supervisor_stable_after=9,
        supervisor_max_crashes=2,
    )
    policy = RestartPolicy.from_settings(settings)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 4]
    assert policy.stable_after == 9 and policy.gives_up(2)
