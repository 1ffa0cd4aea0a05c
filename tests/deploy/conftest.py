"""`docker-compose config` as a validator: it parses, interpolates and checks a Compose
file against the Compose schema without a Docker engine.

Debian's `docker-compose` (the Python v1, 1.29) is what `scripts/install.sh --dev`
installs; Compose v2 prints some fields in another shape, which `normalise_*` hide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from localsuite.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

INSTALL_HINT = (
    "tests/deploy need `docker-compose` (no Docker engine needed): run "
    "`scripts/install.sh --dev` as root, or `sudo apt-get install --no-install-recommends "
    "docker-compose` on Debian/Ubuntu"
)


@dataclass(frozen=True, slots=True)
class Port:
    host_ip: str
    published: int
    target: int


def normalise_ports(service: dict[str, Any]) -> list[Port]:
    """v1 prints `127.0.0.1:8000:8000/tcp`, v2 a mapping."""
    ports = []
    for item in service.get("ports", []):
        if isinstance(item, dict):
            ports.append(Port(item["host_ip"], int(item["published"]), int(item["target"])))
            continue
        spec = str(item).split("/", 1)[0]
        host, published, target = spec.rsplit(":", 2)
        ports.append(Port(host.strip("[]"), int(published), int(target)))
    return ports


def normalise_depends_on(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on", {})
    if isinstance(depends, list):  # the short form has no condition
        return dict.fromkeys(depends, "service_started")
    return {name: str(spec.get("condition")) for name, spec in depends.items()}


ComposeConfig = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


@pytest.fixture
def clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the test runner's environment leaks into `Settings()`."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def compose_config(docker_compose: str, tmp_path: Path) -> ComposeConfig:
    """Run `docker-compose config` on files with an env file; the parsed result."""

    def run(
        files: Sequence[Path],
        env: dict[str, str] | None = None,
        *,
        profile: str | None = None,
        project_dir: Path = REPO,
    ) -> dict[str, Any]:
        env_file = tmp_path / f"compose-{len(list(tmp_path.glob('compose-*.env')))}.env"
        given = {"LOCALSUITE_API_KEY": "a-test-key", **(env or {})}  # Compose demands one
        env_file.write_text("".join(f"{k}={v}\n" for k, v in given.items() if v is not None))
        argv = [docker_compose, "--project-directory", str(project_dir)]
        argv += ["--env-file", str(env_file)]
        for file in files:
            argv += ["-f", str(file)]
        if profile:
            argv += ["--profile", profile]
        # Only PATH: variables of the runner's environment would win over the env file.
        result = subprocess.run(
            [*argv, "config"],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
        parsed = yaml.safe_load(result.stdout)
        assert isinstance(parsed, dict)
        return parsed

    return run
