"""Timeouts as one frozen value, and the deadline a request carries across attempts.

Phases, in the order a request meets them:

    connect     opening the TCP connection (short: a dead local port answers at once)
    first_byte  from sending the request to the first byte of the answer
                (for a stream: the first SSE event; for a plain answer: its headers)
    idle        the longest silence allowed between two reads of a stream
    total       the whole request, every attempt and every backoff included

No call site carries a bare float: it receives a `Timeouts` or asks a `Deadline`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_byte: float
    idle: float
    total: float

    def __post_init__(self) -> None:
        for name in ("connect", "first_byte", "idle", "total"):
            if getattr(self, name) <= 0:
                raise ValueError(f"timeout {name!r} must be positive")


class Deadline:
    """A point in monotonic time by which a request must be answered."""

    __slots__ = ("_clock", "at", "total")

    def __init__(self, total: float, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.total = total
        self.at = clock() + total

    def remaining(self) -> float:
        return max(0.0, self.at - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def budget(self, phase: float) -> float:
        """The time a phase may take: its own limit, cut to what the deadline leaves."""
        return min(phase, self.remaining())

    def fits(self, wait: float) -> bool:
        """Whether waiting `wait` seconds still leaves time for an attempt."""
        return wait < self.remaining()
