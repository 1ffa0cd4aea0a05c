"""What the stack commands show, drawn from the typed state: pure functions, no I/O.

Each takes what it shows (a `StackState`, an operation's answer) and the time where the
time matters, and returns a rich renderable or a line; the commands print them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Column, Table

from localsuite.core.stack import HealthStatus, ProcessState, ServiceState, StackState
from localsuite.inference.registry import ModelEntry

STATE_COLOURS = {ProcessState.READY: "green", ProcessState.FAILED: "red",
                 ProcessState.STOPPED: "dim"}  # fmt: skip
HEALTH_COLOURS = {HealthStatus.HEALTHY: "green", HealthStatus.UNHEALTHY: "red"}
OTHER_COLOUR = "yellow"  # a state on its way somewhere: starting, stopping
NOTE_WIDTH = 80


def stack_table(state: StackState, now: float) -> Table:
    """Every service: state, pid, port, health, restarts, uptime (at wall time `now`),
    model, and a note (what holds it, what it waits for, why it is down)."""
    table = Table("state", "pid", "port", "health", "restarts", "uptime", "model", "note")
    table.columns.insert(0, Column("service", no_wrap=True))
    for name, s in state.services.items():
        colour = STATE_COLOURS.get(s.state, OTHER_COLOUR)
        health = ""
        if s.health is not None:
            health_colour = HEALTH_COLOURS.get(s.health, OTHER_COLOUR)
            health = f"[{health_colour}]{s.health.value}[/{health_colour}]"
        started = s.started_at if s.state is ProcessState.READY else None
        table.add_row(
            name,
            f"[{colour}]{s.state.value}[/{colour}]",
            str(s.pid or ""),
            str(s.port),
            health,
            str(s.restarts),
            "" if started is None else duration(now - started),
            (s.model or "").removesuffix(".gguf"),
            note(s),
        )
    return table


def note(service: ServiceState) -> str:
    if service.operation:
        return service.operation
    if service.waiting_for:
        return f"waiting for {', '.join(service.waiting_for)}"
    if service.state is not ProcessState.READY and service.last_error:
        return service.last_error.splitlines()[0][:NOTE_WIDTH]
    return ""


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def starting(state: StackState) -> str:
    """The spinner's line while a detached stack comes up."""
    ready = state.in_state(ProcessState.READY)
    pending = ", ".join(n for n in state.services if n not in ready)
    return f"starting services… {len(ready)}/{len(state.services)} ready ({pending})"


def failures(state: StackState) -> list[str]:
    """A paragraph for each failed service: why, and its last log lines."""
    return [
        f"[red]{name}:[/red] {info.last_error}\n{info.log_tail}"
        for name, info in state.in_state(ProcessState.FAILED).items()
    ]


def restarted(service: str, done: Mapping[str, Any]) -> str:
    drained = "; drained at the gateway first" if done.get("drained") else ""
    return f"{service} restarted: pid {done['pid']}, ready in {done['seconds']:.1f}s{drained}"


def switched(service: str, done: Mapping[str, Any]) -> str:
    if not done.get("changed"):
        return f"{service} already serves {done['model']}"
    meanwhile = "; requests went to the other backend meanwhile" if done.get("drained") else ""
    return (
        f"{service} now serves {done['model']} (was {done['previous_model']}; "
        f"{done['seconds']:.1f}s{meanwhile})"
    )


def models_table(entries: Iterable[ModelEntry], serving: Mapping[str, list[str]]) -> Table:
    """The registry; `serving` names the services that serve each model."""
    table = Table("name", "source", "size", "served by")
    for entry in entries:
        table.add_row(
            entry.name,
            entry.source,
            f"{entry.size_bytes / 2**20:.0f} MiB",
            ", ".join(serving.get(entry.name, [])),
        )
    return table
