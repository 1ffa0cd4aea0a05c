"""The `localsuite` command in-process, through typer's CliRunner, against a real control
API over a supervisor that runs nothing, and state files written as the supervisor
writes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from localsuite.cli import app
from localsuite.core.settings import Settings
from localsuite.supervisor.control import create_control_app
from localsuite.supervisor.services import build_services
from localsuite.supervisor.supervisor import Supervisor
from localsuite.testing.servers import free_port, serve_in_thread


@dataclass
class Cli:
    root: Path
    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        return Settings(_env_file=None, **{k.lower(): v for k, v in self.env.items()})

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The command with a DATA_DIR and MODELS_DIR of its own and a closed control port."""
    (tmp_path / "models").mkdir()
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(tmp_path / "models"),
        "SUPERVISOR_PORT": str(free_port()),
        "LOCALSUITE_API_KEY": "",
    }
    return Cli(tmp_path, env)


@pytest.fixture
def control(cli: Cli) -> Iterator[Supervisor]:
    """A p2 supervisor that was never run, its control API served on loopback, and its
    state file saying that it runs (as this process: alive, and never signalled)."""
    (cli.root / "models" / "other.gguf").write_bytes(b"GGUF")
    settings = cli.settings
    sup = Supervisor(settings, build_services(settings, "p2"), environ={}, preset="p2")
    with serve_in_thread(create_control_app(sup)) as url:
        sup.control_url = url
        sup.publish()
        yield sup


Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start a Python one-liner as a process that leads its own group, and wait until it
    prints its first line (it is ready); each is ended at the end of the test, by its pid."""
    started: list[subprocess.Popen[bytes]] = []

    def start(code: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
        )
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline(), "it said nothing"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
