"""Fixtures: the MCP server in-process, over real services on loopback — the gateway over
two fault-injecting upstreams, the real rag service with the real embedding service, and
the supervisor's control API over a supervisor that runs nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types import CallToolResult

from localsuite.core.retry import no_backoff
from localsuite.core.settings import Settings
from localsuite.gateway.app import create_gateway_app
from localsuite.mcp_server.server import SuiteServer, create_mcp_server
from localsuite.rag.app import RagService, create_rag_app
from localsuite.supervisor.control import create_control_app
from localsuite.supervisor.services import build_services
from localsuite.supervisor.supervisor import Supervisor
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.rag import Rag
from localsuite.testing.servers import free_port, serve_in_thread

CALL_BOUND = 30.0  # seconds: a tool call that takes longer is a hang, not slowness


def closed_url() -> str:
    """A loopback URL nobody listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@dataclass
class Upstreams:
    chat: FakeUpstream  # behind inference-chat
    code: FakeUpstream  # behind inference-code
    chat_url: str
    code_url: str


@dataclass
class Services:
    """Where the MCP server finds the suite; a field left None is a closed port."""

    tmp: Path
    upstreams: Upstreams
    gateway: str | None = None
    rag: Rag | None = None
    supervisor: str | None = None
    embedding: str | None = None

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.tmp / "data",
            "models_dir": self.tmp / "models",
            "api_gateway_url": self.gateway or closed_url(),
            "rag_url": self.rag.url if self.rag else closed_url(),
            "supervisor_url": self.supervisor or closed_url(),
            "embedding_url": self.embedding or closed_url(),
            "inference_chat_url": f"{self.upstreams.chat_url}/v1",
            "inference_code_url": f"{self.upstreams.code_url}/v1",
            "mcp_status_timeout": 5.0,
            **overrides,
        }
        return Settings(_env_file=None, **values)


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with no_backoff():
        yield


@pytest.fixture
def opened() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def upstreams(opened: ExitStack) -> Upstreams:
    chat, code = FakeUpstream("chat-upstream"), FakeUpstream("code-upstream")
    chat_url = opened.enter_context(serve_in_thread(chat.app()))
    code_url = opened.enter_context(serve_in_thread(code.app()))
    return Upstreams(chat, code, chat_url, code_url)


@pytest.fixture
def gateway(upstreams: Upstreams, opened: ExitStack) -> str:
    """The real gateway; chat-7b → inference-chat first, code-7b → inference-code first."""
    app = create_gateway_app(make_settings(upstreams.chat_url, upstreams.code_url))
    return opened.enter_context(serve_in_thread(app))


RagFactory = Callable[[str], Rag]


@pytest.fixture
def make_rag(tmp_path: Path, embedding_url: str, opened: ExitStack) -> RagFactory:
    """The real rag service, with the real embedding service and the given gateway."""

    def build(gateway_url: str) -> Rag:
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path / "data",
            embedding_url=embedding_url,
            api_gateway_url=gateway_url,
            rag_chunk_size=48,
            rag_chunk_overlap=12,
            rag_llm_max_tokens=8,
            rag_probe_interval=0.5,
        )
        app = create_rag_app(settings)
        url = opened.enter_context(serve_in_thread(app))
        client = opened.enter_context(httpx.Client(base_url=url, timeout=60))
        service: RagService = app.state.rag
        return Rag(url, service, service.documents_dir, client)

    return build


@pytest.fixture
def rag(make_rag: RagFactory, gateway: str) -> Rag:
    return make_rag(gateway)


@pytest.fixture
def supervisor(tmp_path: Path, opened: ExitStack) -> str:
    """The supervisor's real control API over a p2 supervisor that was never run: every
    service is stopped, the registry is real (the bundled model and other.gguf)."""
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    (models / "other.gguf").write_bytes(b"GGUF")
    settings = Settings(_env_file=None, data_dir=tmp_path / "supervisor", models_dir=models)
    specs = build_services(settings, "p2")
    sup = Supervisor(settings, specs, environ={}, preset="p2")
    return opened.enter_context(serve_in_thread(create_control_app(sup)))


@pytest.fixture
def services(tmp_path: Path, upstreams: Upstreams) -> Services:
    return Services(tmp_path, upstreams)


@dataclass
class Mcp:
    client: Client
    server: SuiteServer

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        with anyio.fail_after(CALL_BOUND):
            return await self.client.call_tool(tool, arguments)

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.call(tool, **arguments)
        assert not result.is_error, text(result)
        assert result.structured_content is not None
        content: dict[str, Any] = result.structured_content
        return content

    async def error(self, tool: str, **arguments: Any) -> str:
        result = await self.call(tool, **arguments)
        assert result.is_error, result.structured_content
        return text(result)


def text(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


class Connect:
    """In-memory SDK clients of new MCP servers over `services`: `async with connect(**
    settings) as mcp` for several calls, `await connect.ok(tool, ...)` (or `.error`) for
    one call on a server with the default settings."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @asynccontextmanager
    async def __call__(self, **overrides: Any) -> AsyncIterator[Mcp]:
        server = create_mcp_server(self.services.settings(**overrides))
        async with Client(server) as client:
            yield Mcp(client, server)

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        async with self() as mcp:
            return await mcp.ok(tool, **arguments)

    async def error(self, tool: str, **arguments: Any) -> str:
        async with self() as mcp:
            return await mcp.error(tool, **arguments)


@pytest.fixture
def connect(services: Services) -> Connect:
    return Connect(services)
