"""Commands that run and operate the stack: up, down, status, logs, restart,
switch-model, models, compose.

`up` runs the supervisor (in this process with a live table, or detached in the
background); every other command talks to a running supervisor through its control
API, found through `DATA_DIR/run/state.json`, so it works from any terminal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

import typer
from rich.live import Live
from rich.table import Column, Table

from localsuite.cli.app import app, console, control_client, err, fail, load_settings
from localsuite.core.errors import ConfigError, LocalSuiteError
from localsuite.core.settings import Settings

STATE_COLOURS = {"ready": "green", "failed": "red", "stopped": "dim"}
HEALTH_COLOURS = {"healthy": "green", "unhealthy": "red"}


@app.command()
def up(
    preset: str = typer.Option("p3", help="p1 | p2 | p3"),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background"),
    wait: float = typer.Option(900.0, help="--detach: most seconds to wait for all healthy"),
    supervise: bool = typer.Option(False, hidden=True, help="The detached supervisor itself"),
) -> None:
    """Start the stack: services in health order, crashed ones restarted."""
    from localsuite.supervisor.client import running_state
    from localsuite.supervisor.control import bind_control_socket
    from localsuite.supervisor.services import build_services
    from localsuite.supervisor.state import snapshot
    from localsuite.supervisor.supervisor import Supervisor

    settings = load_settings()
    running = running_state(settings)
    if running and not supervise:
        raise fail(f"a stack is already running (supervisor pid {running['supervisor_pid']}); "
                    "`localsuite down` stops it")  # fmt: skip
    try:
        specs = build_services(settings, preset)
    except (ConfigError, LocalSuiteError) as exc:
        raise fail(str(exc), 2) from exc
    if detach:
        _detach(settings, preset, wait)
        return
    try:
        sock = bind_control_socket(settings)
    except ConfigError as exc:
        raise fail(str(exc), 2) from exc
    _log_to_file(settings, also_stderr=supervise)
    supervisor = Supervisor(settings, specs, preset=preset)
    if supervise:
        asyncio.run(supervisor.run(sock))
        return
    with Live(_table(snapshot(supervisor)), console=console, auto_refresh=False) as live:
        # No refresh thread: the supervisor forks its services and wants no other thread.
        supervisor.on_change = lambda sup: live.update(_table(snapshot(sup)), refresh=True)
        asyncio.run(supervisor.run(sock))
    if not console.is_terminal:  # a redirected Live leaves its last frame unterminated
        console.line()
    console.print("stopped")


def _log_to_file(settings: Settings, also_stderr: bool) -> None:
    from localsuite.supervisor.state import log_dir

    log_dir(settings).mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = []
    if also_stderr:  # the detached supervisor's stderr is its log file already
        handlers.append(logging.StreamHandler())
    else:
        handlers.append(logging.FileHandler(log_dir(settings) / "supervisor.log"))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
    )


def _detach(settings: Settings, preset: str, wait: float) -> None:
    from localsuite.supervisor.state import log_dir, read_state, state_path

    logs = log_dir(settings)
    logs.mkdir(parents=True, exist_ok=True)
    state_path(settings).unlink(missing_ok=True)
    with (logs / "supervisor.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localsuite", "up", "--preset", preset, "--supervise"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + wait
    with console.status("starting services…") as spinner:
        while True:
            time.sleep(0.2)
            if proc.poll() is not None:
                raise fail(f"the supervisor exited (status {proc.returncode}):\n"
                            f"{_tail(logs / 'supervisor.log')}")  # fmt: skip
            state = read_state(settings)
            if not state or state.get("supervisor_pid") != proc.pid:
                continue
            services: dict[str, Any] = state.get("services", {})
            for name, info in services.items():
                if info["state"] == "failed":
                    raise fail(
                        f"{name} failed: {info.get('last_error')}\n{info.get('log_tail') or ''}\n"
                        f"(full log: {info.get('log')}); the other services keep running: "
                        "`localsuite status` shows them, `localsuite down` stops them"
                    )
            ready = [n for n, s in services.items() if s["state"] == "ready"]
            if services and len(ready) == len(services):
                break
            if time.monotonic() > deadline:
                raise fail(f"not every service is healthy after {wait:g}s; "
                            "`localsuite status` shows where it stands")  # fmt: skip
            pending = ", ".join(n for n in services if n not in ready)
            spinner.update(f"starting services… {len(ready)}/{len(services)} ready ({pending})")
    console.print(_table(state))
    console.print(f"stack is up (supervisor pid {proc.pid}); `localsuite down` stops it")


def _tail(path: Any, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@app.command()
def down(
    timeout: float | None = typer.Option(None, help="Seconds before stragglers are killed"),
) -> None:
    """Stop a detached stack and wait until none of its processes is left."""
    from localsuite.supervisor.state import pid_alive, read_state

    settings = load_settings()
    state = read_state(settings)
    if not state:
        console.print("nothing is running")
        return
    supervisor = state.get("supervisor_pid")
    services = [s.get("pid") for s in state.get("services", {}).values()]
    pids = [p for p in [supervisor, *services] if isinstance(p, int) and pid_alive(p)]
    if not pids:
        console.print("nothing is running")
        return
    if isinstance(supervisor, int) and pid_alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)  # it stops its services, dependents first
    # Each stop wave is bounded by SUPERVISOR_STOP_TIMEOUT; there are at most four waves.
    limit = timeout if timeout is not None else 4 * settings.supervisor_stop_timeout + 10
    deadline = time.monotonic() + limit
    with console.status("stopping…"):
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            err.print(f"[yellow]killing pid {pid}: still running after {limit:g}s[/yellow]")
            try:
                os.killpg(pid, signal.SIGKILL)  # services lead their own process group
            except (ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    console.print("stopped")


@app.command()
def status() -> None:
    """Every service: state, pid, port, health, restarts, uptime, model."""
    from localsuite.supervisor.client import ControlError

    client = control_client(load_settings())
    try:
        state = client.status()
    except ControlError as exc:
        raise fail(exc.message) from exc
    console.print(_table(state))
    for name, info in state.get("services", {}).items():
        if info["state"] == "failed":
            err.print(f"[red]{name}:[/red] {info.get('last_error')}\n{info.get('log_tail')}")


def _table(state: dict[str, Any]) -> Table:
    table = Table("state", "pid", "port", "health", "restarts", "uptime", "model", "note")
    table.columns.insert(0, Column("service", no_wrap=True))
    now = time.time()
    for name, s in state.get("services", {}).items():
        colour = STATE_COLOURS.get(s["state"], "yellow")
        health = s.get("health") or ""
        health_colour = HEALTH_COLOURS.get(health, "yellow")
        started = s.get("started_at")
        uptime = _duration(now - started) if started and s["state"] == "ready" else ""
        table.add_row(
            name,
            f"[{colour}]{s['state']}[/{colour}]",
            str(s.get("pid") or ""),
            str(s["port"]),
            f"[{health_colour}]{health}[/{health_colour}]" if health else "",
            str(s.get("restarts", 0)),
            uptime,
            (s.get("model") or "").removesuffix(".gguf"),
            _note(s),
        )
    return table


def _note(service: dict[str, Any]) -> str:
    if service.get("operation"):
        return str(service["operation"])
    if service.get("waiting_for"):
        return f"waiting for {', '.join(service['waiting_for'])}"
    if service["state"] != "ready" and service.get("last_error"):
        return str(service["last_error"]).splitlines()[0][:80]
    return ""


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@app.command()
def logs(
    service: str = typer.Argument(..., help="A service name, or `supervisor`"),
    follow: bool = typer.Option(False, "--follow", "-f"),
    lines: int = typer.Option(50, "--lines", "-n"),
) -> None:
    """Print a service's log (and follow it)."""
    from localsuite.supervisor.state import log_dir

    path = log_dir(load_settings()) / f"{service}.log"
    if not path.is_file():
        raise fail(f"no log for {service!r} at {path}")
    with path.open("r", errors="replace") as fh:
        for line in fh.readlines()[-lines:]:
            console.out(line.rstrip("\n"), highlight=False)
        while follow:
            line = fh.readline()
            if line:
                console.out(line.rstrip("\n"), highlight=False)
            else:
                time.sleep(0.2)


