"""Servers for tests: an ASGI app on a real loopback port, in a thread, for as long as a
`with` lasts; and the waits for a server, in a thread or a process, to be ready."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(
    app: Any, port: int | None = None, *, ready_within: float = 10.0
) -> Iterator[str]:
    """Serve `app` on 127.0.0.1; yields its base URL once it accepts connections."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="asyncio",
        timeout_graceful_shutdown=1,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_within
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"test server on port {port} did not start")
        time.sleep(0.01)  # polling a flag in another thread, not waiting for readiness blindly
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_until(predicate: Any, within: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate()` until it is true; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.02)


def healthy(url: str) -> bool:
    """Whether the health check at `url` answers 200 now."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], within: float, describe: Any = None
) -> None:
    """Poll the health check at `url` until 200 (a server loading a model answers 503);
    fail at once if `proc` exits, and after `within` seconds. `describe()` adds to errors
    what the process said (its log's tail, say)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: {_said(describe)}")
        if healthy(url):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not healthy within {within}s: {_said(describe)}")


def _said(describe: Any) -> str:
    return str(describe()) if describe is not None else ""


def assert_no_server_error(case: Any, response: Any) -> None:
    """A fuzzed request's answer: never a 5xx, and every error in its protocol's shape
    (Anthropic's on `/v1/messages`, OpenAI's elsewhere)."""
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    if response.status_code >= 400:
        body = response.json()
        if case.path.startswith("/v1/messages"):
            assert body["type"] == "error" and {"message", "type"} <= set(body["error"])
        else:
            assert {"message", "type", "code"} <= set(body["error"])
