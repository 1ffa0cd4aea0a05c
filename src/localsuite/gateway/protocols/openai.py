"""OpenAI's protocols: chat completions, text completions and the Responses API.

Chat and text completions stream `data:` events ending in `data: [DONE]`. A stream that
breaks is continued on another deployment: chat with the partial answer as an assistant
prefill, completions with it appended to the prompt. Not continued: several choices
(`n` > 1), tool calls (half a call cannot be resumed), a prompt that is not one string.

The Responses API names its events (`response.created` ... `response.completed`). Its
stream is continued like chat's while its answer is one message of text (the partial
text as a trailing assistant item), renumbered into the client's ids and sequence; one
that is calling a tool or reasoning is not: a break after the first byte ends it with
`response.failed` and `error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from localsuite.core.errors import LocalSuiteError
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

DONE_DATA = b"[DONE]"
DONE = b"data: [DONE]\n\n"


def _data_event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def _error_event(error: LocalSuiteError) -> bytes:
    return _data_event(error.render())


def _first_user(messages: Any, user_role: str = "user") -> Any:
    if not isinstance(messages, list):
        return None
    for message in messages:
        if isinstance(message, dict) and message.get("role") == user_role:
            return message.get("content")
    return None


# --- chat and text completions ----------------------------------------------------------


class _ChoiceStream(StreamView):
    """The part both completions protocols share: choices, finish reasons, [DONE]."""

    key: ClassVar[str]

    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__(body)
        self.continuable = body.get("n") in (None, 1)

    def feed(self, event: Event) -> bytes | None:
        if event.error:
            raise stream_error("backend", event.data.decode("utf-8", "replace"))
        if event.data == DONE_DATA:
            self.terminated = True
            return DONE
        chunk = json_object(event, "backend")
        if "error" in chunk:
            raise stream_error("backend", chunk["error"])
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return event.raw  # a usage-only chunk, or an extension
        if len(choices) > 1:
            self.continuable = False
        choice = choices[0] if isinstance(choices[0], dict) else {}
        text = self._choice_text(choice)
        raw = event.raw
        if isinstance(text, str) and text:
            kept = self._text(text)
            if kept != text:
                self._set_text(choice, kept)
                raw = _data_event(orjson.dumps(chunk))
            text = kept
        if choice.get("finish_reason"):
            self.finished = True
        elif self.continuing and not text and self._is_preamble(choice):
            return None  # the continuation's role chunk: the client already had one
        elif self.echo is not None and self.echo.active and not text:
            return None  # held back while it may still be the prefill's echo
        return raw

    def close(self) -> bytes | None:
        if self.finished:
            self.terminated = True
            return DONE
        raise cut_short("backend")

    def error_event(self, error: LocalSuiteError) -> bytes:
        return _error_event(error)

    def _choice_text(self, choice: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def _set_text(self, choice: dict[str, Any], text: str) -> None:
        raise NotImplementedError

    def _is_preamble(self, choice: dict[str, Any]) -> bool:
        return False


class ChatStream(_ChoiceStream):
    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__(body)
        self.continuable = self.continuable and isinstance(body.get("messages"), list)

    def _choice_text(self, choice: dict[str, Any]) -> str | None:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return None
        if delta.get("tool_calls") or delta.get("function_call"):
            self.continuable = False
        content = delta.get("content")
        return content if isinstance(content, str) else None

    def _set_text(self, choice: dict[str, Any], text: str) -> None:
        choice["delta"]["content"] = text

    def _is_preamble(self, choice: dict[str, Any]) -> bool:
        delta = choice.get("delta")
        return isinstance(delta, dict) and set(delta) <= {"role", "content"}

    def continuation(self) -> dict[str, Any]:
        body = reduced_limits(dict(self.body), self.tokens)
        messages = list(self.body["messages"])
        prefill = self.partial
        last = messages[-1] if messages else None
        if isinstance(last, dict) and last.get("role") == "assistant":
            # The client's own prefill: llama-server echoed it, so the partial holds it.
            given = str(last.get("content") or "")
            prefill = self.partial if self.partial.startswith(given) else given + self.partial
            messages[-1] = {**last, "content": prefill}
        else:
            messages.append({"role": "assistant", "content": prefill})
        body["messages"] = messages
        self.echo = EchoFilter(prefill)
        return body


class CompletionStream(_ChoiceStream):
    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__(body)
        self.continuable = self.continuable and isinstance(body.get("prompt"), str)

    def _choice_text(self, choice: dict[str, Any]) -> str | None:
        text = choice.get("text")
        return text if isinstance(text, str) else None

    def _set_text(self, choice: dict[str, Any], text: str) -> None:
        choice["text"] = text

    def continuation(self) -> dict[str, Any]:
        body = reduced_limits(dict(self.body), self.tokens)
        body["prompt"] = str(self.body["prompt"]) + self.partial
        self.echo = None
        return body


class _ChoicesAssembler(Assembler):
    """Chunks → one `chat.completion` / `text_completion`, every field kept."""

    object: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.head: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}  # usage, timings, ...: from the chunks that carry them
        self.choices: dict[int, dict[str, Any]] = {}

    def feed(self, event: Event) -> None:
        if event.error:
            raise stream_error("backend", event.data.decode("utf-8", "replace"))
        if event.data == DONE_DATA:
            self.terminated = True
            return
        chunk = json_object(event, "backend")
        if "error" in chunk:
            raise stream_error("backend", chunk["error"])
        if not self.head:
            self.head = {k: v for k, v in chunk.items() if k not in ("choices", "object")}
        for key, value in chunk.items():
            if key not in ("choices", "object", "id", "created", "model") and value is not None:
                self.extra[key] = value
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                raise BadStream("backend: a stream choice is not an object")
            index = choice.get("index", 0)
            merged = self.choices.setdefault(index if isinstance(index, int) else 0, {})
            self._merge(merged, choice)
            if choice.get("finish_reason"):
                merged["finish_reason"] = choice["finish_reason"]
        if self.choices and all(c.get("finish_reason") for c in self.choices.values()):
            self.complete = True

    def _merge(self, merged: dict[str, Any], choice: dict[str, Any]) -> None:
        raise NotImplementedError

    def result(self) -> bytes:
        choices = [self._finish(i, self.choices[i]) for i in sorted(self.choices)]
        answer = {**self.head, "object": self.object, "choices": choices, **self.extra}
        return orjson.dumps(answer)

    def _finish(self, index: int, merged: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _logprobs(merged: dict[str, Any], choice: dict[str, Any]) -> None:
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, dict):
            return
        into = merged.setdefault("logprobs", {})
        for key, value in logprobs.items():
            if isinstance(value, list):
                into.setdefault(key, []).extend(value)
            else:
                into[key] = value


class ChatAssembler(_ChoicesAssembler):
    object = "chat.completion"

    def _merge(self, merged: dict[str, Any], choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise BadStream("backend: a chat delta is not an object")
        message = merged.setdefault("message", {"role": "assistant", "content": None})
        for key, value in delta.items():
            if key == "role" and isinstance(value, str):
                message["role"] = value
            elif key == "tool_calls" and isinstance(value, list):
                self._tool_calls(message.setdefault("tool_calls", []), value)
            elif isinstance(value, str):
                message[key] = (message.get(key) or "") + value  # content, reasoning_content
            elif value is not None:
                message[key] = value
        self._logprobs(merged, choice)

    @staticmethod
    def _tool_calls(calls: list[dict[str, Any]], deltas: list[Any]) -> None:
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            index = delta.get("index", len(calls))
            while len(calls) <= index:
                calls.append({"function": {"name": "", "arguments": ""}})
            call = calls[index]
            for key, value in delta.items():
                if key == "function" and isinstance(value, dict):
                    for part in ("name", "arguments"):
                        if isinstance(value.get(part), str):
                            call["function"][part] += value[part]
                elif key != "index" and value is not None:
                    call[key] = value

    def _finish(self, index: int, merged: dict[str, Any]) -> dict[str, Any]:
        out = {"index": index, "message": merged.get("message", {"role": "assistant",
                                                                 "content": None})}  # fmt: skip
        out["finish_reason"] = merged.get("finish_reason")
        if "logprobs" in merged:
            out["logprobs"] = merged["logprobs"]
        return out


class CompletionAssembler(_ChoicesAssembler):
    object = "text_completion"

    def _merge(self, merged: dict[str, Any], choice: dict[str, Any]) -> None:
        text = choice.get("text")
        if isinstance(text, str):
            merged["text"] = merged.get("text", "") + text
        self._logprobs(merged, choice)

    def _finish(self, index: int, merged: dict[str, Any]) -> dict[str, Any]:
        out = {"index": index, "text": merged.get("text", ""),
               "finish_reason": merged.get("finish_reason")}  # fmt: skip
        out["logprobs"] = merged.get("logprobs")
        return out


class ChatCompletions(Protocol):
    endpoint = "chat"
    path = "/chat/completions"

    def validate(self, body: dict[str, Any]) -> None:
        self.require(body, "messages", list, "a list of messages")

    def affinity_key(self, body: Mapping[str, Any]) -> str | None:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        system = next(
            (m.get("content") for m in messages if isinstance(m, dict)
             and m.get("role") in ("system", "developer")),
            None,
        )  # fmt: skip
        return conversation_key("chat", system, _first_user(messages))

    def plain_upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        options = body.get("stream_options")
        options = {**options, "include_usage": True} if isinstance(options, dict) else {
            "include_usage": True}  # fmt: skip
        return {**body, "stream": True, "stream_options": options}

    def view(self, body: Mapping[str, Any]) -> StreamView:
        return ChatStream(body)

    def assembler(self, body: Mapping[str, Any]) -> Assembler:
        return ChatAssembler()


class Completions(ChatCompletions):
    endpoint = "completions"
    path = "/completions"

    def validate(self, body: dict[str, Any]) -> None:
        if body.get("prompt") is None:
            self.require(body, "prompt", (str, list), "a string or a list of them")

    def affinity_key(self, body: Mapping[str, Any]) -> str | None:
        return None  # a prompt has no conversation in it (a header or `user` can say one)

    def view(self, body: Mapping[str, Any]) -> StreamView:
        return CompletionStream(body)

    def assembler(self, body: Mapping[str, Any]) -> Assembler:
        return CompletionAssembler()


# --- the Responses API ------------------------------------------------------------------

_RESPONSE_TERMINAL = {b"response.completed", b"response.incomplete"}


class ResponsesStream(StreamView):
    """A Responses stream; continued while its answer is one message of text.

    A continuation's stream is made the client's: its `response.created`,
    `in_progress`, `output_item.added` and `content_part.added` are dropped (the client
    has its own), its events take the client's response and item ids and the next
    sequence numbers, and its `*.done` and `response.completed` events carry the whole
    text, not just the continuation's part."""

    _OPENING = frozenset({"response.created", "response.in_progress",
                          "response.output_item.added", "response.content_part.added"})  # fmt: skip

    def __init__(self, body: Mapping[str, Any]) -> None:
        super().__init__(body)
        given = body.get("input")
        self.continuable = isinstance(given, str | list) and not body.get("previous_response_id")
        self.response_id: str | None = None
        self.item_id: str | None = None
        self.items = 0
        self.sequence = 0

    def feed(self, event: Event) -> bytes | None:
        data = json_object(event, "backend")
        kind = str(data.get("type") or (event.name or b"").decode())
        if event.name == b"error" or kind in {"error", "response.failed"}:
            raise stream_error("backend", data.get("error") or data.get("response", data))
        if kind.encode() in _RESPONSE_TERMINAL:
            self.finished = self.terminated = True
        if kind == "response.output_item.added":
            self._item_added(data.get("item"))
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            text = data["delta"]
            kept = self._text(text)
            if self.continuing or kept != text:
                if not kept:
                    return None  # held back: it may still be the prefill's echo
                data["delta"] = kept
                return self._rewritten(kind, data)
        if not self.continuing:
            if isinstance(data.get("sequence_number"), int):
                self.sequence = data["sequence_number"]
            response = data.get("response")
            if isinstance(response, dict) and isinstance(response.get("id"), str):
                self.response_id = response["id"]
            return event.raw
        if kind in self._OPENING:
            return None
        return self._rewritten(kind, data)

    def _item_added(self, item: Any) -> None:
        if self.continuing:
            return
        self.items += 1
        if not isinstance(item, dict) or item.get("type") != "message" or self.items > 1:
            self.continuable = False  # a tool call, reasoning, a second item: not resumable
            return
        if isinstance(item.get("id"), str):
            self.item_id = item["id"]

    def _rewritten(self, kind: str, data: dict[str, Any]) -> bytes:
        """A continuation's event, as the client's stream goes on."""
        self.sequence += 1
        data["sequence_number"] = self.sequence
        if "item_id" in data and self.item_id:
            data["item_id"] = self.item_id
        if kind == "response.output_text.done":
            data["text"] = self.partial
        part = data.get("part")
        if isinstance(part, dict) and "text" in part:
            part["text"] = self.partial
        item = data.get("item")
        if isinstance(item, dict):
            self._whole_item(item)
        response = data.get("response")
        if isinstance(response, dict):
            if self.response_id:
                response["id"] = self.response_id
            for output in response.get("output") or ():
                if isinstance(output, dict):
                    self._whole_item(output)
        return Event.build(orjson.dumps(data), kind.encode()).raw

    def _whole_item(self, item: dict[str, Any]) -> None:
        if item.get("type") != "message":
            return
        if self.item_id:
            item["id"] = self.item_id
        for part in item.get("content") or ():
            if isinstance(part, dict) and part.get("type") == "output_text":
                part["text"] = self.partial

    def close(self) -> bytes | None:
        raise cut_short("backend")

    def continuation(self) -> dict[str, Any]:
        body = reduced_limits(dict(self.body), self.tokens)
        given = self.body["input"]
        items = (
            [{"type": "message", "role": "user", "content": given}]
            if isinstance(given, str) else list(given)
        )  # fmt: skip
        prefill = self.partial
        items.append({"type": "message", "role": "assistant",
                      "content": [{"type": "output_text", "text": prefill}]})  # fmt: skip
        body["input"] = items
        self.echo = EchoFilter(prefill)
        return body

    def error_event(self, error: LocalSuiteError) -> bytes:
        failed = {
            "type": "response.failed",
            "sequence_number": self.sequence + 1,
            "response": {
                "id": self.response_id,
                "object": "response",
                "status": "failed",
                "error": {"code": error.code, "message": error.message},
            },
        }
        fields = error.body()["error"]
        final = {"type": "error", "sequence_number": self.sequence + 2, "code": error.code,
                 "message": error.message, "param": None, "error": fields}  # fmt: skip
        return (
            Event.build(orjson.dumps(failed), b"response.failed").raw
            + Event.build(orjson.dumps(final), b"error").raw
        )


