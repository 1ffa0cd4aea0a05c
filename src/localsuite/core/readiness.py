"""Waiting for a process one started to serve: a free loopback port to give it, and its
health URL polled until it answers 200, it exits, or time runs out; and ending it.

For the processes started outside the supervisor (the installer's llama-server check,
tests, benchmarks); the supervisor judges its services with compose-style health checks
of its own (`supervisor/health.py`).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx

PROBE_TIMEOUT = 2.0  # seconds one look at a health URL may take
POLL = 0.05  # seconds between looks


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    """Whether the health check at `url` answers 200 now."""
    try:
        return httpx.get(url, timeout=PROBE_TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(
    url: str,
    proc: subprocess.Popen[bytes],
    within: float,
    describe: Callable[[], str] | None = None,
) -> None:
    """Poll the health check at `url` until 200 (a server loading a model answers 503);
    fail at once if `proc` exits (RuntimeError), and after `within` seconds
    (TimeoutError). `describe()` adds to errors what the process said (its log's tail)."""
    said = describe or (lambda: "")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: {said()}")
        if healthy(url):
            return
        time.sleep(POLL)
    raise TimeoutError(f"{url} not healthy within {within}s: {said()}")


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, up to `grace` seconds for the process to end, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
