"""What the gateway knows of each protocol it relays, and no more.

A `Protocol` is one client-facing endpoint (chat completions, text completions,
Anthropic messages and their token count, OpenAI responses): the backend path, the error
shape its clients expect, the few checks without which a backend would answer a 5xx for
the client's own mistake, and how its streams are read:

- a `StreamView` follows a stream the client is reading, across attempts: what to relay
  of each upstream event (byte for byte when nothing needs changing), the answer's text so
  far, whether it is complete, whether it can be continued on another deployment, and the
  body that continues it there (the partial answer as a prefill);
- an `Assembler` reads a stream into the one plain answer a client asked for: plain
  requests are streamed from the backend so that a backend that accepts a request and
  then says nothing costs one first-byte timeout, not the whole deadline.

Neither decides anything about failover: they raise `BadStream` for what breaks the
protocol, and the relay (`gateway.relay`) records the attempt's outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from localsuite.core.errors import OPENAI, ErrorShape, InvalidRequest, LocalSuiteError
from localsuite.gateway.outcomes import BadStream, Outcome
from localsuite.gateway.sse import Event

MAX_TOKEN_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n_predict")


class EchoFilter:
    """Drops the echo of a prefill at the head of a continuation's text.

    llama-server answers a prefill with the prefill itself at the head of its text (the
    real Anthropic and OpenAI APIs do not). Text is held back while it could still be the
    echo; once it is known to be the echo (or known not to be), what follows the echo (or
    everything held) is released.
    """

    def __init__(self, prefill: str) -> None:
        self.prefill = prefill
        self.held = ""
        self.active = bool(prefill)

    def feed(self, text: str) -> str:
        if not self.active:
            return text
        self.held += text
        if len(self.held) < len(self.prefill):
            if self.prefill.startswith(self.held):
                return ""
            return self._release(self.held)
        if self.held.startswith(self.prefill):
            return self._release(self.held[len(self.prefill) :])
        return self._release(self.held)

    def _release(self, text: str) -> str:
        self.active = False
        self.held = ""
        return text


def json_object(event: Event, where: str) -> dict[str, Any]:
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        raise BadStream(f"{where}: stream event is not JSON") from exc
    if not isinstance(data, dict):
        raise BadStream(f"{where}: stream event is not a JSON object")
    return data


def error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", error))[:300]
    return str(error)[:300]


def stream_error(where: str, error: Any) -> BadStream:
    return BadStream(f"{where}: {error_text(error)}", Outcome.STREAM_ERROR)


def reduced_limits(body: dict[str, Any], used: int) -> dict[str, Any]:
    """A continuation's body asks for what is left of the client's token limit."""
    out = dict(body)
    for key in MAX_TOKEN_KEYS:
        value = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[key] = max(1, value - used)
    return out


def conversation_key(*parts: Any) -> str | None:
    """A conversation's identity from its opening (system prompt and first user turn):
    the same on every turn of one conversation, different between conversations that
    share a long system prompt."""
    if all(p is None for p in parts):
        return None
    digest = hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), digest_size=12)
    return digest.hexdigest()


class StreamView:
    """A stream as the client sees it, across the attempts that feed it."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.partial = ""  # the answer's text sent so far
        self.tokens = 0  # text events sent so far (a token count for the continuation)
        self.started = False  # something went to the client
        self.finished = False  # the answer is complete (a finish or stop reason went out)
        self.terminated = False  # the protocol's last event was seen
        self.continuable = True
        self.continuing = False
        self.echo: EchoFilter | None = None

    def begin(self, *, continuing: bool) -> None:
        """A new upstream attempt starts feeding the view."""
        self.continuing = continuing
        self.terminated = False

    def feed(self, event: Event) -> bytes | None:
        """The bytes to relay for one upstream event (None: relay nothing)."""
        raise NotImplementedError

    def close(self) -> bytes | None:
        """The upstream stream ended without its last event: what to send to end it
        properly if the answer is complete; `BadStream(cut)` if it is not."""
        raise NotImplementedError

    def continuation(self) -> dict[str, Any]:
        """The body that continues the answer on another deployment."""
        raise NotImplementedError

    def error_event(self, error: LocalSuiteError) -> bytes:
        raise NotImplementedError

    def _text(self, text: str) -> str:
        if self.echo is not None:
            text = self.echo.feed(text)
        if text:
            self.partial += text
            self.tokens += 1
        return text


class Assembler:
    """Reads a stream into the plain answer the client asked for."""

    def __init__(self) -> None:
        self.terminated = False  # the protocol's last event was seen
        self.complete = False  # the answer is complete (a cut after this loses nothing)

    def feed(self, event: Event) -> None:
        raise NotImplementedError

    def result(self) -> bytes:
        raise NotImplementedError


def cut_short(where: str) -> BadStream:
    return BadStream(f"{where}: stream ended before its last event", Outcome.CUT)


class Protocol:
    endpoint: ClassVar[str]  # the metrics label
    path: ClassVar[str]  # the backend path, after `api_base`
    shape: ClassVar[ErrorShape] = OPENAI
    generates: ClassVar[bool] = True  # False: a plain call (count_tokens)

    def validate(self, body: dict[str, Any]) -> None:
        """Refuse what a backend would answer with a 5xx although it is the client's error."""

    def affinity_key(self, body: Mapping[str, Any]) -> str | None:
        return None

    def plain_upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body that asks a backend to stream a plain request."""
        return {**body, "stream": True}

    def view(self, body: Mapping[str, Any]) -> StreamView:
        raise NotImplementedError

    def assembler(self, body: Mapping[str, Any]) -> Assembler:
        """Reads the stream of an upstream asked `body` (the client's) plainly."""
        raise NotImplementedError

    @staticmethod
    def require(
        body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str
    ) -> None:
        value = body.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidRequest(f"`{key}` is required: {what}", param=key)
