"""The container health probe against a real service app on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from localsuite.core.app import create_service_app
from localsuite.core.health import Check, HealthReport
from localsuite.deploy.probe import probe
from localsuite.testing.servers import free_port, serve_in_thread

KEY = "probe-key"


@dataclass
class Service:
    url: str
    api_key: str | None
    healthy: bool = True


@pytest.fixture(params=[None, KEY], ids=["no-key", "key"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    state = Service(url="", api_key=request.param)

    async def health() -> HealthReport:
        return HealthReport("probed", (Check("dependency", state.healthy),))

    app = create_service_app(
        service="probed", health=health, registry=CollectorRegistry(), api_key=request.param
    )
    with serve_in_thread(app) as url:
        state.url = url
        yield state


def run_probe(url: str, api_key: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command of the Compose healthcheck, in a process of its own (no `.env` in cwd)."""
    env = {k: v for k, v in os.environ.items() if k != "LOCALSUITE_API_KEY"}
    if api_key:
        env["LOCALSUITE_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "-m", "localsuite.deploy.probe", url, "--timeout", "5"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_a_healthy_service_passes(service: Service) -> None:
    assert probe(f"{service.url}/health", api_key=KEY).ok
    assert probe(f"{service.url}/health/live").ok


def test_a_503_fails_and_says_why(service: Service) -> None:
    service.healthy = False
    result = probe(f"{service.url}/health", api_key=KEY)
    assert not result.ok
    assert result.detail.startswith("503 from") and "dependency" in result.detail


def test_health_answers_without_the_key_and_a_guarded_path_says_which(service: Service) -> None:
    assert probe(f"{service.url}/health", api_key=None).ok  # orchestrators probe keyless
    guarded = probe(f"{service.url}/openapi.json", api_key=None)
    assert guarded.ok is (service.api_key is None)
    if service.api_key:
        assert guarded.detail.startswith("401 from") and "LOCALSUITE_API_KEY" in guarded.detail


def test_nothing_listening_fails_without_raising() -> None:
    result = probe(f"http://127.0.0.1:{free_port()}/health", timeout=2)
    assert not result.ok and result.detail.startswith("no answer from")


def test_the_module_exits_0_or_1_and_sends_the_key_from_the_environment(
    service: Service, tmp_path: Path
) -> None:
    assert run_probe(f"{service.url}/health", service.api_key, tmp_path).returncode == 0
    service.healthy = False
    failed = run_probe(f"{service.url}/health", service.api_key, tmp_path)
    assert failed.returncode == 1 and "503 from" in failed.stderr
