"""Commands that run and operate the stack: up, down, status, logs, restart,
switch-model, models, compose.

`up` runs the supervisor (in this process with a live table, or detached in the
background); every other command talks to a running supervisor through its control
API, found through `DATA_DIR/run/state.json`, so it works from any terminal. Starting,
calling and stopping a stack is the supervisor's client's (`supervisor/client.py`);
what is shown is drawn by `render`; these commands only tie the two together.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.live import Live

from localsuite.cli import render
from localsuite.cli.common import (
    app,
    auth_headers,
    console,
    control_client,
    err,
    fail,
    load_settings,
)
from localsuite.core.errors import ConfigError, LocalSuiteError
from localsuite.core.settings import Settings

if TYPE_CHECKING:
    from localsuite.supervisor.client import ControlClient

FOLLOW_POLL = 0.2  # seconds between looks at a followed log
WATCH_INTERVAL = 2.0  # seconds between the frames of `status --watch`


@app.command()
def up(
    preset: str = typer.Option("p3", help="p1 | p2 | p3"),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background"),
    wait: float = typer.Option(900.0, help="--detach: most seconds to wait for all healthy"),
    supervise: bool = typer.Option(False, hidden=True, help="The detached supervisor itself"),
) -> None:
    """Start the stack: services in health order, crashed ones restarted."""
    from localsuite.supervisor.client import running_state
    from localsuite.supervisor.control import bind_control_socket, serve_supervisor
    from localsuite.supervisor.services import build_services
    from localsuite.supervisor.supervisor import Supervisor

    settings = load_settings()
    running = running_state(settings)
    if running and not supervise:
        raise fail(f"a stack is already running (supervisor pid {running.supervisor_pid}); "
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
    # The services get the environment this command was given, read once, here.
    supervisor = Supervisor(settings, specs, environ=dict(os.environ), preset=preset)
    if supervise:
        asyncio.run(serve_supervisor(supervisor, sock))
        return
    table = render.stack_table(supervisor.snapshot(), time.time())
    with Live(table, console=console, auto_refresh=False) as live:
        # No refresh thread: the supervisor forks its services and wants no other thread.
        supervisor.on_change = lambda sup: live.update(
            render.stack_table(sup.snapshot(), time.time()), refresh=True
        )
        asyncio.run(serve_supervisor(supervisor, sock))
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
    from localsuite.supervisor.client import NotReady, launch

    detached = launch(settings, preset, os.environ)
    with console.status("starting services…") as spinner:
        try:
            for state in detached.states(within=wait):
                spinner.update(render.starting(state))
        except NotReady as exc:
            raise fail(exc.message) from exc
    console.print(render.stack_table(state, time.time()))
    console.print(f"stack is up (supervisor pid {detached.pid}); `localsuite down` stops it")


@app.command()
def down(
    timeout: float | None = typer.Option(None, help="Seconds before stragglers are killed"),
) -> None:
    """Stop a detached stack and wait until none of its processes is left."""
    from localsuite.supervisor.client import stop, stop_bound
    from localsuite.supervisor.state import pid_alive, read_state

    settings = load_settings()
    state = read_state(settings)
    if state is None or not any(pid_alive(pid) for pid in state.pids()):
        console.print("nothing is running")
        return
    limit = timeout if timeout is not None else stop_bound(settings, state)
    with console.status("stopping…"):
        _, killed = stop(settings, state, limit)
    for pid in killed:
        err.print(f"[yellow]killed pid {pid}: still running after {limit:g}s[/yellow]")
    console.print("stopped")


@app.command()
def status(
    watch: bool = typer.Option(
        False,
        "--watch",
        "-w",
        help="A live view of the services' own /health and /metrics, refreshed until Ctrl-C",
    ),
    interval: float | None = typer.Option(
        None, min=0.0, help=f"--watch: seconds between refreshes [default: {WATCH_INTERVAL:g}]"
    ),
    count: int | None = typer.Option(
        None,
        min=1,
        help="--watch: stop after this many frames; output that is not a terminal gets "
        "each frame printed in turn (scripts, logs)",
    ),
) -> None:
    """Every service: state, pid, port, health, restarts, uptime, model.

    With --watch: requests and errors by alias (and their rates), failovers, attempts,
    circuits, servers up or down, queues, time to first token, rag's jobs and
    dependencies, restarts; a service that does not answer shows as down."""
    from localsuite.supervisor.client import ControlError

    if not watch and (interval is not None or count is not None):
        raise fail("--interval and --count go with --watch", 2)
    settings = load_settings()
    client = control_client(settings)
    if watch:
        _watch(settings, client, WATCH_INTERVAL if interval is None else interval, count)
        return
    try:
        state = client.status()
    except ControlError as exc:
        raise fail(exc.message) from exc
    console.print(render.stack_table(state, time.time()))
    for paragraph in render.failures(state):
        err.print(paragraph)


def _watch(settings: Settings, client: ControlClient, interval: float, count: int | None) -> None:
    from localsuite.cli.watch import Snapshot, collect

    def frame(previous: Snapshot | None) -> Snapshot:
        known = previous.stack if previous is not None else None
        return asyncio.run(collect(client.base_url, client.headers, auth_headers(settings),
                                   known=known, clock=time.monotonic))  # fmt: skip

    frames = itertools.count() if count is None else range(count)
    previous: Snapshot | None = None
    # A terminal gets one frame redrawn in place; a file or a pipe gets every frame.
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        with live or contextlib.nullcontext():
            for number in frames:
                if number:
                    time.sleep(interval)
                current = frame(previous)
                view = render.watch_view(current, previous, time.time())
                if live is not None:
                    live.update(view, refresh=True)
                else:
                    console.print(view)
                    console.line()
                previous = current
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends


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
                time.sleep(FOLLOW_POLL)


@app.command()
def restart(service: str = typer.Argument(..., help="A service of the running stack")) -> None:
    """Restart one service (a llama-server is drained at the gateway first when it can be)."""
    from localsuite.supervisor.client import ControlError

    client = control_client(load_settings())
    with console.status(f"restarting {service}…"):
        try:
            done = client.restart(service)
        except ControlError as exc:
            raise fail(exc.message) from exc
    console.print(render.restarted(service, done))


@app.command("switch-model")
def switch_model(
    service: str = typer.Argument(..., help="inference-chat | inference-code"),
    model: str = typer.Argument(..., help="A registry name (`localsuite models` lists them)"),
) -> None:
    """Switch a llama-server's model without failing requests (drain, restart, undrain)."""
    from localsuite.supervisor.client import ControlError

    client = control_client(load_settings())
    with console.status(f"switching {service} to {model}: draining, loading, checking…"):
        try:
            done = client.switch_model(service, model)
        except ControlError as exc:
            raise fail(exc.message) from exc
    console.print(render.switched(service, done))


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
    console.print(render.models_table(ModelRegistry(settings.models_dir).models(), serving))


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
        settings = load_settings()
        if settings.api_key is None:
            _write_new_key(Path(".env"))
        text = render_compose(settings)
    console.out(text, end="", highlight=False)


def _write_new_key(env_file: Path) -> None:
    """The containers listen on 0.0.0.0, so the stack needs a key: make one in .env."""
    key = secrets.token_urlsafe(32)
    with env_file.open("a", encoding="utf-8") as out:
        out.write(f"\nLOCALSUITE_API_KEY={key}\n")
    err.print(
        f"wrote a new LOCALSUITE_API_KEY to {env_file.resolve()}: Compose reads it from there; "
        "clients send it as 'Authorization: Bearer <key>' (or x-api-key). Keep the file private."
    )
