"""Service definitions and presets: what the supervisor runs, on which port, after what.

The one-machine equivalent of the original suite's compose file:

    service         command                                 ready check    depends_on
    inference-chat  llama-server --model CHAT_MODEL ...     /health        -
    inference-code  llama-server --model CODE_MODEL ...     /health        -
    api-gateway     python -m localsuite serve api-gateway  /health/live   any inference-*
    embedding       python -m localsuite serve embedding    /health        -
    rag             python -m localsuite serve rag          /health        embedding, api-gateway
    mcp-server      python -m localsuite serve mcp-server   /health        api-gateway, rag

Once ready, a Python service is checked on `/health/live` (liveness): a rag whose
embedding service is down is not cured by a restart.
llama-server's `/health` answers 503 while it loads its model and 200 once it can
generate. The gateway is ready as soon as it serves: its own `/health` reports its
backends, which the supervisor already watches. Presets follow the spec: `p1` =
inference-chat + api-gateway; `p2` = p1 + inference-code + embedding + rag; `p3` = p2 +
mcp-server (the default).

A spec is one process. Several processes may run one service (replicas, each on its own
port): their specs share a `group`, the service's name, which is what `depends_on`
names. A spec of a service run once has its own name as its group. `CHAT_REPLICAS=N`
runs inference-chat N times: `inference-chat` on INFERENCE_PORT, `inference-chat-2` ...
on `CHAT_REPLICA_PORTS` (8101-8116 by default, no service's port); the gateway's
default routing shares chat-7b's load between them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from localsuite.core.auth import refuse_exposure
from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.inference.command import INFERENCE_SERVICES, inference_plan
from localsuite.inference.registry import ModelRegistry
from localsuite.supervisor.health import HealthCheck

PRESETS: dict[str, tuple[str, ...]] = {
    "p1": ("inference-chat", "api-gateway"),
    "p2": ("inference-chat", "inference-code", "embedding", "rag", "api-gateway"),
    "p3": ("inference-chat", "inference-code", "embedding", "rag", "api-gateway", "mcp-server"),
}
DEFAULT_PRESET = "p3"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    argv: list[str]
    port: int
    health: HealthCheck
    depends_on: tuple[str, ...] = ()
    # True: one ready dependency is enough (the gateway serves with either backend).
    any_dependency: bool = False
    model: str | None = None  # the registry name a llama-server serves
    env: dict[str, str] = field(default_factory=dict)
    group: str = ""  # the service this process is an instance of; "" (default): `name`

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", self.name)  # frozen: set once, here

    @property
    def is_inference(self) -> bool:
        return self.group in INFERENCE_SERVICES


@dataclass(frozen=True, slots=True)
class _PythonService:
    port: Callable[[Settings], int]
    depends_on: tuple[str, ...]
    start_period: Callable[[Settings], float]
    ready_path: str = "/health"
    any_dependency: bool = False


_PYTHON_SERVICES: dict[str, _PythonService] = {
    "api-gateway": _PythonService(
        lambda s: s.api_gateway_port,
        INFERENCE_SERVICES,
        lambda s: s.supervisor_start_period,
        ready_path="/health/live",
        any_dependency=True,
    ),
    "embedding": _PythonService(lambda s: s.embedding_port, (), lambda s: s.embedding_start_period),
    "rag": _PythonService(
        lambda s: s.rag_port, ("embedding", "api-gateway"), lambda s: s.supervisor_start_period
    ),
    "mcp-server": _PythonService(
        lambda s: s.mcp_port, ("api-gateway", "rag"), lambda s: s.supervisor_start_period
    ),
}


def health_check(
    settings: Settings, url: str, start_period: float, live_url: str | None = None
) -> HealthCheck:
    return HealthCheck(
        url=url,
        start_period=start_period,
        interval=settings.supervisor_health_interval,
        timeout=settings.supervisor_health_timeout,
        retries=settings.supervisor_health_retries,
        start_interval=settings.supervisor_start_interval,
        live_url=live_url,
    )


def replica_name(group: str, number: int) -> str:
    """`inference-chat`, then `inference-chat-2`, ...: the names the gateway's default
    routing gives the same servers (`Settings.chat_backends`)."""
    return group if number == 1 else f"{group}-{number}"


def _replica(name: str) -> tuple[str, int]:
    for group in INFERENCE_SERVICES:
        if name == group:
            return group, 1
        suffix = name.removeprefix(f"{group}-")
        if suffix != name and suffix.isdigit() and int(suffix) >= 2:
            return group, int(suffix)
    raise ConfigError(f"{name!r} is not an inference service or one of its replicas")


def inference_spec(
    name: str, settings: Settings, registry: ModelRegistry, model: str | None = None
) -> ServiceSpec:
    """A llama-server process (`inference-chat`, or its replica `inference-chat-N` on the
    N-1th port of `CHAT_REPLICA_PORTS`); `model` (a registry name) overrides the settings'."""
    group, number = _replica(name)
    port = None
    if number > 1:
        ports = settings.replica_ports
        if number - 2 >= len(ports):
            raise ConfigError(
                f"{name} needs a port: CHAT_REPLICA_PORTS={settings.chat_replica_ports!r} lists "
                f"{len(ports)}"
            )
        port = ports[number - 2]
    plan = inference_plan(group, settings, registry, model=model, port=port)
    url = f"{settings.local_url(plan.port)}/health"
    return ServiceSpec(
        name,
        plan.argv,
        plan.port,
        health_check(settings, url, settings.inference_start_period),
        model=plan.model.name,
        group=group,
    )


