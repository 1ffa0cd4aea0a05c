"""Which of several equal deployments takes a request: least outstanding, and affinity.

Deployments of one priority group share the load. A request goes to the less loaded of
two candidates (power of two choices; load = attempts in flight / weight): nearly as good
as looking at all of them, and no herd on the one that looked idlest.

A conversation goes back to the deployment that served it, whose prompt cache holds it
(its KV cache: the next turn's prompt is mostly the last one), while that deployment is
in the group's free candidates and not far over its share. Its identity is a session
header (`x-session-id`), the protocol's user field, or else a hash of its opening (system
prompt and first user turn): never a fixed-length prefix, so conversations that share a
long system prompt still spread. When its deployment is gone or full, the two candidates
are the conversation's own (rendezvous hashing on its key), so it moves to one replica,
deterministically, and re-warms one cache. The pins are an LRU of bounded size.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from localsuite.gateway.deployments import Deployment


class Affinity:
    """conversation → the deployment that last served it; the oldest are forgotten."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pins: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        found = self._pins.get(key)
        if found is not None:
            self._pins.move_to_end(key)
        return found

    def pin(self, key: str, deployment: str) -> None:
        if self.size <= 0:
            return
        self._pins[key] = deployment
        self._pins.move_to_end(key)
        while len(self._pins) > self.size:
            self._pins.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pins)


def _score(key: str, deployment: str, weight: float) -> float:
    """Weighted rendezvous hashing: the highest score wins, the same for every call."""
    digest = hashlib.blake2b(f"{key}\x00{deployment}".encode(), digest_size=8).digest()
    uniform = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)
    return -weight / math.log(uniform)


class Balancer:
    def __init__(self, affinity: Affinity, rng: random.Random | None = None) -> None:
        self.affinity = affinity
        self.rng = rng or random.Random()

    def order(
        self, free: Sequence[Deployment], key: str | None, weights: Mapping[str, float]
    ) -> list[Deployment]:
        """Free deployments in the order to try them (the first that claims a slot wins).

        `weights`: each deployment's share in its group (missing: 1)."""
        if len(free) <= 1:
            return list(free)

        def load(d: Deployment) -> float:
            return d.in_flight / weights.get(d.id, 1.0)

        if key is not None:
            pinned = self.affinity.get(key)
            ranked = sorted(
                free, key=lambda d: _score(key, d.id, weights.get(d.id, 1.0)), reverse=True
            )
            first = next((d for d in ranked if d.id == pinned), None)
            least = min(load(d) for d in free)
            if first is not None and load(first) < 2 * least + 2:  # not far over its share
                return [first, *(d for d in ranked if d is not first)]
            pair, rest = ranked[:2], ranked[2:]
        else:
            pair = self._two(free, weights)
            rest = [d for d in free if d not in pair]
        pair.sort(key=load)  # stable: ties keep the hash's (or the draw's) order
        return [*pair, *rest]

    def served(self, key: str | None, deployment: Deployment) -> None:
        if key is not None:
            self.affinity.pin(key, deployment.id)

    def _two(self, free: Sequence[Deployment], weights: Mapping[str, float]) -> list[Deployment]:
        shares = [weights.get(d.id, 1.0) for d in free]
        first = self.rng.choices(range(len(free)), shares)[0]
        others = [i for i in range(len(free)) if i != first]
        second = self.rng.choices(others, [shares[i] for i in others])[0]
        return [free[first], free[second]]
