"""The live routing table: the routing file's servers and deployments as running objects.

A `Table` is built from a `RoutingConfig` and never changed: a reload builds a new one and
swaps it in; requests in flight finish on the table they started with. A reload keeps
the running `Server` (its health, its probe) and `Deployment` (its breaker, its slots)
of everything whose spec did not change, so that it forgets nothing it knew; servers no
longer listed stop being probed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from localsuite.core.breaker import CircuitBreaker
from localsuite.gateway.admission import Group
from localsuite.gateway.config import DeploymentSpec, RoutingConfig, ServerSpec
from localsuite.gateway.deployments import Deployment
from localsuite.gateway.servers import Server

ServerFactory = Callable[[ServerSpec], Server]
BreakerFactory = Callable[[str], CircuitBreaker]
ReleaseHook = Callable[[Deployment], None]


class Table:
    def __init__(
        self,
        config: RoutingConfig,
        servers: Mapping[str, Server],
        deployments: Mapping[str, Deployment],
    ) -> None:
        self.config = config
        self.servers = dict(servers)
        self.deployments = dict(deployments)
        self._groups: dict[str, list[Group]] = {}
        for alias in config.routes:
            self._groups[alias] = [
                Group(
                    alias,
                    tuple(self.deployments[r.deployment] for r in routes),
                    {r.deployment: r.weight for r in routes},
                )
                for routes in config.groups(alias)
            ]

    def groups_of(self, aliases: Iterable[str]) -> list[Group]:
        """The priority groups of each alias in turn."""
        return [group for alias in aliases for group in self._groups.get(alias, ())]

    def single(self, deployment: Deployment) -> Group:
        return Group(f"pinned:{deployment.id}", (deployment,), {deployment.id: 1.0})

    def deployments_of(self, alias: str) -> list[Deployment]:
        return [d for g in self._groups.get(alias, ()) for d in g.deployments]

    def describe_routes(self) -> dict[str, Any]:
        return {
            alias: [[d.id for d in g.deployments] for g in groups]
            for alias, groups in self._groups.items()
        }


def build_table(
    config: RoutingConfig,
    previous: Table | None,
    new_server: ServerFactory,
    new_breaker: BreakerFactory,
    on_release: ReleaseHook,
) -> Table:
    """A table for `config`, keeping what `previous` knew of unchanged servers/deployments."""
    old_servers = previous.servers if previous else {}
    old_deployments = previous.deployments if previous else {}
    servers: dict[str, Server] = {}
    for name, spec in config.servers.items():
        kept = old_servers.get(name)
        servers[name] = kept if kept is not None and kept.spec == spec else new_server(spec)
    for server in servers.values():
        server.deployments = []
        server.lists_models = False
    deployments: dict[str, Deployment] = {}
    for deployment_id, wanted in config.deployments.items():
        server = servers[wanted.server]
        kept_deployment = old_deployments.get(deployment_id)
        if _same(kept_deployment, wanted, server):
            assert kept_deployment is not None
            deployment = kept_deployment
        else:
            deployment = Deployment(wanted, server, new_breaker(deployment_id), on_release)
        server.deployments.append(deployment)
        server.lists_models = server.lists_models or wanted.model is not None
        deployments[deployment_id] = deployment
    return Table(config, servers, deployments)


def _same(deployment: Deployment | None, spec: DeploymentSpec, server: Server) -> bool:
    return deployment is not None and deployment.spec == spec and deployment.server is server