def _service_ports(settings: Settings) -> dict[int, str]:
    return {
        settings.api_gateway_port: "api-gateway",
        settings.inference_port: "inference-chat",
        settings.rag_port: "rag",
        settings.embedding_port: "embedding",
        settings.inference_code_port: "inference-code",
        settings.mcp_port: "mcp-server",
        settings.supervisor_port: "the supervisor",
    }


def _replicas(settings: Settings, registry: ModelRegistry) -> list[ServiceSpec]:
    """inference-chat and its `CHAT_REPLICAS - 1` replicas, on ports no service has."""
    taken = _service_ports(settings)
    specs = []
    for number in range(1, settings.chat_replicas + 1):
        spec = inference_spec(replica_name("inference-chat", number), settings, registry)
        if number > 1 and spec.port in taken:
            raise ConfigError(
                f"CHAT_REPLICA_PORTS gives {spec.name} port {spec.port}, which is "
                f"{taken[spec.port]}'s: choose ports no service of the suite uses"
            )
        specs.append(spec)
    return specs


def python_spec(name: str, settings: Settings, present: Iterable[str]) -> ServiceSpec:
    """A Python service run by `localsuite serve`; dependencies outside `present` are dropped."""
    known = _PYTHON_SERVICES[name]
    port = known.port(settings)
    base = settings.local_url(port)
    ready = f"{base}{known.ready_path}"
    live = f"{base}/health/live"
    present = set(present)
    return ServiceSpec(
        name,
        [sys.executable, "-m", "localsuite", "serve", name],
        port,
        health_check(
            settings, ready, known.start_period(settings), live if live != ready else None
        ),
        depends_on=tuple(d for d in known.depends_on if d in present),
        any_dependency=known.any_dependency,
    )


def build_services(settings: Settings, preset: str) -> list[ServiceSpec]:
    """The preset's services in start order."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    refuse_exposure(settings, "the stack")  # before anything starts
    present = PRESETS[preset]
    registry = ModelRegistry(settings.models_dir)
    specs: dict[str, ServiceSpec] = {}
    for name in present:
        if name == "inference-chat":
            specs.update((s.name, s) for s in _replicas(settings, registry))
        elif name in INFERENCE_SERVICES:
            specs[name] = inference_spec(name, settings, registry)
        else:
            specs[name] = python_spec(name, settings, present)
    order = start_order({n: s.depends_on for n, s in specs.items()})
    return [specs[name] for name in order]


def start_order(graph: dict[str, Iterable[str]]) -> list[str]:
    """Dependencies first (stable for ties); a cycle is refused, naming it."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name) :], name]
            raise ConfigError(f"service dependencies form a cycle: {' -> '.join(cycle)}")
        if name not in graph:
            raise ConfigError(f"{path[-1] if path else name!r} depends on unknown {name!r}")
        state[name] = "visiting"
        for dep in graph[name]:
            visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in graph:
        visit(name, [])
    return order


def waves(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The services of `graph` (name: what it depends on, in start order) in waves to
    stop one after the other, dependents first; the services of a wave stop at once."""
    depth: dict[str, int] = {}
    for name, depends_on in graph.items():  # dependencies already have their depth
        depth[name] = 1 + max((depth.get(d, 0) for d in depends_on), default=-1)
    levels = sorted(set(depth.values()), reverse=True)
    return [[name for name, d in depth.items() if d == level] for level in levels]


def stop_waves(specs: Iterable[ServiceSpec]) -> list[list[str]]:
    """The processes of `specs` (in start order) in stop waves: replicas stop together."""
    specs = list(specs)
    graph = {spec.group: spec.depends_on for spec in specs}
    return [[s.name for s in specs if s.group in wave] for wave in waves(graph)]
