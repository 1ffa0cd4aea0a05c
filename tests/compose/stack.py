"""A Compose project on a real Docker engine, seen the way an operator sees it: through
`docker-compose`, `docker inspect`, `docker events` and ports published on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPOSE_TIMEOUT = 600  # `up` waits on every healthcheck of the start order


@dataclass(frozen=True, slots=True)
class Event:
    """One container event of the project: `start`, `die`, `health_status: healthy`..."""

    service: str
    action: str
    at: float  # POSIX seconds


@dataclass
class ComposeStack:
    docker: str  # the Docker CLI
    file: Path
    project: str
    profile: str

    def compose(self, *args: str, timeout: float = COMPOSE_TIMEOUT, check: bool = True) -> str:
        argv = ["docker-compose", "-p", self.project, "-f", str(self.file)]
        argv += ["--profile", self.profile, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check:
            assert done.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def save_logs(self, path: Path) -> None:
        """Every container's log, with Docker's timestamps, into `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.compose("logs", "--no-color", "--timestamps", check=False))

    def cli(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [self.docker, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"docker {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def container(self, service: str) -> str:
        found = self.compose("ps", "-q", service, timeout=60).split()
        assert len(found) == 1, f"{service}: containers {found}"
        return found[0]

    def inspect(self, service: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.cli("inspect", self.container(service)))
        return data[0]

    def health(self, service: str) -> str:
        """`starting`, `healthy` or `unhealthy`; `down` while the container does not run."""
        state = self.inspect(service)["State"]
        if not state["Running"]:
            return "down"
        return str(state["Health"]["Status"])

    def services(self) -> list[str]:
        return self.compose("config", "--services", timeout=60).split()

    def events(self, since: float, until: float) -> list[Event]:
        """The project's container events between two POSIX times, oldest first."""
        label = f"label=com.docker.compose.project={self.project}"
        raw = self.cli(
            "events",
            "--since", f"{since:.3f}",
            "--until", f"{until:.3f}",
            "--filter", "type=container",
            "--filter", label,
            "--format", "{{json .}}",
        )  # fmt: skip
        events = []
        for line in raw.splitlines():
            item = json.loads(line)
            attributes = item["Actor"]["Attributes"]
            service = attributes.get("com.docker.compose.service", "")
            events.append(Event(service, item["Action"], item["timeNano"] / 1e9))
        return sorted(events, key=lambda e: e.at)

    def leftovers(self) -> dict[str, list[str]]:
        """What of the project still exists: containers, networks, volumes."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            kind: self.cli(*command, "--filter", label).split()
            for kind, command in (
                ("containers", ("ps", "-aq")),
                ("networks", ("network", "ls", "-q")),
                ("volumes", ("volume", "ls", "-q")),
            )
        }


def published(inspected: dict[str, Any]) -> Sequence[tuple[str, int]]:
    """(host address, host port) of each port a container publishes."""
    ports = inspected["NetworkSettings"]["Ports"] or {}
    return [
        (b["HostIp"], int(b["HostPort"])) for bindings in ports.values() for b in bindings or []
    ]
