"""What the tools return: each is the tool's output schema, so clients can show it.

The same models read the services' answers (unknown fields are ignored), so a service
that answers outside its contract is caught at one place (`Remote.parse`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ChatAnswer(BaseModel):
    answer: str = Field(description="The assistant's reply")
    model: str = Field(description="The gateway alias that was asked (auto resolved)")
    served_model: str | None = Field(None, description="The model that really answered")
    finish_reason: str | None = Field(None, description="stop, or length when cut at max_tokens")
    usage: dict[str, int] | None = Field(None, description="Prompt and completion tokens")


class Chunk(BaseModel):
    source: str = Field(description="The document, relative to the documents folder")
    chunk: int | None = Field(None, description="The chunk's position in its document")
    score: float = Field(description="Similarity to the query (higher is closer)")
    text: str
    used: bool = Field(False, description="Whether the answer's prompt included it")


class SearchResult(BaseModel):
    collection: str
    chunks: list[Chunk] = Field(description="Retrieved chunks, best first")
    answer: str | None = Field(None, description="The generated answer (generate=true)")
    model: str | None = Field(None, description="The model that wrote the answer")
    usage: dict[str, int] | None = None
    retrieval_ms: float | None = None


class RagQueryAnswer(BaseModel):
    """rag's `POST /query` answer."""

    answer: str | None = None
    context: list[Chunk]
    collection: str
    model: str | None = None
    usage: dict[str, Any] | None = None
    retrieval_ms: float | None = None


class FileFailure(BaseModel):
    source: str
    error: str | None = None


class IndexJob(BaseModel):
    id: str = Field(description="The job's id in rag (`GET /jobs/{id}`)")
    collection: str
    state: str = Field(description="queued, running, waiting (a dependency is down), done, "
                       "failed or cancelled")  # fmt: skip
    files_total: int
    files_done: int = Field(description="Files finished, failed ones included")
    files_failed: int
    chunks_added: int
    chunks_removed: int
    chunks_unchanged: int
    waiting_for: str | None = Field(None, description="The dependency a waiting job waits for")
    error: str | None = None
    failures: list[FileFailure] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


class IndexAccepted(BaseModel):
    """rag's `POST /index` answer (202)."""

    job: IndexJob


class IndexResult(BaseModel):
    path: str = Field(description="What was indexed, relative to the documents folder")
    job: IndexJob
    finished: bool = Field(description="Whether the job ended within the wait")


class RegistryModel(BaseModel):
    name: str = Field(description="A name switch_model accepts")
    source: str | None = Field(None, description="bundled, or models_dir")
    size_bytes: int | None = None


class ServedModel(BaseModel):
    model: str | None = Field(None, description="The model it serves now")
    state: str | None = Field(None, description="Its state (supervisor), or up / unreachable")
    operation: str | None = Field(None, description="An operation holding it (a switch)")


class Alias(BaseModel):
    name: str = Field(description="A model name clients send to the gateway")
    backends: list[str] = Field(default_factory=list, description="In failover order")


class ListedModel(BaseModel):
    id: str
    backends: list[str] = Field(default_factory=list)


class ModelListing(BaseModel):
    """An OpenAI `GET /v1/models` answer (the gateway's names each alias's backends)."""

    data: list[ListedModel]


class ModelList(BaseModel):
    models: list[RegistryModel] = Field(description="The registry: what switch_model accepts")
    services: dict[str, ServedModel] = Field(description="What each inference service serves")
    aliases: list[Alias] = Field(description="The gateway's model aliases")
    notes: list[str] = Field(default_factory=list, description="What could not be asked, why")


class SupervisorModels(BaseModel):
    """The supervisor's `GET /models` answer."""

    models: list[RegistryModel]
    services: dict[str, ServedModel]


class SwitchResult(BaseModel):
    service: str
    model: str = Field(description="The model it serves now")
    previous_model: str | None = None
    changed: bool = Field(description="False when it already served that model")
    seconds: float | None = Field(None, description="How long the switch took")
    drained: bool | None = Field(None, description="Whether the gateway drained it first")
    state: str | None = None
    pid: int | None = None


class ServiceStatus(BaseModel):
    state: str = Field(
        description="From the supervisor: stopped, starting, ready, stopping or failed; "
        "from probes: up or unreachable"
    )
    health: Literal["starting", "healthy", "unhealthy"] | None = Field(
        None, description="Its health check's verdict; null when it does not run"
    )
    detail: str | None = Field(None, description="Its last error, or what its probe saw")
    model: str | None = None
    port: int | None = None
    pid: int | None = None
    uptime_s: float | None = None
    restarts: int | None = None
    operation: str | None = None


class StackStatus(BaseModel):
    source: Literal["supervisor", "probes"] = Field(
        description="supervisor: the stack `localsuite up` runs; probes: each service's "
        "/health asked directly (no supervisor, e.g. Docker)"
    )
    ok: bool = Field(description="Every service is ready and healthy")
    preset: str | None = None
    services: dict[str, ServiceStatus]
    note: str | None = None


def usage_of(usage: Any) -> dict[str, int] | None:
    """The token counts of an OpenAI `usage` object (llama-server adds nested details)."""
    if not isinstance(usage, dict):
        return None
    return {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