@app.command()
def restart(service: str = typer.Argument(..., help="A service of the running stack")) -> None:
    """Restart one service (a llama-server is drained at the gateway first when it can be)."""
    from localsuite.supervisor.client import ControlError

    settings = load_settings()
    client = control_client(settings)
    with console.status(f"restarting {service}…"):
        try:
            done = client.restart(service, wait=_operation_wait(settings))
        except ControlError as exc:
            raise fail(exc.message) from exc
    drained = "; drained at the gateway first" if done.get("drained") else ""
    console.print(f"{service} restarted: pid {done['pid']}, ready in {done['seconds']:.1f}s"
                  f"{drained}")  # fmt: skip


@app.command("switch-model")
def switch_model(
    service: str = typer.Argument(..., help="inference-chat | inference-code"),
    model: str = typer.Argument(..., help="A registry name (`localsuite models` lists them)"),
) -> None:
    """Switch a llama-server's model without failing requests (drain, restart, undrain)."""
    from localsuite.supervisor.client import ControlError

    settings = load_settings()
    client = control_client(settings)
    with console.status(f"switching {service} to {model}: draining, loading, checking…"):
        try:
            done = client.switch_model(service, model, wait=_operation_wait(settings))
        except ControlError as exc:
            raise fail(exc.message) from exc
    if not done.get("changed"):
        console.print(f"{service} already serves {done['model']}")
        return
    meanwhile = "; requests went to the other backend meanwhile" if done.get("drained") else ""
    console.print(
        f"{service} now serves {done['model']} (was {done['previous_model']}; "
        f"{done['seconds']:.1f}s{meanwhile})"
    )


