"""The stack's state as the supervisor publishes it: one typed model for every reader.

The supervisor builds a `StackState` on each change; the same model is the content of
`DATA_DIR/run/state.json`, the answer of the control API's `GET /status`, what the CLI
renders (`localsuite status`, the live table of `up`) and what the MCP server's
`stack_status` reads. It lives in `core` because it is a contract between parts that
must not import each other: the MCP server knows the supervisor only over HTTP.

The lifecycle of a service and the verdict of its health check are part of it:

    ProcessState   stopped ─▶ starting ─▶ ready ─▶ stopping ─▶ stopped;  failed
    HealthStatus   starting ─▶ healthy ⇄ unhealthy     (compose's three statuses)
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field


class ProcessState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"


class HealthStatus(enum.Enum):
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class ServiceState(BaseModel):
    """One service (one process of it) as the supervisor sees it."""

    model_config = ConfigDict(frozen=True)

    state: ProcessState
    health: HealthStatus | None = Field(None, description="null while it does not run")
    pid: int | None = None
    port: int
    health_url: str
    model: str | None = Field(None, description="The registry model a llama-server serves")
    restarts: int = 0
    crashes: int = Field(0, description="In a row")
    started_at: float | None = Field(None, description="Unix time of the current run's start")
    uptime_s: float | None = None
    last_error: str | None = None
    operation: str | None = Field(None, description="What holds it now: a restart, a switch")
    depends_on: list[str] = Field(default_factory=list)
    waiting_for: list[str] = Field(
        default_factory=list, description="Dependencies that keep a stopped service waiting"
    )
    log: str
    log_tail: str = Field("", description="Its last log lines, when it failed")


class StackState(BaseModel):
    """The whole stack: the supervisor and each of its services, in start order."""

    model_config = ConfigDict(frozen=True)

    supervisor_pid: int | None = Field(description="null once the supervisor has stopped")
    preset: str
    control_url: str | None = None
    stopping: bool = False
    written_at: float = Field(description="Unix time")
    services: dict[str, ServiceState]

    def in_state(self, state: ProcessState) -> dict[str, ServiceState]:
        return {name: s for name, s in self.services.items() if s.state is state}

    @property
    def all_ready(self) -> bool:
        return bool(self.services) and len(self.in_state(ProcessState.READY)) == len(self.services)

    def pids(self) -> list[int]:
        """The supervisor's pid and every service's, as far as they run."""
        found = [self.supervisor_pid, *(s.pid for s in self.services.values())]
        return [pid for pid in found if pid is not None]
