"""The services the tools call, over HTTP only, and the one place their failures become
tool errors that say which service failed and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from localsuite.core.http import (
    AnswerTimeout,
    BadAnswer,
    ConnectionLost,
    ErrorAnswer,
    NoAnswer,
    bearer,
    call_json,
    create_session,
)
from localsuite.core.settings import Settings
from localsuite.mcp_server.errors import (
    DependencyFailed,
    Rejected,
    TimedOut,
    ToolFailure,
    Unavailable,
)

Model = TypeVar("Model", bound=BaseModel)

GATEWAY_HINT = (
    "start the stack with `localsuite up` (`localsuite status` shows what runs); the MCP "
    "server looks for the gateway at API_GATEWAY_URL"
)
RAG_HINT = (
    "start it with `localsuite up` (preset p2 or p3: p1 has no rag; `localsuite status` "
    "shows what runs); the MCP server looks for it at RAG_URL"
)
SUPERVISOR_HINT = (
    "model switches and the supervisor's view of the stack need a stack started with "
    "`localsuite up`; under Docker or Kubernetes there is no supervisor: set CHAT_MODEL or "
    "CODE_MODEL and recreate the container instead"
)


@dataclass(frozen=True, slots=True)
class Remote:
    """One service the tools call: JSON calls with a deadline, failures translated once."""

    name: str
    url: str
    hint: str
    suite: Suite

    async def call(
        self,
        method: str,
        path: str,
        *,
        budget: float,
        payload: object = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        try:
            return await call_json(
                self.suite.session, method, f"{self.url}{path}", budget=budget,
                payload=payload, headers={**self.suite.headers_for(self.name), **(headers or {})},
                what=self.name,
            )  # fmt: skip
        except NoAnswer as exc:
            raise self.no_answer(exc, budget) from exc
        except ErrorAnswer as exc:
            raise self.error_answer(exc) from exc
        except BadAnswer as exc:
            raise DependencyFailed(f"{self.name} answered with something that is not JSON") from exc

    async def get(self, path: str, model: type[Model], *, budget: float) -> Model:
        return self.parse(model, await self.call("GET", path, budget=budget), path)

    def parse(self, model: type[Model], data: Any, path: str) -> Model:
        """`data` as `model`; a shape the contract does not promise is the service's fault."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise DependencyFailed(
                f"{self.name} answered {path} with an unexpected shape "
                f"({exc.error_count()} problems, first: {exc.errors()[0]['msg']})"
            ) from exc

    def no_answer(self, exc: NoAnswer, budget: float) -> ToolFailure:
        if isinstance(exc, AnswerTimeout):
            return TimedOut(
                f"{self.name} at {self.url} did not answer within {budget:g} s; it may be "
                f"overloaded or hung: `localsuite status` shows its health"
            )
        if isinstance(exc, ConnectionLost):
            return Unavailable(
                f"{self.name} at {self.url} dropped the connection before answering; "
                f"it may have crashed or be restarting: try again, or {self.hint}"
            )
        return Unavailable(f"{self.name} is not reachable at {self.url}: {self.hint}")

    def error_answer(self, exc: ErrorAnswer) -> ToolFailure:
        reason = exc.message()
        if exc.status == 503:
            wait = f"; try again in {exc.retry_after:g} s" if exc.retry_after else ""
            return Unavailable(f"{self.name} is unavailable: {reason}{wait}")
        if exc.status == 504:
            return TimedOut(f"{self.name} gave up: {reason}")
        if exc.status == 401:
            return Rejected(
                f"{self.name} refused the API key: give the MCP server the suite's "
                "LOCALSUITE_API_KEY"
            )
        if 400 <= exc.status < 500:
            return Rejected(f"{self.name} refused the request: {reason}")
        return DependencyFailed(f"{self.name} failed (HTTP {exc.status}): {reason}")


class Suite:
    """The gateway, rag and the supervisor, with one HTTP session between them.

    Opened by the MCP server's lifespan; nested opens share the session (in-memory
    clients each enter the lifespan), and the last close ends it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.headers = bearer(settings.api_key)
        # a model switch changes the stack: the supervisor wants the admin key
        self.admin_headers = bearer(settings.admin_key)
        self.gateway = Remote("api-gateway", settings.gateway_service_url, GATEWAY_HINT, self)
        self.rag = Remote("rag", settings.rag_service_url, RAG_HINT, self)
        self.supervisor = Remote(
            "supervisor", settings.supervisor_service_url, SUPERVISOR_HINT, self
        )
        self._session: aiohttp.ClientSession | None = None
        self._users = 0

    def headers_for(self, service: str) -> dict[str, str]:
        return self.admin_headers if service == "supervisor" else self.headers

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the suite's HTTP session is used outside the server's lifespan")
        return self._session

    @property
    def status_budget(self) -> float:
        return self.settings.mcp_status_timeout

    def remote(self, name: str, url: str, hint: str) -> Remote:
        """Another service, for probes (the inference servers, embedding)."""
        return Remote(name, url.rstrip("/"), hint, self)

    async def __aenter__(self) -> Suite:
        if self._session is None:
            self._session = create_session(connect_timeout=self.settings.llm_connect_timeout)
        self._users += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._users -= 1
        if self._users == 0 and self._session is not None:
            session, self._session = self._session, None
            await session.close()
