"""A deployment: one model on one server, the unit that is tried, balanced and broken.

Its state has one writer each:

- the server's probe: whether the server takes requests at all (`Server.routable`), and
  whether the server says this model failed to load (router mode);
- the deployment's own breaker (`core.breaker`), written by the outcomes of the attempts
  sent to it (`gateway.engine.Attempt.record`): a model that answers 5xx, garbage or
  nothing opens its own circuit; its neighbours on the same server stay in rotation;
- its slots: `in_flight` counts the attempts on it, `limit` is how many it may run at
  once (`max_parallel_requests` from the routing file, else the server's slot count from
  llama-server's `/props`, else no limit). A deployment at its limit takes no attempt
  until one ends (`gateway.admission` queues the requests meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localsuite.core.breaker import CircuitBreaker
from localsuite.gateway.config import DeploymentSpec
from localsuite.gateway.outcomes import Outcome
from localsuite.gateway.servers import Server


class Deployment:
    def __init__(
        self,
        spec: DeploymentSpec,
        server: Server,
        breaker: CircuitBreaker,
        on_release: Callable[[Deployment], None],
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.server = server
        self.breaker = breaker
        self.in_flight = 0
        self.served = 0
        self.last_error: str | None = None  # what its last failed attempt met
        self._on_release = on_release

    @property
    def limit(self) -> int | None:
        return self.spec.max_parallel or self.server.slots

    @property
    def load_failure(self) -> str | None:
        if self.spec.model is None:
            return None
        return self.server.failed_models.get(self.spec.model)

    @property
    def usable(self) -> bool:
        """Whether it may get a request now (its slots aside); claims nothing."""
        return self.server.routable and self.load_failure is None and self.breaker.would_allow()

    @property
    def has_capacity(self) -> bool:
        limit = self.limit
        return limit is None or self.in_flight < limit

    def why_not_usable(self) -> str:
        if not self.server.routable:
            return self.server.why_not_routable()
        failure = self.load_failure
        if failure is not None:
            return f"the server says {self.spec.model!r} {failure}"
        return f"circuit {self.breaker.state.value} ({self.last_error or 'recent failures'})"

    def judge(self, outcome: Outcome, detail: str) -> None:
        """An attempt's outcome, for the breaker (the deployment's own failures) and the
        server's probe (asked to look at once when the whole server may be gone)."""
        if outcome.deployment_failure:
            self.breaker.record_failure()
            self.last_error = detail or outcome.value
        elif outcome.answered:
            self.breaker.record_success()
        else:  # unreachable (the server's business), deadline, cancelled: no verdict
            self.breaker.release()
        if outcome.suspicious:
            self.server.nudge()

    def claim(self) -> bool:
        """Take a slot for one attempt; False if the breaker refuses (a trial is out)."""
        if not self.breaker.allow_request():
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1
        self._on_release(self)

    def describe(self) -> dict[str, Any]:
        return {
            "server": self.server.name,
            "model": self.spec.model,
            "circuit": self.breaker.state.value,
            "usable": self.usable,
            "consecutive_failures": self.breaker.consecutive_failures,
            "in_flight": self.in_flight,
            "limit": self.limit,
            "served": self.served,
            "load_failure": self.load_failure,
            "last_error": self.last_error,
        }
