"""The six tools, their input schemas (types, ranges, enums, descriptions) and what each
asks of the suite.

Every call has a deadline from the settings, a little longer than the one the service
called keeps itself, so that the service's own timeout error (which says more) arrives
first: LLM_REQUEST_TIMEOUT for chat, RAG_RETRIEVAL_TIMEOUT (+ RAG_LLM_TIMEOUT for an
answer) for rag_search, MCP_SWITCH_TIMEOUT for switch_model, MCP_STATUS_TIMEOUT for the
rest.

No `from __future__ import annotations` here: the SDK reads each tool's signature to
build its schema, and the annotations use values from the settings (eager evaluation).
"""

import asyncio
import time
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from localsuite.core.intent import looks_like_code
from localsuite.mcp_server import status
from localsuite.mcp_server.clients import Remote, Suite
from localsuite.mcp_server.errors import DependencyFailed
from localsuite.mcp_server.models import (
    ChatAnswer,
    IndexAccepted,
    IndexJob,
    IndexResult,
    ModelList,
    RagQueryAnswer,
    SearchResult,
    StackStatus,
    SwitchResult,
    usage_of,
)
from localsuite.mcp_server.validation import (
    ALIAS_PATTERN,
    COLLECTION_PATTERN,
    MODEL_NAME_PATTERN,
    document_path,
    model_name,
)

T = TypeVar("T")

MARGIN = 2.0  # seconds past a service's own deadline, for its timeout error to reach us
POLL = 0.25  # seconds between looks at an index job while waiting for it
HEARTBEAT = 2.0  # seconds between progress notifications during a long wait
TOOL_NAMES = (
    "chat", "rag_search", "index_documents", "list_models", "switch_model", "stack_status",
)  # fmt: skip

