"""A fault-injecting backend, for what a real llama-server cannot be made to do on demand:
answer 429 with Retry-After, refuse a prompt as too long, cut a stream mid-answer, stall,
answer garbage, call a tool.

It behaves like llama-server where the gateway depends on it: `/health` (200, or 503
while "loading"), `/props` (`total_slots`), `/v1/models` (with router mode's per-model
status when told), and the four generating protocols — chat and text completions,
Anthropic messages (and `count_tokens`), the Responses API — plain or streamed, one word
per event, and an assistant prefill echoed at the head of the answer.

Faults are set per instance (`fault(...)`, for every model or for one `model=`), or over
HTTP (`POST /_control`); every request body is recorded in `requests`, its headers in
`headers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "runs",
         "far", "away"]  # fmt: skip
TOOL = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}
JSON = "application/json"


@dataclass
class Fault:
    """What the next requests get. `times` = how many requests it applies to (-1: all).

    modes: ok | status | reset (the connection dropped before any answer) | cut (reset
    mid-stream) | stall (silence mid-stream) | hang (no answer at all) | garbage (a body
    or an event that is not JSON) | slow (`delay` before the headers) | slow_first
    (headers, then `delay` before the first event) | no_done (a complete stream without
    its last event) | refuse_prefill (400 for a request that ends in an assistant turn,
    as some servers answer; others are answered as usual)"""

    mode: str = "ok"
    status: int = 500
    body: dict[str, Any] | None = None
    retry_after: str | None = None
    after_events: int = 3  # for stream faults: content events sent before the fault
    delay: float = 0.0
    times: int = -1


@dataclass
class FakeUpstream:
    name: str = "fake"
    words: list[str] = field(default_factory=lambda: list(WORDS))
    health_status: int = 200
    health_hangs: bool = False
    slots: int | None = None  # /props total_slots; None: no /props (not llama-server)
    tool_call: bool = False  # answer with a call of TOOL instead of text
    refuse_prefill: bool = False  # 400 for a trailing assistant turn (some servers do)
    # a Messages stream without `message_start`, as some llama-server builds send when
    # the first token is a piece of an emoji
    skip_message_start: bool = False
    model_status: dict[str, dict[str, Any]] = field(default_factory=dict)  # router mode
    burst: bool = False  # a stream with no fault goes out in one write (benchmarks' stub)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0  # answers being given now
    most_in_flight: int = 0
    _fault: Fault = field(default_factory=Fault)
    _model_faults: dict[str, Fault] = field(default_factory=dict)

    def fault(self, mode: str = "ok", *, model: str | None = None, **kw: Any) -> None:
        if model is None:
            self._fault = Fault(mode=mode, **kw)
        else:
            self._model_faults[model] = Fault(mode=mode, **kw)

    def heal(self) -> None:
        self._fault = Fault()
        self._model_faults.clear()
        self.health_status = 200
        self.health_hangs = False

    def _take_fault(self, model: Any) -> Fault:
        key = model if isinstance(model, str) and model in self._model_faults else None
        fault = self._model_faults[key] if key is not None else self._fault
        if fault.times > 0:
            fault.times -= 1
            if fault.times == 0:
                if key is not None:
                    del self._model_faults[key]
                else:
                    self._fault = Fault()
        return fault

    # --- the app ---------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/health", self._health),
                Route("/props", self._props),
                Route("/v1/models", self._models),
                Route("/v1/chat/completions", self._endpoint("chat"), methods=["POST"]),
                Route("/v1/completions", self._endpoint("completions"), methods=["POST"]),
                Route("/v1/messages", self._endpoint("messages"), methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
                Route("/v1/responses", self._endpoint("responses"), methods=["POST"]),
                Route("/_control", self._control, methods=["POST"]),
            ]
        )

    async def _health(self, _: Request) -> Response:
        if self.health_hangs:
            await asyncio.sleep(3600)
        body = {"status": "ok"} if self.health_status == 200 else {"error": "loading"}
        return Response(orjson.dumps(body), self.health_status, media_type=JSON)

    async def _props(self, _: Request) -> Response:
        if self.slots is None:
            return Response(b'{"error": "not found"}', 404, media_type=JSON)
        return Response(orjson.dumps({"total_slots": self.slots}), media_type=JSON)

    async def _models(self, _: Request) -> Response:
        data: list[dict[str, Any]] = [{"id": self.name, "object": "model"}]
        data += [{"id": m, "object": "model", "status": s} for m, s in self.model_status.items()]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)

    async def _control(self, request: Request) -> Response:
        data = orjson.loads(await request.body())
        if data.get("heal"):
            self.heal()
        else:
            self.fault(**data)
        return Response(b"{}", media_type=JSON)

    async def _count_tokens(self, request: Request) -> Response:
        body = await self._record(request)
        size = len(orjson.dumps(body.get("messages") or []))
        return Response(orjson.dumps({"input_tokens": max(1, size // 4)}), media_type=JSON)

    async def _record(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(await request.body())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        return body

    def _begin(self) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _endpoint(self, protocol: str) -> Callable[[Request], Any]:
        async def answer(request: Request) -> Response:
            body = await self._record(request)
            fault = self._take_fault(body.get("model"))
            if fault.mode == "reset":
                _drop_connection(request)
                return Response(b"", 500)  # never delivered: the connection is gone
            self._begin()
            try:
                response = await self._answer(protocol, body, fault)
            except BaseException:
                self.in_flight -= 1
                raise
            if not isinstance(response, StreamingResponse):
                self.in_flight -= 1
            return response

        return answer

    # --- answers ---------------------------------------------------------------------
    async def _answer(self, protocol: str, body: dict[str, Any], fault: Fault) -> Response:
        if fault.mode == "hang":
            await asyncio.sleep(3600)
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay)
        if fault.mode == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            payload = fault.body or {"error": {"message": "injected", "type": "server_error"}}
            return Response(orjson.dumps(payload), fault.status, headers, media_type=JSON)
        prefill = _prefill(protocol, body)
        if prefill and (self.refuse_prefill or fault.mode == "refuse_prefill"):
            refusal = {"error": {"message": "assistant prefill is not supported",
                                 "type": "invalid_request_error"}}  # fmt: skip
            return Response(orjson.dumps(refusal), 400, media_type=JSON)
        # Like a model continuing its own text: pick up after the words already given.
        given = str(body.get("prompt") or "") if protocol == "completions" else prefill
        start = self._words_already_given(given)
        limit = next((body[k] for k in ("max_tokens", "max_output_tokens") if body.get(k)), None)
        words = self.words[start : start + int(limit or len(self.words))]
        pieces = [(" " if i or start else "") + w for i, w in enumerate(words)]
        if prefill and pieces:
            pieces[0] = prefill + pieces[0]  # llama-server echoes a prefill
        answer = _Answer(self.name, protocol, pieces, self.tool_call, body,
                         self.skip_message_start)  # fmt: skip
        if not body.get("stream"):
            if fault.mode == "garbage":
                return Response(b"<html>not json</html>", 200, media_type="text/html")
            return Response(orjson.dumps(answer.plain()), media_type=JSON)
        if self.burst and fault.mode == "ok":
            burst = b"".join(event for event, _ in answer.events())
            return Response(burst, media_type="text/event-stream")
        return StreamingResponse(self._events(answer, fault), media_type="text/event-stream")

    def _words_already_given(self, text: str) -> int:
        for count in range(len(self.words), 0, -1):
            if text.endswith(" ".join(self.words[:count])):
                return count
        return 0

    async def _events(self, answer: _Answer, fault: Fault) -> AsyncIterator[bytes]:
        try:
            async for event in self._faulty_events(answer, fault):
                yield event
        finally:
            self.in_flight -= 1

    async def _faulty_events(self, answer: _Answer, fault: Fault) -> AsyncIterator[bytes]:
        if fault.mode == "slow_first":
            await asyncio.sleep(fault.delay)
        content = 0
        events = answer.events()
        if fault.mode == "no_done":
            events = events[:-1]  # complete, but without the protocol's last event
        for event, is_content in events:
            if is_content and content == fault.after_events:
                if fault.mode == "cut":
                    raise ConnectionResetError("injected cut")
                if fault.mode == "stall":
                    await asyncio.sleep(3600)
                if fault.mode == "garbage":
                    yield b"data: {not json\n\n"
                    return
            content += is_content
            yield event
            await asyncio.sleep(0)


def _drop_connection(request: Request) -> None:
    """Abort the TCP connection under this request (uvicorn's transport), unanswered."""
    cycle = getattr(request.receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("cannot reach the connection to drop it (not uvicorn?)")
    transport.abort()


def _prefill(protocol: str, body: dict[str, Any]) -> str:
    if protocol not in ("chat", "messages", "responses"):
        return ""
    messages = body.get("input") if protocol == "responses" else body.get("messages")
    if not isinstance(messages, list):
        return ""
    last = messages[-1] if messages else {}
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return ""
    content = last.get("content")
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return str(content or "")


def _sse(data: dict[str, Any], name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


class _Answer:
    """One answer in one protocol: its plain body, or its stream's events."""

    def __init__(
        self,
        name: str,
        protocol: str,
        pieces: list[str],
        tool: bool,
        body: dict[str, Any],
        skip_message_start: bool = False,
    ) -> None:
        self.skip_message_start = skip_message_start
        self.name = name
        self.protocol = protocol
        self.pieces = pieces
        self.tool = tool
        self.body = body
        self.text = "".join(pieces)
        self.usage = {"prompt_tokens": 5, "completion_tokens": len(pieces),
                      "total_tokens": 5 + len(pieces)}  # fmt: skip
        self.args = [TOOL["arguments"][i : i + 8] for i in range(0, len(TOOL["arguments"]), 8)]

    @property
    def finish(self) -> str:
        if self.tool:
            return "tool_calls"
        return "length" if self.pieces else "stop"

    # --- plain ---------------------------------------------------------------------
    def plain(self) -> dict[str, Any]:
        return getattr(self, f"_plain_{self.protocol}")()  # type: ignore[no-any-return]

    def _plain_chat(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None if self.tool else self.text}
        if self.tool:
            message["tool_calls"] = [{"id": "call_1", "type": "function", "function": TOOL}]
        return {"id": f"fake-{self.name}", "object": "chat.completion", "model": self.name,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish}],
                "usage": self.usage}  # fmt: skip

    def _plain_completions(self) -> dict[str, Any]:
        return {"id": f"fake-{self.name}", "object": "text_completion", "model": self.name,
                "choices": [{"index": 0, "text": self.text, "finish_reason": self.finish}],
                "usage": self.usage}  # fmt: skip

    def _plain_messages(self) -> dict[str, Any]:
        block: dict[str, Any] = (
            {"type": "tool_use", "id": "toolu_1", "name": TOOL["name"],
             "input": orjson.loads(TOOL["arguments"])}
            if self.tool else {"type": "text", "text": self.text}
        )  # fmt: skip
        return {"id": f"msg_{self.name}", "type": "message", "role": "assistant",
                "model": self.name, "content": [block], "stop_reason": self._stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": len(self.pieces)}}  # fmt: skip

    @property
    def _stop_reason(self) -> str:
        return "tool_use" if self.tool else "max_tokens" if self.pieces else "end_turn"

    def _response_output(self) -> list[dict[str, Any]]:
        if self.tool:
            return [{"type": "function_call", "id": "fc_1", "call_id": "call_1",
                     "name": TOOL["name"], "arguments": TOOL["arguments"],
                     "status": "completed"}]  # fmt: skip
        return [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": self.text,
                              "annotations": []}]}]  # fmt: skip

    def _plain_responses(self) -> dict[str, Any]:
        return {"id": f"resp_{self.name}", "object": "response", "status": "completed",
                "model": self.name, "output": self._response_output(),
                "usage": {"input_tokens": 5, "output_tokens": len(self.pieces),
                          "total_tokens": 5 + len(self.pieces)}}  # fmt: skip

    # --- streams: (event, whether it carries content); the protocol's last event last ---
    def events(self) -> list[tuple[bytes, bool]]:
        events: list[tuple[bytes, bool]] = getattr(self, f"_events_{self.protocol}")()
        return events

    def _choice_chunk(self, choice: dict[str, Any], **extra: Any) -> bytes:
        chat = self.protocol == "chat"
        chunk = {"id": f"fake-{self.name}", "model": self.name,
                 "object": "chat.completion.chunk" if chat else "text_completion",
                 "choices": [{"index": 0, "finish_reason": None, **choice}], **extra}  # fmt: skip
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _events_chat(self) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = [
            (self._choice_chunk({"delta": {"role": "assistant", "content": None}}), False)
        ]
        if self.tool:
            first = {"index": 0, "id": "call_1", "type": "function",
                     "function": {"name": TOOL["name"], "arguments": ""}}  # fmt: skip
            out.append((self._choice_chunk({"delta": {"tool_calls": [first]}}), True))
            for part in self.args:
                call = {"index": 0, "function": {"arguments": part}}
                out.append((self._choice_chunk({"delta": {"tool_calls": [call]}}), True))
        else:
            out += [(self._choice_chunk({"delta": {"content": p}}), True) for p in self.pieces]
        return self._choices_end(out, {"delta": {}})

    def _events_completions(self) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = [
            (self._choice_chunk({"text": p}), True) for p in self.pieces
        ]
        return self._choices_end(out, {"text": ""})

    def _choices_end(
        self, out: list[tuple[bytes, bool]], last: dict[str, Any]
    ) -> list[tuple[bytes, bool]]:
        out.append((self._choice_chunk({**last, "finish_reason": self.finish}), False))
        options = self.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {"id": f"fake-{self.name}", "model": self.name, "choices": [],
                     "usage": self.usage}  # fmt: skip
            out.append((b"data: " + orjson.dumps(usage) + b"\n\n", False))
        out.append((b"data: [DONE]\n\n", False))
        return out

    def _events_messages(self) -> list[tuple[bytes, bool]]:
        start = {"type": "message_start", "message": {
            "id": f"msg_{self.name}", "type": "message", "role": "assistant", "content": [],
            "model": self.name, "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 0}}}  # fmt: skip
        out: list[tuple[bytes, bool]] = []
        if not self.skip_message_start:
            out.append((_sse(start, "message_start"), False))
        if self.tool:
            block = {"type": "tool_use", "id": "toolu_1", "name": TOOL["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in self.args]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in self.pieces]
        out.append((_sse({"type": "content_block_start", "index": 0, "content_block": block},
                         "content_block_start"), False))  # fmt: skip
        out += [(_sse({"type": "content_block_delta", "index": 0, "delta": d},
                      "content_block_delta"), True) for d in deltas]  # fmt: skip
        out.append((_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"), False))
        delta = {"type": "message_delta", "delta": {"stop_reason": self._stop_reason,
                 "stop_sequence": None}, "usage": {"output_tokens": len(deltas)}}  # fmt: skip
        out.append((_sse(delta, "message_delta"), False))
        out.append((_sse({"type": "message_stop"}, "message_stop"), False))
        return out

    def _events_responses(self) -> list[tuple[bytes, bool]]:
        response = self._plain_responses()
        pending = {**response, "status": "in_progress", "output": []}
        seq = iter(range(1, 1000))

        def event(kind: str, **data: Any) -> bytes:
            return _sse({"type": kind, "sequence_number": next(seq), **data}, kind)

        out: list[tuple[bytes, bool]] = [
            (event("response.created", response=pending), False),
            (event("response.in_progress", response=pending), False),
        ]
        item = self._response_output()[0]
        out.append((event("response.output_item.added", output_index=0,
                          item={**item, "status": "in_progress"}), False))  # fmt: skip
        if self.tool:
            out += [(event("response.function_call_arguments.delta", item_id="fc_1",
                           output_index=0, delta=p), True) for p in self.args]  # fmt: skip
            out.append((event("response.function_call_arguments.done", item_id="fc_1",
                              output_index=0, arguments=TOOL["arguments"]), False))  # fmt: skip
        else:
            out += [(event("response.output_text.delta", item_id="msg_1", output_index=0,
                           content_index=0, delta=p), True) for p in self.pieces]  # fmt: skip
            out.append((event("response.output_text.done", item_id="msg_1", output_index=0,
                              content_index=0, text=self.text), False))  # fmt: skip
        out.append((event("response.output_item.done", output_index=0, item=item), False))
        out.append((event("response.completed", response=response), False))
        return out
