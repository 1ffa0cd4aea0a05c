"""The supervisor's control API: what the `localsuite` commands and the MCP server call.

HTTP on 127.0.0.1:`SUPERVISOR_PORT` (default 8010), never another interface; clients
find it at `settings.supervisor_service_url`. With `LOCALSUITE_API_KEY` set, every path
but `/health/live` needs `Authorization: Bearer <key>`. Errors have the suite's shape,
`{"error": {"message", "type", "code", "param"?}}`. These endpoints are a contract:

    GET  /health/live  200 {"ok": true, "service": "supervisor"}
    GET  /health       200 when every service is ready, else 503 + Retry-After:
                       {"ok", "status", "service": "supervisor", "preset",
                        "checks": {"<service>": {"ok", "hard", "detail": "<state>[: why]"}}}
    GET  /metrics      Prometheus text: localsuite_supervisor_service_state{service,state},
                       _service_healthy{service}, _restarts_total{service,reason},
                       _model_switches_total{service,outcome}
    GET  /status       200, the same `StackState` (core/stack.py) as DATA_DIR/run/state.json:
                       {"supervisor_pid", "preset",
                        "control_url", "stopping", "written_at",
                        "services": {"<name>": {
                            "state": "stopped|starting|ready|stopping|failed",
                            "health": "starting|healthy|unhealthy" or null (not running),
                            "pid", "port", "health_url", "model" (llama-servers, else null),
                            "restarts", "crashes" (in a row), "started_at" (unix time),
                            "uptime_s", "last_error", "operation" (null, or what holds it),
                            "depends_on", "waiting_for", "log", "log_tail" (when failed)}}}
    GET  /models       200 {"models": [{"name", "source": "bundled|models_dir", "size_bytes"}],
                            "services": {"inference-chat": {"model", "state", "operation"}}}
    POST /services/{name}/restart
                       waits until the service is healthy again, then
                       200 {"service", "state": "ready", "pid", "restarts", "seconds",
                            "drained"}  (a llama-server is drained first when another
                            backend serves its aliases)
                       404 service_not_found; 409 operation_in_progress;
                       502 restart_failed (not healthy; the supervisor keeps trying)
    POST /services/{name}/model   body {"model": "<registry name>"}
                       the zero-downtime model switch (see operations.py); waits until
                       done, which may take as long as a model load, then
                       200 {"service", "model", "previous_model", "changed", "seconds",
                            "drained", "state": "ready", "pid"}
                       400 not_an_inference_service; 404 service_not_found;
                       404 model_not_found (the message lists the valid models);
                       422 invalid_model_name (a path), invalid_value (a bad body);
                       409 operation_in_progress, no_other_backend (it would leave a model
                           alias with no backend: preset p1, say);
                       503 gateway_unavailable (cannot drain), supervisor_stopping;
                       502 model_switch_failed: the new model did not come up; the message
                           says why (its exit status and last log lines, or its failed
                           health checks) and that the previous model serves again
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from localsuite.core.app import create_service_app
from localsuite.core.auth import SAFE_METHODS
from localsuite.core.errors import ConfigError
from localsuite.core.health import Check, HealthReport
from localsuite.core.settings import Settings
from localsuite.core.stack import ProcessState, StackState
from localsuite.supervisor import operations
from localsuite.supervisor.supervisor import Supervisor

log = logging.getLogger("localsuite.supervisor")


class ModelSwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1,
        max_length=255,
        description="A registry name: a *.gguf file name in MODELS_DIR, its stem, or `bundled`",
    )


def create_control_app(sup: Supervisor) -> FastAPI:
    async def health() -> HealthReport:
        checks = []
        for name, svc in sup.services.items():
            detail = svc.state.value
            if svc.state is not ProcessState.READY and svc.process.last_error:
                detail += f": {svc.process.last_error}"
            checks.append(Check(name, svc.state is ProcessState.READY, detail=detail))
        return HealthReport("supervisor", tuple(checks), {"preset": sup.preset})

    app = create_service_app(
        service="supervisor",
        health=health,
        registry=sup.registry,
        api_key=sup.settings.api_key,
        admin_key=sup.settings.admin_key,
        admin_routes=lambda method, _: method not in SAFE_METHODS,  # restart, switch
        description="The supervisor's control API: status, restarts and model switches.",
    )

    @app.get("/status", tags=["supervisor"], summary="Every service's state (as state.json)")
    async def status() -> StackState:
        return sup.snapshot()

    @app.get("/models", tags=["supervisor"], summary="The model registry and who serves what")
    async def models() -> dict[str, Any]:
        return operations.models(sup)

    @app.post(
        "/services/{name}/restart",
        tags=["supervisor"],
        summary="Restart a service and wait until it is healthy",
    )
    async def restart(name: str) -> dict[str, Any]:
        return await operations.restart(sup, name)

    @app.post(
        "/services/{name}/model",
        tags=["supervisor"],
        summary="Switch a llama-server's model without failing requests",
    )
    async def switch(name: str, body: ModelSwitchRequest) -> dict[str, Any]:
        return await operations.switch_model(sup, name, body.model)

    return app


class ControlServer(uvicorn.Server):
    """uvicorn inside the supervisor's loop: the supervisor owns the signals, not uvicorn."""

    task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @classmethod
    def for_supervisor(cls, sup: Supervisor, sock: socket.socket) -> ControlServer:
        """Serve the control API on `sock` (from `bind_control_socket`) in the running loop."""
        host, port = sock.getsockname()[:2]
        sup.control_url = f"http://{host}:{port}"
        config = uvicorn.Config(
            create_control_app(sup),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = cls(config)
        server.task = asyncio.create_task(server.serve([sock]), name="control-api")
        return server

    async def close(self) -> None:
        self.should_exit = True
        if self.task is not None:
            try:
                await self.task
            except Exception:
                log.exception("the control API failed")


async def serve_supervisor(sup: Supervisor, sock: socket.socket) -> None:
    """Run `sup` with its control API on `sock` until it stops (the API answers until
    every service has stopped)."""
    control = ControlServer.for_supervisor(sup, sock)
    try:
        await sup.run()
    finally:
        await control.close()


def bind_control_socket(settings: Settings) -> socket.socket:
    """The control API's socket, on loopback only; bound before anything starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", settings.supervisor_port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"the supervisor's control port 127.0.0.1:{settings.supervisor_port} is taken "
            f"({exc.strerror}): is another stack running (`localsuite status`)? "
            "Otherwise set SUPERVISOR_PORT"
        ) from exc
    sock.set_inheritable(False)
    return sock
