"""A fault-injecting OpenAI-compatible upstream, for what a real llama-server cannot be
made to do on demand: answer 429 with Retry-After, refuse a prompt as too long, cut a
stream mid-answer, stall, or answer garbage.

It behaves like llama-server where the gateway depends on it: `/health` (200, or 503
while "loading"), chat and text completions, streams of one word per SSE event ending
in `[DONE]`, and an assistant prefill echoed at the head of the answer.

Faults are set per instance through `FakeUpstream.fault(...)` (in-process) or
`POST /_control` (over HTTP); every request body is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "and",
    "runs",
    "far",
    "away",
]


@dataclass
class Fault:
    """What the next requests get. `times` = how many requests it applies to (-1: all)."""

    mode: str = "ok"  # ok | status | cut | stall | hang | garbage | slow
    status: int = 500
    body: dict[str, Any] | None = None
    retry_after: str | None = None
    after_events: int = 3  # for cut/stall/garbage in streams: events sent before the fault
    delay: float = 0.0  # for slow: seconds before answering
    times: int = -1


@dataclass
class FakeUpstream:
    name: str = "fake"
    words: list[str] = field(default_factory=lambda: list(WORDS))
    health_status: int = 200
    health_hangs: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    _fault: Fault = field(default_factory=Fault)

    def fault(self, mode: str = "ok", **kw: Any) -> None:
        self._fault = Fault(mode=mode, **kw)

    def heal(self) -> None:
        self._fault = Fault()
        self.health_status = 200
        self.health_hangs = False

    def _take_fault(self) -> Fault:
        fault = self._fault
        if fault.times > 0:
            fault.times -= 1
            if fault.times == 0:
                self._fault = Fault()
        return fault

    # --- the app ---------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self._health),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models),
                Route("/_control", self._control, methods=["POST"]),
            ]
        )

    async def _health(self, _: Request) -> Response:
        if self.health_hangs:
            await asyncio.sleep(3600)
        body = {"status": "ok"} if self.health_status == 200 else {"error": "loading"}
        return Response(orjson.dumps(body), self.health_status, media_type="application/json")

    async def _models(self, _: Request) -> Response:
        return Response(orjson.dumps({"object": "list", "data": [{"id": self.name}]}))

    async def _control(self, request: Request) -> Response:
        data = orjson.loads(await request.body())
        if data.get("heal"):
            self.heal()
        else:
            self.fault(**data)
        return Response(b"{}", media_type="application/json")

    async def _chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        prefill = last.get("content", "") if last.get("role") == "assistant" else ""
        return await self._answer(body, prefill, chat=True)

    async def _completions(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        return await self._answer(body, "", chat=False)

    async def _answer(self, body: dict[str, Any], prefill: str, *, chat: bool) -> Response:
        fault = self._take_fault()
        if fault.mode == "hang":
            await asyncio.sleep(3600)
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
        if fault.mode == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            payload = fault.body or {"error": {"message": "injected", "type": "server_error"}}
            return Response(orjson.dumps(payload), fault.status, headers,
                            media_type="application/json")  # fmt: skip
        # Like a model continuing its own text: pick up after the words already given.
        given = prefill if chat else str(body.get("prompt") or "")
        start = self._words_already_given(given)
        max_tokens = int(body.get("max_tokens") or len(self.words))
        words = self.words[start : start + max_tokens]
        if not body.get("stream"):
            if fault.mode == "garbage":
                return Response(b"<html>not json</html>", 200, media_type="text/html")
            text = prefill + (" " if start else "") + " ".join(words)
            return Response(orjson.dumps(self._completion(text, len(words), chat)),
                            media_type="application/json")  # fmt: skip
        return StreamingResponse(
            self._events(words, prefill, chat, fault, start), media_type="text/event-stream"
        )

    def _words_already_given(self, text: str) -> int:
        for count in range(len(self.words), 0, -1):
            if text.endswith(" ".join(self.words[:count])):
                return count
        return 0

    async def _events(
        self, words: list[str], prefill: str, chat: bool, fault: Fault, start: int
    ) -> AsyncIterator[bytes]:
        if chat:
            yield self._sse({"role": "assistant", "content": None}, None, chat)
        pieces = [(" " if i or start else "") + w for i, w in enumerate(words)]
        if prefill and pieces:
            pieces[0] = prefill + pieces[0]  # llama-server echoes a prefill
        for index, piece in enumerate(pieces):
            if index == fault.after_events and fault.mode in ("cut", "stall", "garbage"):
                if fault.mode == "cut":
                    raise ConnectionResetError("injected cut")
                if fault.mode == "stall":
                    await asyncio.sleep(3600)
                yield b"data: {not json\n\n"
                return
            yield self._sse({"content": piece}, None, chat)
            await asyncio.sleep(0)
        yield self._sse({}, "length" if len(words) else "stop", chat)
        yield b"data: [DONE]\n\n"

    def _sse(self, delta: dict[str, Any], finish: str | None, chat: bool) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = delta
        else:
            choice["text"] = delta.get("content") or ""
        chunk = {
            "id": f"fake-{self.name}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "model": self.name,
            "choices": [choice],
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _completion(self, text: str, tokens: int, chat: bool) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": f"fake-{self.name}",
            "object": "chat.completion" if chat else "text_completion",
            "model": self.name,
            "choices": [choice],
            "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens},
        }