Ctx = Context[Any, Any]
InferenceService = Literal["inference-chat", "inference-code"]

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def register_tools(server: MCPServer[Any], suite: Suite) -> None:
    settings = suite.settings
    chat_alias, code_alias = settings.api_gateway_chat_model, settings.api_gateway_code_model

    @server.tool(title="Chat with the local model", annotations=READ_ONLY)
    async def chat(
        message: Annotated[
            str, Field(min_length=1, max_length=32_000, description="The user's message")
        ],
        model: Annotated[
            str,
            Field(
                pattern=ALIAS_PATTERN,
                description=f"A gateway alias: `auto` (the code alias, {code_alias}, for "
                f"messages about code; {chat_alias} otherwise), {chat_alias}, {code_alias}, "
                "`chat`, `code`, or any alias list_models shows",
            ),
        ] = "auto",
        max_tokens: Annotated[
            int | None,
            Field(
                ge=1,
                le=8192,
                description=f"Longest answer in tokens; default {settings.mcp_chat_max_tokens}",
            ),
        ] = None,
    ) -> ChatAnswer:
        """Ask the suite's local LLM through the api-gateway, which fails over between
        inference-chat and inference-code; returns the answer and the model that wrote it."""
        alias = model
        if model == "auto":
            alias = code_alias if looks_like_code(message) else chat_alias
        body = {
            "model": alias,
            "messages": [{"role": "user", "content": message}],
            "max_tokens": max_tokens or settings.mcp_chat_max_tokens,
        }
        budget = settings.llm_request_timeout + MARGIN
        data = await suite.gateway.call("POST", "/v1/chat/completions", budget=budget, payload=body)
        return _chat_answer(suite.gateway, data, alias)

    @server.tool(title="Search the indexed documents", annotations=READ_ONLY)
    async def rag_search(
        query: Annotated[str, Field(min_length=1, max_length=8000, description="What to look for")],
        collection: Annotated[
            str, Field(pattern=COLLECTION_PATTERN, description="The collection to search")
        ] = settings.rag_collection,
        topk: Annotated[
            int, Field(ge=1, le=100, description="How many chunks to retrieve")
        ] = settings.rag_topk,
        generate: Annotated[
            bool,
            Field(description="Also write an answer from the chunks, with the local LLM"),
        ] = False,
    ) -> SearchResult:
        """Find the chunks of indexed documents closest to a query, with their sources and
        similarity scores; with generate=true, also an answer written from them."""
        body = {"query": query, "collection": collection, "topk": topk, "generate": generate}
        budget = settings.rag_retrieval_timeout + MARGIN
        if generate:
            budget += settings.rag_llm_timeout
        data = await suite.rag.call("POST", "/query", budget=budget, payload=body)
        found = suite.rag.parse(RagQueryAnswer, data, "/query")
        return SearchResult(
            collection=found.collection, chunks=found.context, answer=found.answer,
            model=found.model, usage=usage_of(found.usage), retrieval_ms=found.retrieval_ms,
        )  # fmt: skip

    @server.tool(title="Index documents", annotations=ToolAnnotations(idempotent_hint=True))
    async def index_documents(
        ctx: Ctx,
        path: Annotated[
            str,
            Field(
                min_length=1,
                max_length=4096,
                description=f"A file or folder inside the documents folder "
                f"({settings.documents_dir}), relative to it or absolute; `.` is all of it",
            ),
        ] = ".",
        collection: Annotated[
            str, Field(pattern=COLLECTION_PATTERN, description="The collection to index into")
        ] = settings.rag_collection,
        wait_seconds: Annotated[
            float,
            Field(
                ge=0,
                le=settings.mcp_index_wait_max,
                description="How long to wait for the job to finish (0: return at once)",
            ),
        ] = 0,
    ) -> IndexResult:
        """Start an index job in rag for a file or folder of the documents folder (text,
        Markdown, source code, HTML, PDF) and return its id and progress; unchanged files
        are skipped, changed ones replace their old chunks."""
        relative = document_path(path, settings.documents_dir)
        where = f"/index?collection={quote(collection)}"
        accepted = await suite.rag.call(  # the job at once; this tool waits on it itself
            "POST", where, budget=suite.status_budget, payload={"paths": [relative]},
            headers={"Prefer": "respond-async"},
        )  # fmt: skip
        job = suite.rag.parse(IndexAccepted, accepted, "/index").job
        deadline = time.monotonic() + wait_seconds
        while not job.finished and time.monotonic() < deadline:
            await ctx.report_progress(job.files_done, job.files_total, f"indexing: {job.state}")
            await asyncio.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
            job = await suite.rag.get(
                f"/jobs/{quote(job.id)}", IndexJob, budget=suite.status_budget
            )
        return IndexResult(path=relative, job=job, finished=job.finished)

    @server.tool(title="List models", annotations=READ_ONLY)
    async def list_models() -> ModelList:
        """The models switch_model accepts (the registry: the bundled GGUF and the *.gguf
        files in MODELS_DIR), what each inference service serves now, and the gateway's
        model aliases with their backends in failover order."""
        return await status.list_models(suite)

    @server.tool(
        title="Switch an inference service's model",
        annotations=ToolAnnotations(destructive_hint=False, idempotent_hint=True),
    )
    async def switch_model(
        ctx: Ctx,
        service: Annotated[
            InferenceService, Field(description="The inference service whose model to change")
        ],
        model: Annotated[
            str,
            Field(
                pattern=MODEL_NAME_PATTERN,
                description="A model name from list_models (a *.gguf file name in MODELS_DIR, "
                "its name without .gguf, or `bundled`); never a path",
            ),
        ],
    ) -> SwitchResult:
        """Make an inference service serve another model, with no failed requests: the
        supervisor drains it at the gateway (the other backend serves meanwhile), restarts
        it with the model, waits until it is healthy, and puts the previous model back if
        the new one does not come up. Takes as long as loading the model."""
        name = model_name(model)
        budget = settings.mcp_switch_timeout
        path = f"/services/{service}/model"
        call = suite.supervisor.call("POST", path, budget=budget, payload={"model": name})
        data = await _with_heartbeat(ctx, call, f"switching {service} to {name}", budget)
        return suite.supervisor.parse(SwitchResult, data, path)

    @server.tool(title="Stack status", annotations=READ_ONLY)
    async def stack_status() -> StackStatus:
        """Every service's state and health: from the supervisor (`localsuite up`) when one
        runs, else by asking each service's /health directly (Docker, Kubernetes)."""
        return await status.stack_status(suite)


def _chat_answer(gateway: Remote, data: Any, alias: str) -> ChatAnswer:
    try:
        choice = data["choices"][0]
        answer = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise DependencyFailed("api-gateway answered without a chat completion") from exc
    return gateway.parse(
        ChatAnswer,
        {
            "answer": answer or "",
            "model": alias,
            "served_model": data.get("model"),
            "finish_reason": choice.get("finish_reason"),
            "usage": usage_of(data.get("usage")),
        },
        "/v1/chat/completions",
    )


async def _with_heartbeat(ctx: Ctx, work: Awaitable[T], what: str, total: float) -> T:
    """Await `work`, telling the client it still runs (clients that asked for progress
    may otherwise give up on a call as long as a model load)."""
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT)
            if done:
                return task.result()
            elapsed = time.monotonic() - started
            await ctx.report_progress(elapsed, total, f"{what}: {elapsed:.0f} s")
    finally:
        task.cancel()
