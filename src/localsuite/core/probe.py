"""The one background prober: a dependency's state is written by its probe, nobody else.

A `Prober` calls its probe, then sleeps for whatever `cadence()` says (callers probe
less often while up, more often while down or suspect), and wakes early when traffic
`nudge()`s it after a failure, so that a dead peer is seen in one round trip rather
than at the next tick. Traffic never writes the state itself: it only asks for a probe.

Used by the gateway (one per inference server) and by rag (one per dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("localsuite")


class Prober:
    def __init__(
        self, name: str, probe: Callable[[], Awaitable[object]], cadence: Callable[[], float]
    ) -> None:
        self.name = name
        self._probe = probe
        self._cadence = cadence
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def nudge(self) -> None:
        """Traffic saw a failure: probe now rather than at the next tick."""
        self._nudged.set()

    async def run(self) -> None:
        while True:
            self._nudged.clear()
            try:
                await self._probe()
            except Exception:  # a probe must report, never raise; keep probing regardless
                log.exception("probe of %s failed unexpectedly", self.name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cadence()):
                    await self._nudged.wait()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"probe-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
