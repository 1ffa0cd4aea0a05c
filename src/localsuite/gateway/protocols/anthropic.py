"""Anthropic's Messages API (`/v1/messages`) and its token count.

Its stream names each event: `message_start`, then per content block
`content_block_start` / `content_block_delta`... / `content_block_stop`, then
`message_delta` (the stop reason and usage) and `message_stop`; `ping` may come anywhere.

A stream that breaks while every block is text is continued on another deployment with
the partial answer as a trailing assistant turn. The client still sees exactly one
`message_start` and one `message_stop`: the continuation's own `message_start` is
dropped, its first text block is merged into the block the client has open (or numbered
after the client's blocks), and indexes are renumbered to the client's. A break inside a
`tool_use` (or `thinking`) block is not continued: the stream ends with `event: error`.

Some llama-server builds skip `message_start` when the first token is a piece of a
multi-byte character (an emoji): the gateway then opens the message itself, so that
clients (the Anthropic SDK needs it to accumulate the message) still see one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from localsuite.core.errors import ANTHROPIC, LocalSuiteError
from localsuite.gateway.outcomes import BadStream
from localsuite.gateway.protocols.base import (
    Assembler,
    EchoFilter,
    Protocol,
    StreamView,
    conversation_key,
    cut_short,
    json_object,
    reduced_limits,
    stream_error,
)
from localsuite.gateway.sse import Event


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return Event.build(orjson.dumps(data), kind.encode()).raw


def opening(body: Mapping[str, Any]) -> dict[str, Any]:
    """The `message` of a `message_start` a backend did not send."""
    return {
        "id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant",
        "content": [], "model": str(body.get("model", "")), "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
    }  # fmt: skip


class MessagesStream(StreamView):
    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__(body)
        self.continuable = isinstance(body.get("messages"), list)
        self.blocks: list[str] = []  # the client's blocks, by type
        self.open_block: int | None = None  # the client's block that is open now
        self.offset = 0  # upstream index + offset = the client's index
        self.merge_first = False  # the continuation's first text block is the open one
        self.output_tokens = 0
        self.message_started = False

    def begin(self, *, continuing: bool) -> None:
        super().begin(continuing=continuing)
        if continuing:
            open_text = self.open_block is not None and self.blocks[self.open_block] == "text"
            self.merge_first = open_text
            self.offset = self.open_block if open_text and self.open_block is not None else len(
                self.blocks)  # fmt: skip

    def feed(self, event: Event) -> bytes | None:
        data = json_object(event, "backend")
        kind = str(data.get("type") or (event.name or b"").decode())
        if kind == "error" or event.name == b"error":
            raise stream_error("backend", data.get("error", data))
        if kind == "message_start":
            if self.message_started:
                return None
            self.message_started = True
            return event.raw
        if kind != "ping" and not self.message_started:
            self.message_started = True
            opened = _event("message_start", {"type": "message_start",
                                              "message": opening(self.body)})  # fmt: skip
            return opened + (self.feed(event) or b"")
        if kind == "content_block_start":
            return self._block_start(event, data)
        if kind in ("content_block_delta", "content_block_stop"):
            return self._block_event(event, data, kind)
        if kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.finished = True
            usage = data.get("usage")
            if self.continuing and isinstance(usage, dict) and isinstance(
                    usage.get("output_tokens"), int):  # fmt: skip
                usage["output_tokens"] += self.output_tokens
                return _event(kind, data)
            return event.raw
        if kind == "message_stop":
            self.terminated = True
        return event.raw

    def _block_start(self, event: Event, data: dict[str, Any]) -> bytes | None:
        block = data.get("content_block")
        block_type = str(block.get("type")) if isinstance(block, dict) else "unknown"
        if block_type != "text":
            self.continuable = False
        if self.merge_first and block_type == "text":
            self.merge_first = False
            return None  # the client's open text block goes on
        self.merge_first = False
        index = len(self.blocks)
        self.blocks.append(block_type)
        self.open_block = index
        upstream = data.get("index")
        if isinstance(upstream, int):
            self.offset = index - upstream
        return self._renumbered(event, data, index)

    def _block_event(self, event: Event, data: dict[str, Any], kind: str) -> bytes | None:
        upstream = data.get("index")
        index = upstream + self.offset if isinstance(upstream, int) else self.open_block
        delta = data.get("delta")
        changed = False
        if kind == "content_block_delta" and isinstance(delta, dict):
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                text = delta["text"]
                kept = self._text(text)
                if kept != text:
                    delta["text"] = kept
                    changed = True
                if not kept:
                    return None
            elif delta.get("type") not in (None, "text_delta"):
                self.continuable = False  # input_json_delta, thinking_delta, ...
        if kind == "content_block_stop":
            self.open_block = None  # what an echo filter still holds was all echo
        if changed or index != upstream:
            return _event(kind, {**data, "index": index})
        return event.raw

    def _renumbered(self, event: Event, data: dict[str, Any], index: int) -> bytes:
        if data.get("index") == index:
            return event.raw
        return _event("content_block_start", {**data, "index": index})

    def _text(self, text: str) -> str:
        kept = super()._text(text)
        if kept:
            self.output_tokens += 1
        return kept

    def close(self) -> bytes | None:
        if self.finished:
            self.terminated = True
            return _event("message_stop", {"type": "message_stop"})
        raise cut_short("backend")

    def continuation(self) -> dict[str, Any]:
        body = reduced_limits(dict(self.body), self.tokens)
        messages = list(self.body["messages"])
        prefill = self.partial
        last = messages[-1] if messages else None
        if isinstance(last, dict) and last.get("role") == "assistant":
            given = _text_of(last.get("content"))
            prefill = self.partial if self.partial.startswith(given) else given + self.partial
            messages[-1] = {**last, "content": prefill}
        else:
            messages.append({"role": "assistant", "content": prefill})
        body["messages"] = messages
        self.echo = EchoFilter(prefill)
        return body

    def error_event(self, error: LocalSuiteError) -> bytes:
        return _event("error", ANTHROPIC.body(error))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


class MessagesAssembler(Assembler):
    """Events → one `message`, as the backend would have answered it plain."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__()
        self.body = body
        self.message: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json_parts: dict[int, str] = {}

    def feed(self, event: Event) -> None:
        data = json_object(event, "backend")
        kind = str(data.get("type") or (event.name or b"").decode())
        if kind == "error" or event.name == b"error":
            raise stream_error("backend", data.get("error", data))
        if kind == "message_start":
            message = data.get("message")
            if not isinstance(message, dict):
                raise BadStream("backend: message_start carries no message")
            self.message = dict(message)
        elif kind != "ping" and self.message is None:
            self.message = opening(self.body)  # a backend that skipped `message_start`
        if kind == "content_block_start":
            block = data.get("content_block")
            self.blocks[int(data.get("index", len(self.blocks)))] = dict(block) if isinstance(
                block, dict) else {"type": "text", "text": ""}  # fmt: skip
        elif kind == "content_block_delta":
            self._delta(int(data.get("index", 0)), data.get("delta"))
        elif kind == "content_block_stop":
            index = int(data.get("index", 0))
            if index in self.json_parts and index in self.blocks:
                try:
                    self.blocks[index]["input"] = orjson.loads(self.json_parts.pop(index) or "{}")
                except orjson.JSONDecodeError as exc:
                    raise BadStream("backend: a tool call's input is not JSON") from exc
        elif kind == "message_delta":
            self._message_delta(data)
        elif kind == "message_stop":
            self.terminated = True

    def _delta(self, index: int, delta: Any) -> None:
        if not isinstance(delta, dict):
            raise BadStream("backend: a content delta is not an object")
        block = self.blocks.setdefault(index, {"type": "text", "text": ""})
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = str(block.get("text", "")) + str(delta.get("text", ""))
        elif kind == "input_json_delta":
            self.json_parts[index] = self.json_parts.get(index, "") + str(
                delta.get("partial_json", ""))  # fmt: skip
        elif kind == "thinking_delta":
            block["thinking"] = str(block.get("thinking", "")) + str(delta.get("thinking", ""))
        elif kind == "signature_delta":
            block["signature"] = str(delta.get("signature", ""))

    def _message_delta(self, data: dict[str, Any]) -> None:
        assert self.message is not None
        delta = data.get("delta")
        if isinstance(delta, dict):
            self.message.update(delta)
            if delta.get("stop_reason"):
                self.complete = True
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.message["usage"] = {**(self.message.get("usage") or {}), **usage}

    def result(self) -> bytes:
        message = dict(self.message or {"type": "message", "role": "assistant"})
        message["content"] = [self.blocks[i] for i in sorted(self.blocks)]
        return orjson.dumps(message)


class Messages(Protocol):
    endpoint = "messages"
    path = "/messages"
    shape = ANTHROPIC

    def validate(self, body: dict[str, Any]) -> None:
        self.require(body, "messages", list, "a list of messages")
        self.require(body, "max_tokens", int, "the most tokens to generate, an integer")
        if body["max_tokens"] < 1:
            self.require({}, "max_tokens", int, "at least 1")

    def affinity_key(self, body: Mapping[str, Any]) -> str | None:
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
            return f"user:{metadata['user_id']}"
        first = next(
            (m.get("content") for m in body.get("messages") or () if isinstance(m, dict)
             and m.get("role") == "user"),
            None,
        )  # fmt: skip
        return conversation_key("messages", body.get("system"), first)

    def view(self, body: Mapping[str, Any]) -> StreamView:
        return MessagesStream(body)

    def assembler(self, body: Mapping[str, Any]) -> Assembler:
        return MessagesAssembler(body)


class CountTokens(Messages):
    endpoint = "count_tokens"
    path = "/messages/count_tokens"
    generates = False

    def validate(self, body: dict[str, Any]) -> None:
        self.require(body, "messages", list, "a list of messages")
