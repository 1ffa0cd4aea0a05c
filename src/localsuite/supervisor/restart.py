"""The restart policy: how long to wait after a crash, and when to stop trying.

A crash is an unexpected exit, or a run that turned unhealthy (or never became healthy).
The wait doubles with each crash in a row, up to a cap; a run that stays ready for
`stable_after` seconds forgets the earlier crashes; after `max_crashes` in a row the
service is marked failed and left alone (with its last log lines) instead of being
restarted in a hot loop. `localsuite restart SERVICE` starts it again from zero.

The wait is the suite's one backoff formula (`RetryPolicy.ceiling` in `core/retry.py`),
without jitter: the supervisor schedules a restart on its clock instead of sleeping in
a loop, and one supervisor restarting one service has no herd to spread.
"""

from __future__ import annotations

from dataclasses import dataclass

from localsuite.core.retry import RetryPolicy
from localsuite.core.settings import Settings


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 30.0
    stable_after: float = 60.0
    max_crashes: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(
            initial=settings.supervisor_restart_delay,
            maximum=settings.supervisor_restart_delay_max,
            stable_after=settings.supervisor_stable_after,
            max_crashes=settings.supervisor_max_crashes,
        )

    @property
    def backoff(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.max_crashes,
            wait_min=self.initial,
            wait_max=max(self.initial, self.maximum),
            multiplier=self.factor,
        )

    def delay(self, crashes: int) -> float:
        """Seconds to wait before the restart that follows crash number `crashes` in a row."""
        return self.backoff.ceiling(crashes)

    def gives_up(self, crashes: int) -> bool:
        return crashes >= self.max_crashes