def _operation_wait(settings: Settings) -> float:
    """How long a restart or switch may take: drain, stop, a slow load, and a rollback."""
    load = max(settings.inference_start_period, settings.supervisor_start_period)
    checks = settings.supervisor_health_retries * settings.supervisor_health_interval
    return settings.supervisor_drain_timeout + 2 * (load + checks) + 4 * 30


@app.command()
def models() -> None:
    """The model registry (bundled + MODELS_DIR) and which service serves which model."""
    from localsuite.inference.registry import ModelRegistry
    from localsuite.supervisor.client import ControlClient, ControlError, running_state

    settings = load_settings()
    serving: dict[str, list[str]] = {}
    if running_state(settings) is not None:
        try:
            services = ControlClient(settings).models()["services"]
        except ControlError as exc:
            err.print(f"[yellow]note:[/yellow] cannot ask the running stack: {exc.message}")
        else:
            for name, info in services.items():
                serving.setdefault(info["model"], []).append(name)
    table = Table("name", "source", "size", "served by")
    for entry in ModelRegistry(settings.models_dir).models():
        table.add_row(
            entry.name,
            entry.source,
            f"{entry.size_bytes / 2**20:.0f} MiB",
            ", ".join(serving.get(entry.name, [])),
        )
    console.print(table)


@app.command()
def compose(
    template: bool = typer.Option(
        False, "--template", help="deploy/compose.yml: every value from .env, with defaults"
    ),
    gpu: bool = typer.Option(False, "--gpu", help="deploy/compose.gpu.yml: the GPU override"),
) -> None:
    """Print a Docker Compose file for this configuration (the one-machine stack's twin)."""
    from localsuite.deploy.compose import (
        render_compose,
        render_compose_template,
        render_gpu_override,
    )

    if template and gpu:
        raise fail("choose --template or --gpu, not both", 2)
    if template:
        text = render_compose_template()
    elif gpu:
        text = render_gpu_override()
    else:
        text = render_compose(load_settings())
    console.out(text, end="", highlight=False)
