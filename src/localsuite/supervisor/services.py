"""Service definitions and presets: what the launcher runs, on which port, after what.

Presets follow the spec: `p1` = inference-chat + api-gateway; `p2` = p1 + inference-code
+ embedding + rag; `p3` = p2 + mcp-server (the default). Services this build does not
have yet are named in the preset and skipped with a notice by the launcher.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.inference.command import inference_plan
from localsuite.inference.registry import ModelRegistry

PRESETS: dict[str, tuple[str, ...]] = {
    "p1": ("inference-chat", "api-gateway"),
    "p2": ("inference-chat", "inference-code", "embedding", "rag", "api-gateway"),
    "p3": ("inference-chat", "inference-code", "embedding", "rag", "api-gateway", "mcp-server"),
}
DEFAULT_PRESET = "p3"
NOT_BUILT_YET = frozenset({"embedding", "rag", "mcp-server"})


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    argv: list[str]
    port: int
    health_url: str
    depends_on: tuple[str, ...] = ()
    # True: one ready dependency is enough (the gateway serves with either backend).
    any_dependency: bool = False
    start_period: float = 120.0  # a large GGUF may load for a minute: not a failure
    model: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def build_services(settings: Settings, preset: str) -> tuple[list[ServiceSpec], list[str]]:
    """The preset's services in start order, and the names this build skips."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    wanted = PRESETS[preset]
    skipped = [name for name in wanted if name in NOT_BUILT_YET]
    present = [name for name in wanted if name not in NOT_BUILT_YET]
    registry = ModelRegistry(settings.models_dir)
    specs: dict[str, ServiceSpec] = {}
    for name in present:
        if name.startswith("inference-"):
            plan = inference_plan(name, settings, registry)
            specs[name] = ServiceSpec(
                name,
                plan.argv,
                plan.port,
                f"{settings.local_url(plan.port)}/health",
                model=plan.model.name,
                start_period=settings.inference_start_period,
            )
        elif name == "api-gateway":
            port = settings.api_gateway_port
            specs[name] = ServiceSpec(
                name,
                [sys.executable, "-m", "localsuite", "serve", "api-gateway"],
                port,
                f"{settings.local_url(port)}/health/live",
                depends_on=tuple(n for n in present if n.startswith("inference-")),
                any_dependency=True,
                start_period=30.0,
            )
    order = start_order({n: s.depends_on for n, s in specs.items()})
    return [specs[name] for name in order], skipped


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
