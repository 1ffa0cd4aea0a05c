"""What the stack commands show, drawn from the typed state: pure functions, no I/O.

Each takes what it shows (a `StackState`, an operation's answer) and the time where the
time matters, and returns a rich renderable or a line; the commands print them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Column, Table

from localsuite.cli.watch import GATEWAY, RAG, Rates, Snapshot, outcomes, rates
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


# --- status --watch ------------------------------------------------------------------------
CIRCUIT_COLOURS = {"closed": "green", "half_open": "yellow", "open": "red"}
SERVER_COLOURS = {"ready": "green", "loading": "yellow", "down": "red"}
NONE = "-"


def watch_view(current: Snapshot, previous: Snapshot | None, now: float) -> Group:
    """`status --watch`'s frame at wall time `now`: the services, the gateway's requests,
    deployments and servers, rag's work; rates are over the time since `previous`."""
    per_second = rates(previous, current) if previous is not None else None
    parts: list[RenderableType] = [_watch_header(current, per_second, now),
                                   _services(current)]  # fmt: skip
    if current.runs(GATEWAY):
        if current.gateway_up:
            parts += [_requests(current, per_second), _deployments(current), _servers(current)]
        else:
            parts.append(f"[red]{GATEWAY} does not answer: no requests, circuits or servers[/red]")
    if current.runs(RAG):
        parts.append(_rag(current))
    return Group(*parts)


def _watch_header(current: Snapshot, per_second: Rates | None, now: float) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    stack = current.stack
    head = f"[bold]localsuite[/bold] {clock}"
    if stack is not None:
        head += f" · preset {stack.preset} · supervisor pid {stack.supervisor_pid}"
    if per_second is not None:
        head += f" · rates over the last {per_second.seconds:.1f}s"
    if current.supervisor_error is not None:
        head += f"\n[red]the supervisor does not answer ({escape(current.supervisor_error)})[/red]"
    return head


def _services(current: Snapshot) -> Table:
    table = Table("service", "state", "health", "restarts", "note", title="services")
    known = current.stack.services if current.stack is not None else {}
    for s in current.services:
        state = ""
        if s.state is not None:
            colour = STATE_COLOURS.get(s.state, OTHER_COLOUR)
            state = f"[{colour}]{s.state.value}[/{colour}]"
        held = known.get(s.name)
        # not up yet (starting, or waiting for its dependencies): no answer is expected
        coming = held is not None and (
            held.state is ProcessState.STARTING or bool(held.waiting_for)
        )
        if not s.answered:
            health = "[yellow]not yet[/yellow]" if coming else "[red]down[/red]"
        elif s.healthy:
            health = "[green]ok[/green]"
        else:
            health = f"[yellow]{s.status}[/yellow]"
        said = note(held) if held is not None else ""
        why = (said or s.problem) if coming else (s.problem or said)
        table.add_row(s.name, state, health, str(s.restarts), escape(why[:NOTE_WIDTH]))
    return table


def _requests(current: Snapshot, per_second: Rates | None) -> Table:
    seen = outcomes(current.requests)
    table = Table("alias", *seen, "req/s", "failed/s", "failovers", "queue", "ttft p50",
                  "ttft mean", title="requests (since the gateway started)")  # fmt: skip
    for alias in current.aliases():
        first = current.first_token.get(alias)
        table.add_row(
            alias,
            *(_count(current.requests.get((alias, o), 0.0)) for o in seen),
            _rate(per_second.requests.get(alias, 0.0) if per_second else None),
            _rate(per_second.failed.get(alias, 0.0) if per_second else None),
            _count(current.failovers.get(alias, 0.0)),
            _count(current.queues.get(alias, 0.0)),
            _seconds(first.quantile(0.5) if first else None),
            _seconds(first.mean if first else None),
        )
    return table


def _deployments(current: Snapshot) -> Table:
    table = Table("deployment", "server", "circuit", "in flight", "attempts", "last error",
                  title="deployments")  # fmt: skip
    names = dict.fromkeys([*current.deployments, *(d for d, _ in current.attempts)])
    for name in names:
        info = current.deployments.get(name, {})
        circuit = str(info.get("circuit", ""))
        colour = CIRCUIT_COLOURS.get(circuit, OTHER_COLOUR)
        attempts = ", ".join(f"{result} {_count(n)}" for (d, result), n
                             in sorted(current.attempts.items()) if d == name)  # fmt: skip
        table.add_row(
            name,
            str(info.get("server", "")),
            f"[{colour}]{circuit}[/{colour}]" if circuit else "",
            str(info.get("in_flight", "")),
            attempts,
            _first_line(info.get("last_error")),
        )
    return table


def _servers(current: Snapshot) -> Table:
    table = Table("server", "state", "in flight", "probe", "last error", title="servers")
    for name, info in current.servers.items():
        state = str(info.get("state", ""))
        if info.get("draining"):
            state += " (draining)"
        colour = SERVER_COLOURS.get(str(info.get("state")), OTHER_COLOUR)
        latency = info.get("latency_ms")
        table.add_row(
            name,
            f"[{colour}]{state}[/{colour}]",
            str(info.get("in_flight", "")),
            NONE if latency is None else f"{latency:.0f}ms",
            _first_line(info.get("last_error")),
        )
    return table


def _rag(current: Snapshot) -> str:
    if not current.rag_up:
        return "[red]rag does not answer: no queries, jobs or dependencies[/red]"
    queries = ", ".join(f"{o} {_count(n)}" for o, n in sorted(current.rag_queries.items()))
    jobs = ", ".join(f"{s} {_count(n)}" for s, n in sorted(current.rag_jobs.items()))
    deps = ", ".join(f"{name} {'[green]up[/green]' if up else '[red]down[/red]'}"
                     for name, up in sorted(current.rag_dependencies.items()))  # fmt: skip
    return f"rag · queries: {queries or 'none'} · jobs: {jobs or 'none'} · {deps}"


def _count(n: float) -> str:
    return f"{n:.0f}"


def _rate(per_second: float | None) -> str:
    return NONE if per_second is None else f"{per_second:.2f}"


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    return f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.1f}s"


def _first_line(text: object) -> str:
    return escape(str(text).splitlines()[0][:NOTE_WIDTH]) if text else ""
