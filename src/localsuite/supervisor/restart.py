"""The restart policy: how long to wait after a crash, and when to stop trying.

A crash is an unexpected exit, or a run that turned unhealthy (or never became healthy).
The wait doubles with each crash in a row, up to a cap; a run that stays ready for
`stable_after` seconds forgets the earlier crashes; after `max_crashes` in a row the
service is marked failed and left alone (with its last log lines) instead of being
restarted in a hot loop. `localsuite restart SERVICE` starts it again from zero.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def delay(self, crashes: int) -> float:
        """Seconds to wait before the restart that follows crash number `crashes` in a row."""
        return min(self.maximum, self.initial * self.factor ** max(0, crashes - 1))

    def gives_up(self, crashes: int) -> bool:
        return crashes >= self.max_crashes
