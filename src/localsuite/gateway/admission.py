"""Admission: a request gets a slot on a deployment, or waits its turn, or is told 429.

Each deployment runs at most `limit` attempts at once (`gateway.deployments`). A request
that finds every usable deployment of its priority group at its limit waits in its
alias's queue, inside its deadline, in arrival order (`x-priority: batch` waits behind
`interactive`, the default). It is not sent to the next priority meanwhile — chat
requests must not land on the code model because chat is busy — unless the alias says
`spill` and its queue is full. A full queue answers 429 with `Retry-After`; a deadline
that passes in the queue answers 504.

Slots are handed out in one place (`_dispatch`), in queue order, whenever one frees or a
deployment's availability changes (a probe, a breaker, a drain): a waiter whose group has
no usable deployment left is told so at once and moves on to its next group.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from localsuite.core.errors import DeadlineExceeded, RateLimited
from localsuite.core.metrics import GatewayMetrics
from localsuite.gateway.balance import Balancer
from localsuite.gateway.config import AliasPolicy
from localsuite.gateway.deployments import Deployment

if TYPE_CHECKING:
    from localsuite.gateway.engine import Exchange

log = logging.getLogger("localsuite.gateway")


@dataclass(frozen=True, slots=True)
class Group:
    """Deployments of one alias at one priority, with their weights."""

    alias: str
    deployments: tuple[Deployment, ...]
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Waiter:
    exchange: Exchange
    group: Group
    seq: int
    since: float
    future: asyncio.Future[Deployment | None]

    @property
    def order(self) -> tuple[int, int]:
        return (self.exchange.priority, self.seq)


class Admission:
    def __init__(
        self,
        balancer: Balancer,
        policy_for: Callable[[str], AliasPolicy],
        metrics: GatewayMetrics,
    ) -> None:
        self.balancer = balancer
        self.policy_for = policy_for
        self.metrics = metrics
        self.queues: dict[str, list[_Waiter]] = {}
        self._seq = itertools.count()
        self._poked = False

    # --- a request's side ------------------------------------------------------------
    async def acquire(self, exchange: Exchange, group: Group) -> Deployment | None:
        """A deployment of `group` with a slot claimed for `exchange`; None when the group
        has nothing usable left for it (or spills). Raises 429 (queue full) or 504."""
        while True:
            usable = self._usable(exchange, group)
            if not usable:
                return None
            chosen = self._claim(exchange, group, usable)
            if chosen is not None:
                return chosen
            policy = self.policy_for(group.alias)
            queue = self.queues.setdefault(group.alias, [])
            if len(queue) >= policy.queue_size:
                if policy.spill:
                    exchange.note(group.alias, "every deployment busy and the queue full: spilled")
                    return None
                self.metrics.queue_rejected(group.alias)
                raise RateLimited(
                    f"every deployment of {group.alias!r} is busy and {len(queue)} requests "
                    "are already waiting; retry shortly",
                    retry_after=1.0,
                    code="queue_full",
                )
            result = await self._wait(exchange, group, queue)
            if result is not None:
                return result

    async def _wait(
        self, exchange: Exchange, group: Group, queue: list[_Waiter]
    ) -> Deployment | None:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(exchange, group, next(self._seq), time.perf_counter(),
                         loop.create_future())  # fmt: skip
        queue.append(waiter)
        self.metrics.queue_depth(group.alias, len(queue))
        handed: Deployment | None = None
        try:
            async with asyncio.timeout(exchange.deadline.remaining()):
                handed = await waiter.future
        except TimeoutError:
            raise DeadlineExceeded(
                f"waited {time.perf_counter() - waiter.since:.1f}s for a free deployment of "
                f"{group.alias!r} (every one at its limit) until the request's deadline",
                code="queue_timeout",
            ) from None
        finally:
            future = waiter.future
            if not future.done():
                future.cancel()
            elif handed is None and not future.cancelled():
                late = future.result()
                if late is not None:
                    late.release()  # handed a slot as it was leaving: give it back
            queue.remove(waiter)
            self.metrics.queue_depth(group.alias, len(queue))
            self.metrics.queue_wait(group.alias, time.perf_counter() - waiter.since)
        return handed

    # --- choosing --------------------------------------------------------------------
    def _usable(self, exchange: Exchange, group: Group) -> list[Deployment]:
        usable = []
        for deployment in group.deployments:
            if deployment.id in exchange.tried:
                continue
            if deployment.server.name in exchange.unreachable:
                exchange.note(deployment.id, f"{deployment.server.name} refused to connect")
                continue
            if deployment.usable:
                usable.append(deployment)
            else:
                exchange.note(deployment.id, deployment.why_not_usable())
        return usable

    def _claim(
        self, exchange: Exchange, group: Group, usable: Sequence[Deployment]
    ) -> Deployment | None:
        free = [d for d in usable if d.has_capacity]
        for deployment in self.balancer.order(free, exchange.affinity, group.weights):
            if deployment.claim():
                return deployment
        return None

    # --- when something changes ------------------------------------------------------
    def released(self, _: Deployment) -> None:
        self._dispatch()

    def poke(self) -> None:
        """Availability changed somewhere (probe, breaker, drain): look again, soon."""
        if self._poked or not any(self.queues.values()):
            return
        self._poked = True
        try:
            asyncio.get_running_loop().call_soon(self._dispatch)
        except RuntimeError:  # no loop (a table built outside the app): nothing waits
            self._poked = False

    def _dispatch(self) -> None:
        self._poked = False
        waiting = sorted(
            (w for queue in self.queues.values() for w in queue if not w.future.done()),
            key=lambda w: w.order,
        )
        for waiter in waiting:
            usable = self._usable(waiter.exchange, waiter.group)
            if not usable:
                waiter.future.set_result(None)  # its group is out: on to the next one
                continue
            chosen = self._claim(waiter.exchange, waiter.group, usable)
            if chosen is not None:
                waiter.future.set_result(chosen)

    def depth(self, alias: str) -> int:
        return len(self.queues.get(alias, ()))
