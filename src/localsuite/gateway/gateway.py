"""What the gateway's routes share: the live table, admission, the engine, the relay.

Writers: each server's probe writes its health; each deployment's attempts write its
breaker; admission hands out slots; a reload swaps the table (and its engine) whole.
Everything that changes availability pokes admission, so queued requests look again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

import aiohttp

from localsuite.core.breaker import BreakerState, CircuitBreaker
from localsuite.core.errors import InvalidRequest, NotFound, ServiceUnavailable
from localsuite.core.failures import dependency_error
from localsuite.core.health import Check, HealthReport
from localsuite.core.http import ErrorAnswer, bearer, create_session, translate_errors
from localsuite.core.metrics import GatewayMetrics, new_registry
from localsuite.core.retry import RetryPolicy
from localsuite.core.settings import Settings
from localsuite.core.tracing import Tracing
from localsuite.gateway.admission import Admission
from localsuite.gateway.balance import Affinity, Balancer
from localsuite.gateway.config import AliasPolicy, RoutingConfig, ServerSpec
from localsuite.gateway.engine import Attempt, Engine, Exchange
from localsuite.gateway.relay import REQUEST_ID, Relay
from localsuite.gateway.routing import Table, build_table
from localsuite.gateway.servers import Health, Server

log = logging.getLogger("localsuite.gateway")

STATES_REMEMBERED = 10_000
BACKEND_HEADER = "x-localsuite-backend"
DEPLOYMENT_HEADER = "x-localsuite-deployment"
ATTEMPTS_HEADER = "x-localsuite-attempts"


class Gateway:
    def __init__(
        self, settings: Settings, routing: RoutingConfig, tracing: Tracing | None = None
    ) -> None:
        self.settings = settings
        self.tracing = tracing or Tracing.from_settings(settings, "api-gateway")
        self.timeouts = settings.llm_timeouts
        self.registry = new_registry()
        self.metrics = GatewayMetrics(self.registry)
        self.affinity = Affinity(settings.gateway_affinity_entries)
        # response id → the deployment that holds it; kept even with affinity off
        self.states = Affinity(settings.gateway_affinity_entries or STATES_REMEMBERED)
        self.admission = Admission(Balancer(self.affinity), self._alias_policy, self.metrics)
        self.table = self._build(routing, None)
        self.engine = self._engine(self.table)
        self.session: aiohttp.ClientSession | None = None
        self._relay: Relay | None = None

    # --- building ----------------------------------------------------------------------
    def _build(self, routing: RoutingConfig, previous: Table | None) -> Table:
        policy = routing.policy

        def new_breaker(deployment: str) -> CircuitBreaker:
            breaker = CircuitBreaker(
                failure_threshold=policy.allowed_fails,
                cooldown=policy.cooldown,
                on_change=functools.partial(self._breaker_changed, deployment),
            )
            self.metrics.breaker_changed(deployment, breaker.state)
            return breaker

        table = build_table(routing, previous, self._new_server, new_breaker,
                            self.admission.released)  # fmt: skip
        for server in table.servers.values():
            self.metrics.probe_result(server.name, server.health is Health.READY)
        for alias in routing.routes:
            groups = table.groups_of([alias])
            self.metrics.declare(alias, [d.id for g in groups for d in g.deployments])
        return table

    def _new_server(self, spec: ServerSpec) -> Server:
        return Server(
            spec,
            probe_interval=self.settings.gateway_probe_interval,
            probe_timeout=self.settings.gateway_probe_timeout,
            on_change=self._server_changed,
        )

    def _engine(self, table: Table) -> Engine:
        backoff = self.settings.gateway_retry_backoff
        policy = RetryPolicy(attempts=1 + table.config.policy.num_retries, wait_min=backoff,
                             wait_max=backoff * 8)  # fmt: skip
        return Engine(table, self.admission, self.metrics, policy, self.timeouts.total)

    def _alias_policy(self, alias: str) -> AliasPolicy:
        return self.table.config.policy.alias(alias)

    def _server_changed(self, server: Server) -> None:
        self.metrics.probe_result(server.name, server.health is Health.READY)
        self.admission.poke()

    def _breaker_changed(self, deployment: str, state: BreakerState) -> None:
        self.metrics.breaker_changed(deployment, state)
        self.admission.poke()

    # --- life --------------------------------------------------------------------------
    @property
    def relay(self) -> Relay:
        if self._relay is None:
            raise ServiceUnavailable("the gateway is starting")
        return self._relay

    async def start(self) -> None:
        self.session = create_session(connect_timeout=self.timeouts.connect)
        self._relay = Relay(self.session, self.timeouts, self.metrics)
        await self._start_servers(list(self.table.servers.values()))

    async def _start_servers(self, servers: list[Server]) -> None:
        assert self.session is not None
        # One probe round before serving, so the first requests know who is up.
        await asyncio.gather(*(s.probe(self.session) for s in servers))
        for server in servers:
            server.start(self.session)

    async def stop(self) -> None:
        for server in self.table.servers.values():
            await server.stop()
        if self.session is not None:
            await self.session.close()
        self.tracing.shutdown()

    def reload(self, routing: RoutingConfig) -> dict[str, Any]:
        """Swap in a table for `routing`; what did not change keeps its state."""
        old = self.table
        table = self._build(routing, old)
        self.table, self.engine = table, self._engine(table)
        added = [s for name, s in table.servers.items() if old.servers.get(name) is not s]
        removed = [s for name, s in old.servers.items() if table.servers.get(name) is not s]
        for server in removed:
            asyncio.get_running_loop().create_task(server.stop())
        if self.session is not None and added:
            asyncio.get_running_loop().create_task(self._start_servers(added))
        log.info("routing table reloaded from %s: %d aliases, %d deployments (%d servers new, "
                 "%d gone)", routing.source, len(routing.routes), len(table.deployments),
                 len(added), len(removed))  # fmt: skip
        self.admission.poke()
        return {
            "source": routing.source,
            "aliases": table.describe_routes(),
            "servers_added": [s.name for s in added],
            "servers_removed": [s.name for s in removed],
            "ignored_keys": list(routing.ignored_keys),
        }

    # --- lookups -----------------------------------------------------------------------
    def resolve_alias(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("`model` is required: a model alias string", param="model",
                                 code="missing_model")  # fmt: skip
        config = self.table.config
        alias = config.resolve(model)
        if alias is None:
            raise NotFound(
                f"model {model!r} does not exist; available: {', '.join(config.model_names)}",
                code="model_not_found",
                param="model",
            )
        return alias

    def server(self, name: str) -> Server:
        server = self.table.servers.get(name)
        if server is None:
            raise NotFound(
                f"no backend {name!r}; backends: {', '.join(self.table.servers)}",
                code="backend_not_found",
            )
        return server

    def served_headers(self, attempt: Attempt, attempts: int) -> dict[str, str]:
        deployment = attempt.deployment
        return {
            BACKEND_HEADER: deployment.server.name,
            DEPLOYMENT_HEADER: deployment.id,
            ATTEMPTS_HEADER: str(attempts),
        }

    def remember(self, exchange: Exchange, response_id: str | None) -> None:
        """Where a response's state lives, for a later `previous_response_id`."""
        if response_id and exchange.served_by is not None:
            self.states.pin(response_id, exchange.served_by.id)

    def models(self) -> dict[str, Any]:
        created = int(time.time())
        config = self.table.config
        data = []
        for name in config.model_names:
            alias = config.resolve(name) or name
            deployments = self.table.deployments_of(alias)
            servers = list(dict.fromkeys(d.server.name for d in deployments))
            data.append({"id": name, "object": "model", "created": created,
                         "owned_by": "localsuite", "backends": servers,
                         "deployments": [d.id for d in deployments]})  # fmt: skip
        return {"object": "list", "data": data}

    async def health(self) -> HealthReport:
        table = self.table
        checks = []
        fallbacks = table.config.policy.fallbacks
        for alias in table.config.routes:
            candidates = [d for a in (alias, *fallbacks.get(alias, ()))
                          for d in table.deployments_of(a)]  # fmt: skip
            serving = list(dict.fromkeys(d.id for d in candidates if d.usable))
            why = "; ".join(f"{d.id}: {d.why_not_usable()}" for d in candidates)
            checks.append(Check(f"alias:{alias}", bool(serving),
                                detail=f"served by {', '.join(serving)}" if serving
                                else f"no backend up ({why})"))  # fmt: skip
        info = {
            "backends": {name: s.describe() for name, s in table.servers.items()},
            "deployments": {d_id: d.describe() for d_id, d in table.deployments.items()},
            "queues": {a: self.admission.depth(a) for a in table.config.routes},
        }
        hint = min((s.next_probe_in() for s in table.servers.values()), default=1.0)
        return HealthReport("api-gateway", tuple(checks), info, retry_after=max(1.0, hint))

    # --- embeddings ----------------------------------------------------------------------
    async def forward_embeddings(self, raw: bytes, request_id: str) -> tuple[bytes, int, str]:
        settings = self.settings
        session = self.session
        if session is None:
            raise ServiceUnavailable("the gateway is starting")
        url = f"{settings.embedding_service_url}/v1/embeddings"
        headers = {"Content-Type": "application/json", REQUEST_ID: request_id,
                   **bearer(settings.api_key)}  # fmt: skip
        try:
            with translate_errors("the embedding service"):
                async with (
                    asyncio.timeout(settings.embedding_timeout),
                    session.post(url, data=raw, headers=headers) as response,
                ):
                    body = await response.read()
                    status = response.status
                    content_type = response.headers.get("Content-Type", "application/json")
        except Exception as exc:
            raise dependency_error(
                "the embedding service",
                exc,
                hint=f"is it running at {settings.embedding_service_url}? "
                "`localsuite up --preset p2` starts it",
                code="embedding_unavailable",
            ) from exc
        if status >= 400:
            raise dependency_error(
                "the embedding service", ErrorAnswer(status, body), code="embedding_unavailable"
            )
        return body, status, content_type
