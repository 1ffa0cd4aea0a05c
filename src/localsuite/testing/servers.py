"""Servers for tests: an ASGI app on a real loopback port, in a thread, for as long as a
`with` lasts; the waits for a condition or a server to be ready (a process's: the
suite's own `core/readiness.py`, here for the tests beside the others)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from localsuite.core.readiness import free_port, healthy, stop_process, wait_healthy

__all__ = [
    "assert_no_server_error",
    "free_port",
    "healthy",
    "serve_in_thread",
    "stop_process",
    "wait_healthy",
    "wait_until",
]


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
