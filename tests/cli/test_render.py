"""What the stack commands show, from a hand-made `StackState`: pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console, RenderableType

from localsuite.cli import render
from localsuite.core.stack import HealthStatus, ProcessState, ServiceState, StackState

NOW = 1_000_000.0


def service(state: ProcessState, **kw: Any) -> ServiceState:
    values: dict[str, Any] = {"port": 8000, "health_url": "http://h/health", "log": "x.log"}
    return ServiceState(state=state, **{**values, **kw})


def stack(**services: ServiceState) -> StackState:
    return StackState(supervisor_pid=1, preset="p1", written_at=NOW, services=services)


def text(renderable: RenderableType) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def row(table_text: str, name: str) -> str:
    return next(line for line in table_text.splitlines() if f" {name} " in line)


def test_the_table_shows_each_service_with_its_uptime_model_and_note() -> None:
    state = stack(
        chat=service(
            ProcessState.READY, pid=42, health=HealthStatus.HEALTHY, started_at=NOW - 150,
            model="small.gguf", restarts=2,
        ),
        gateway=service(ProcessState.STOPPED, waiting_for=["chat", "code"]),
        rag=service(ProcessState.FAILED, last_error="exited with status 3\nmore", crashes=5),
        mcp=service(ProcessState.STARTING, operation="switching to other.gguf",
                    health=HealthStatus.STARTING, started_at=NOW - 5),
    )  # fmt: skip
    shown = text(render.stack_table(state, NOW))
    assert row(shown, "chat").split() == [
        "│", "chat", "│", "ready", "│", "42", "│", "8000", "│", "healthy", "│", "2", "│",
        "2m", "│", "small", "│", "│",
    ]  # fmt: skip
    assert "waiting for chat, code" in row(shown, "gateway")
    assert "exited with status 3" in row(shown, "rag") and "more" not in shown
    assert "switching to other.gguf" in row(shown, "mcp")
    assert "5s" not in row(shown, "mcp")  # uptime is for ready services


def test_a_long_error_is_cut_in_the_note() -> None:
    state = stack(svc=service(ProcessState.STOPPED, last_error="x" * 300))
    assert render.note(state.services["svc"]) == "x" * render.NOTE_WIDTH


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (119.9, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h00m"), (7260, "2h01m")],
)
def test_durations(seconds: float, shown: str) -> None:
    assert render.duration(seconds) == shown


def test_the_spinner_line_and_the_failures() -> None:
    state = stack(
        a=service(ProcessState.READY),
        b=service(ProcessState.STARTING),
        c=service(ProcessState.FAILED, last_error="boom", log_tail="line 1\nline 2"),
    )
    assert render.starting(state) == "starting services… 1/3 ready (b, c)"
    assert render.failures(state) == ["[red]c:[/red] boom\nline 1\nline 2"]


@pytest.mark.parametrize(
    ("done", "says"),
    [
        ({"changed": False, "model": "m.gguf"}, "chat already serves m.gguf"),
        (
            {"changed": True, "model": "n.gguf", "previous_model": "m.gguf", "seconds": 3.21,
             "drained": True},
            "chat now serves n.gguf (was m.gguf; 3.2s; requests went to the other backend "
            "meanwhile)",
        ),
    ],
)  # fmt: skip
def test_the_switch_message(done: dict[str, Any], says: str) -> None:
    assert render.switched("chat", done) == says


def test_the_restart_message() -> None:
    done = {"pid": 7, "seconds": 1.25, "drained": True}
    assert render.restarted("chat", done) == (
        "chat restarted: pid 7, ready in 1.2s; drained at the gateway first"
    )