class ResponsesAssembler(Assembler):
    """The plain answer is the `response` of the stream's last event."""

    def __init__(self) -> None:
        super().__init__()
        self.response: dict[str, Any] | None = None

    def feed(self, event: Event) -> None:
        data = json_object(event, "backend")
        kind = str(data.get("type") or (event.name or b"").decode())
        if event.name == b"error" or kind in ("error", "response.failed"):
            raise stream_error("backend", data.get("error") or data.get("response", data))
        if kind.encode() in _RESPONSE_TERMINAL:
            response = data.get("response")
            if not isinstance(response, dict):
                raise BadStream(f"backend: {kind} carries no response object")
            self.response = response
            self.terminated = self.complete = True

    def result(self) -> bytes:
        assert self.response is not None
        return orjson.dumps(self.response)


class Responses(Protocol):
    endpoint = "responses"
    path = "/responses"

    def validate(self, body: dict[str, Any]) -> None:
        self.require(body, "input", (str, list), "a string or a list of input items")

    def affinity_key(self, body: Mapping[str, Any]) -> str | None:
        given = body.get("input")
        first = given if isinstance(given, str) else _first_user(given)
        return conversation_key("responses", body.get("instructions"), first)

    def view(self, body: Mapping[str, Any]) -> StreamView:
        return ResponsesStream(body)

    def assembler(self, body: Mapping[str, Any]) -> Assembler:
        return ResponsesAssembler()
