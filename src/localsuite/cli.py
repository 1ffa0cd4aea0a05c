"""The `localsuite` command: the only module that prints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Column, Table

from localsuite.core.errors import ConfigError, LocalSuiteError
from localsuite.core.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        raise _fail(f"invalid configuration: {exc}", 2) from exc


@app.callback()
def main() -> None:
    """Local AI Suite: a fault-tolerant local AI stack."""


@app.command()
def serve(
    service: str = typer.Argument(..., help="api-gateway"),
    port: int | None = typer.Option(None, help="Override the service's port"),
) -> None:
    """Run one service in the foreground."""
    from localsuite.serve import serve as run

    try:
        run(service, _settings(), port)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from exc


@app.command()
def up(
    preset: str = typer.Option("p3", help="p1 | p2 | p3"),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background"),
    supervise: bool = typer.Option(False, hidden=True, help="The detached supervisor itself"),
) -> None:
    """Start the stack: services in health order, crashed ones restarted."""
    from localsuite.supervisor.launcher import Launcher, pid_alive, read_state

    settings = _settings()
    state = read_state(settings)
    if state and pid_alive(state.get("supervisor_pid")) and not supervise:
        raise _fail(f"a stack is already running (supervisor pid {state['supervisor_pid']}); "
                    "`localsuite down` stops it")  # fmt: skip
    try:
        launcher = Launcher(settings, preset)
    except (ConfigError, LocalSuiteError) as exc:
        raise _fail(str(exc), 2) from exc
    for name in launcher.skipped:
        err.print(f"[yellow]note:[/yellow] {name} is not in this build yet: skipped")
    if detach:
        _detach(settings, preset)
        return
    launcher.install_signal_handlers()
    if supervise:
        launcher.run()
        return
    with Live(_table(launcher.snapshot()), console=console, refresh_per_second=4) as live:
        launcher.on_change = lambda current: live.update(_table(current.snapshot()))
        launcher.run()
    console.print("stopped")


def _detach(settings: Settings, preset: str) -> None:
    from localsuite.supervisor.launcher import pid_alive, read_state, state_path

    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    state_path(settings).unlink(missing_ok=True)
    with (logs / "supervisor.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "localsuite", "up", "--preset", preset, "--supervise"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    with console.status("starting services…"):
        while True:
            time.sleep(0.2)
            state = read_state(settings)
            services = (state or {}).get("services", {})
            failed = {n: s for n, s in services.items() if s["state"] == "failed"}
            if failed:
                name, info = next(iter(failed.items()))
                tail = info.get("log_tail") or ""
                raise _fail(f"{name} failed: {info.get('last_error')}\n{tail}")
            if services and all(s["state"] == "ready" for s in services.values()):
                break
            if proc.poll() is not None or (state and not pid_alive(proc.pid)):
                raise _fail(f"the supervisor exited; see {logs / 'supervisor.log'}")
    console.print(_table(state or {}))
    console.print(f"stack is up (supervisor pid {proc.pid}); `localsuite down` stops it")


@app.command()
def down(timeout: float = typer.Option(30.0, help="Seconds before stragglers are killed")) -> None:
    """Stop a detached stack and wait until none of its processes is left."""
    from localsuite.supervisor.launcher import pid_alive, read_state

    state = read_state(_settings())
    if not state:
        console.print("nothing is running")
        return
    supervisor = state.get("supervisor_pid")
    pids = [
        int(p)
        for p in [supervisor, *(s.get("pid") for s in state.get("services", {}).values())]
        if p
    ]
    if supervisor and pid_alive(supervisor):
        os.kill(int(supervisor), signal.SIGTERM)  # it stops its services in order
    deadline = time.monotonic() + timeout
    with console.status("stopping…"):
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    console.print("stopped")


@app.command()
def status() -> None:
    """Every service: state, pid, port, health, restarts, uptime, model."""
    from localsuite.supervisor.launcher import pid_alive, read_state

    state = read_state(_settings())
    if not state or not pid_alive(state.get("supervisor_pid")):
        raise _fail("no stack is running; `localsuite up` starts one")
    console.print(_table(state, probe=True))


def _table(state: dict[str, Any], probe: bool = False) -> Table:
    table = Table("state", "pid", "port", "health", "restarts", "uptime", "model")
    table.columns.insert(0, Column("service", no_wrap=True))
    for name, s in state.get("services", {}).items():
        health = ""
        if probe:
            try:
                code = httpx.get(s["health_url"], timeout=2).status_code
                health = "ok" if code == 200 else f"HTTP {code}"
            except httpx.HTTPError:
                health = "no answer"
        colour = {"ready": "green", "failed": "red"}.get(s["state"], "yellow")
        started = s.get("started_at")
        uptime = f"{time.time() - started:.0f}s" if started and s["state"] == "ready" else ""
        pid = str(s.get("pid") or "")
        state_text = f"[{colour}]{s['state']}[/{colour}]"
        model = (s.get("model") or "").removesuffix(".gguf")
        table.add_row(
            name, state_text, pid, str(s["port"]), health, str(s["restarts"]), uptime, model
        )
    return table


@app.command()
def logs(
    service: str = typer.Argument(..., help="A service name, or `supervisor`"),
    follow: bool = typer.Option(False, "--follow", "-f"),
    lines: int = typer.Option(50, "--lines", "-n"),
) -> None:
    """Print a service's log (and follow it)."""
    path = _settings().data_dir / "logs" / f"{service}.log"
    if not path.is_file():
        raise _fail(f"no log for {service!r} at {path}")
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
def models() -> None:
    """The model registry: the bundled GGUF and every *.gguf in MODELS_DIR."""
    from localsuite.inference.registry import ModelRegistry

    settings = _settings()
    table = Table("name", "source", "size")
    for entry in ModelRegistry(settings.models_dir).models():
        table.add_row(entry.name, entry.source, f"{entry.size_bytes / 2**20:.0f} MiB")
    console.print(table)


@app.command()
def chat(model: str = typer.Option("chat", help="A gateway model alias")) -> None:
    """Interactive streaming chat through the gateway (empty line or Ctrl-D to quit)."""
    settings = _settings()
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    url = f"{settings.gateway_service_url}/v1/chat/completions"
    history: list[dict[str, str]] = []
    with httpx.Client(timeout=settings.llm_request_timeout, headers=headers) as client:
        while True:
            try:
                prompt = console.input("[bold]you>[/bold] ")
            except (EOFError, KeyboardInterrupt):
                break
            if not prompt.strip():
                break
            history.append({"role": "user", "content": prompt})
            answer = _stream_answer(client, url, model, history)
            if answer is not None:
                history.append({"role": "assistant", "content": answer})


def _stream_answer(
    client: httpx.Client, url: str, model: str, history: list[dict[str, str]]
) -> str | None:
    body = {"model": model, "messages": history, "stream": True}
    text = ""
    try:
        with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                message = orjson.loads(response.read()).get("error", {}).get("message")
                err.print(f"[red]{response.status_code}:[/red] {message}")
                return None
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = orjson.loads(line[6:])
                if "error" in chunk:
                    err.print(f"\n[red]stream failed:[/red] {chunk['error'].get('message')}")
                    return None
                for choice in chunk.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") or ""
                    text += piece
                    console.out(piece, end="", highlight=False)
    except httpx.HTTPError as exc:
        err.print(f"[red]gateway unreachable at {url}:[/red] {exc}")
        return None
    console.out("")
    return text


if __name__ == "__main__":
    app()
