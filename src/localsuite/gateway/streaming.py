"""Streams: failover before the first byte, continuation after it, never a silent cut.

A `StreamRelay` runs the upstream side of one stream in a task of its own (so that its
timeout scopes live in one task) and hands SSE events to the client through a queue.

- Until the first event reaches the client a stream fails over like any request (the
  client still gets a proper HTTP status if every backend fails).
- The first event must come within the first-byte timeout; then each event within the
  idle timeout of the previous one.
- When a stream dies, stalls or turns to garbage after events went out, it is continued
  on the next backend: for chat, the partial answer is sent as an assistant prefill (the
  continuation starts where the first stream stopped); for completions, it is appended to
  the prompt. llama-server answers a prefill with the prefill itself at the head of its
  text: `EchoFilter` removes it, so the client sees each token once.
- Where continuing is impossible (tool calls, several choices, a prompt that is not a
  string, no backend left), the stream ends with a final `data: {"error": ...}` event and
  no `[DONE]`: clients see a failed stream, never a truncated one presented as complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from localsuite.core.errors import LocalSuiteError, UpstreamError
from localsuite.core.http import ConnectionLost, ErrorAnswer, NoAnswer
from localsuite.gateway.config import Deployment
from localsuite.gateway.failover import Attempts, GarbageAnswer, Router, upstream_client_error
from localsuite.gateway.upstream import Upstream

log = logging.getLogger("localsuite.gateway")

CHAT_PATH = "/chat/completions"
COMPLETIONS_PATH = "/completions"
DONE = b"data: [DONE]\n\n"
_MAX_TOKEN_KEYS = ("max_tokens", "max_completion_tokens", "n_predict")


class UpstreamStreamError(NoAnswer):
    """The upstream put an error event into the stream."""

    kind = "stream_error"


class EchoFilter:
    """Drops the echo of a prefill at the head of a continuation's text.

    Text is held back while it could still be the echo; once it is known to be the echo
    (or known not to be), what follows the echo (or everything held) is released.
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


def iter_sse_events(lines: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Group an SSE byte stream's lines into events (lists of non-empty lines)."""

    async def events() -> AsyncIterator[list[bytes]]:
        event: list[bytes] = []
        async for raw in lines:
            line = raw.rstrip(b"\r\n")
            if line:
                event.append(line)
            elif event:
                yield event
                event = []
        if event:
            yield event

    return events()


def event_data(event: list[bytes]) -> tuple[str, bytes]:
    """(field, payload) of an event: `data` lines joined, or an `error` field."""
    data: list[bytes] = []
    for line in event:
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"data":
            data.append(value)
        elif name == b"error":
            return "error", value
    return "data", b"\n".join(data)


class StreamRelay:
    def __init__(self, router: Router, path: str, body: dict[str, Any], alias: str) -> None:
        self.router = router
        self.path = path
        self.body = body
        self.alias = alias
        self.state = Attempts(alias, router.new_deadline())
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.partial = ""  # text sent to the client so far (choice 0)
        self.tokens = 0
        self.finished = False  # a finish_reason went out: the answer is complete
        self.failed = False  # the stream ended with an error event
        self.continuable = self._initially_continuable()
        self.backend: str | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the client's side -----------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        """Open the stream; returns (backend, attempts) once its first event is ready.

        Raises the request's error if no backend could start it."""
        self._task = asyncio.create_task(self._produce(), name=f"stream-{self.alias}")
        try:
            kind, value = await self.queue.get()
        except asyncio.CancelledError:  # the client left before the first byte
            self._task.cancel()
            raise
        if kind == "error":
            raise value
        backend, attempts = value
        return backend, attempts

    async def events(self) -> AsyncIterator[bytes]:
        try:
            while True:
                kind, value = await self.queue.get()
                if kind == "event":
                    yield value
                elif kind == "end":
                    return
        finally:
            if self._task is not None and not self._task.done():
                self._task.cancel()

    # --- the upstream's side ---------------------------------------------------------
    async def _produce(self) -> None:
        started = False
        error: LocalSuiteError | None = None
        body = self.body
        echo: EchoFilter | None = None
        try:
            for deployment in self.router.candidates(self.state):
                upstream = self.router.upstreams[deployment.backend]
                payload = self.router.payload(body, deployment)
                try:
                    await self._attempt(upstream, deployment, payload, echo, started)
                    return
                except _ClientErrorAnswer as exc:
                    error = exc.error
                    break
                except _Failed:
                    pass  # classified and counted where it was seen
                except (NoAnswer, GarbageAnswer) as exc:
                    self._record_failure(upstream, exc)
                started = started or self.backend is not None
                if started:
                    if self.finished:
                        self.queue.put_nowait(("event", DONE))
                        return
                    if not self.continuable:
                        break
                    # A flowing stream is bounded by idle timeouts, not by the request's
                    # deadline: its continuation gets a deadline of its own.
                    self.state.deadline = self.router.new_deadline()
                    body, echo = self._continuation()
                    self.router.metrics.continuations.labels(upstream.name, "attempted").inc()
                self.router.metrics.failovers.labels(self.alias, upstream.name).inc()
            if error is None:
                error = self.router.exhausted(self.state)
            if self.backend is None:
                self.queue.put_nowait(("error", error))
            else:
                self.failed = True
                self.queue.put_nowait(("event", _error_event(error)))
        except Exception as exc:  # a bug must still end the client's stream cleanly
            log.exception("stream relay failed")
            failure = UpstreamError(f"stream relay failed: {type(exc).__name__}")
            kind = "error" if self.backend is None else "event"
            self.failed = kind == "event"
            self.queue.put_nowait((kind, failure if kind == "error" else _error_event(failure)))
        finally:
            self.queue.put_nowait(("end", None))

    async def _attempt(
        self,
        upstream: Upstream,
        deployment: Deployment,
        payload: bytes,
        echo: EchoFilter | None,
        started: bool,
    ) -> None:
        router = self.router
        self.state.count += 1
        budget = router.first_byte_budget(deployment, self.state.deadline, stream=True)
        async with upstream.post(router.session, self.path, payload, budget) as (response, scope):
            if response.status >= 300:
                answer = ErrorAnswer(
                    response.status, await response.read(), router.retry_after_of(response)
                )
                verdict = router.classify_error_answer(upstream, answer, self.state)
                if verdict == "client" and not started:
                    raise _ClientErrorAnswer(upstream_client_error(answer))
                raise _Failed(f"HTTP {answer.status}: {answer.message()}")
            await self._pump(response, scope, upstream, echo, continuing=started)
        upstream.breaker.record_success()
        router.metrics.attempts.labels(upstream.name, "ok").inc()
        if started:
            router.metrics.continuations.labels(upstream.name, "completed").inc()

    async def _pump(
        self,
        response: aiohttp.ClientResponse,
        scope: asyncio.Timeout,
        upstream: Upstream,
        echo: EchoFilter | None,
        *,
        continuing: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        idle = self.router.timeouts.idle
        async for event in iter_sse_events(response.content.__aiter__()):
            kind, data = event_data(event)
            if kind == "error":
                raise UpstreamStreamError(f"{upstream.name}: {data[:300].decode(errors='replace')}")
            if data == b"[DONE]":
                self._emit(upstream, DONE)
                return
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise GarbageAnswer(f"{upstream.name}: stream event is not JSON") from exc
            if not isinstance(chunk, dict):
                raise GarbageAnswer(f"{upstream.name}: stream event is not a JSON object")
            if "error" in chunk:
                raise UpstreamStreamError(f"{upstream.name}: {_error_text(chunk['error'])}")
            out = self._relay_chunk(chunk, data, echo, continuing)
            if out is not None:
                self._emit(upstream, out)
            scope.reschedule(loop.time() + idle)
        if self.finished:
            self._emit(upstream, DONE)
            return
        raise ConnectionLost(f"{upstream.name}: stream ended before [DONE]")

    def _relay_chunk(
        self, chunk: dict[str, Any], raw: bytes, echo: EchoFilter | None, continuing: bool
    ) -> bytes | None:
        """The bytes to send for one upstream chunk (None: send nothing); tracks the text."""
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return b"data: " + raw + b"\n\n"
        if len(choices) > 1:
            self.continuable = False
        choice = choices[0] if isinstance(choices[0], dict) else {}
        key, text = self._text_of(choice)
        if echo is not None and isinstance(text, str):
            kept = echo.feed(text)
            if kept != text:
                text = kept
                _set_text(choice, key, kept)
                raw = orjson.dumps(chunk)
        if isinstance(text, str) and text:
            self.partial += text
            self.tokens += 1
        if choice.get("finish_reason"):
            self.finished = True
        elif continuing and not text and _is_preamble(choice):
            return None  # the continuation's role chunk: the client already had one
        elif echo is not None and echo.active and not text:
            return None  # held back while it may still be the prefill's echo
        return b"data: " + raw + b"\n\n"

    def _text_of(self, choice: dict[str, Any]) -> tuple[str, str | None]:
        if self.path == CHAT_PATH:
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                return "content", None
            if delta.get("tool_calls") or delta.get("function_call"):
                self.continuable = False
            content = delta.get("content")
            return "content", content if isinstance(content, str) else None
        text = choice.get("text")
        return "text", text if isinstance(text, str) else None

    def _emit(self, upstream: Upstream, data: bytes) -> None:
        if self.backend is None:
            self.backend = upstream.name
            self.queue.put_nowait(("start", (upstream.name, self.state.count)))
        self.queue.put_nowait(("event", data))

    def _record_failure(self, upstream: Upstream, exc: Exception) -> None:
        if isinstance(exc, NoAnswer):
            self.router.record_no_answer(upstream, exc, self.state)
        else:
            upstream.breaker.record_failure()
            self.router.metrics.attempts.labels(upstream.name, "garbage").inc()
            self.state.garbage = True
            self.state.note(upstream.name, str(exc))
        if self.backend is not None:
            log.warning("stream from %s broke after %d tokens: %s", upstream.name, self.tokens, exc)

    # --- continuation ------------------------------------------------------------------
    def _initially_continuable(self) -> bool:
        n = self.body.get("n")
        if n not in (None, 1):
            return False
        if self.path == CHAT_PATH:
            return isinstance(self.body.get("messages"), list)
        return isinstance(self.body.get("prompt"), str)

    def _continuation(self) -> tuple[dict[str, Any], EchoFilter | None]:
        body = dict(self.body)
        for key in _MAX_TOKEN_KEYS:
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                body[key] = max(1, value - self.tokens)
        if self.path == COMPLETIONS_PATH:
            body["prompt"] = str(self.body["prompt"]) + self.partial
            return body, None
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
        return body, EchoFilter(prefill)


class _ClientErrorAnswer(Exception):
    def __init__(self, error: LocalSuiteError) -> None:
        super().__init__(error.message)
        self.error = error


class _Failed(NoAnswer):
    """An error status where a stream was expected (already classified and counted)."""

    kind = "http_error"


def _set_text(choice: dict[str, Any], key: str, text: str) -> None:
    if key == "content" and isinstance(choice.get("delta"), dict):
        choice["delta"]["content"] = text
    else:
        choice[key] = text


def _is_preamble(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta")
    return isinstance(delta, dict) and set(delta) <= {"role", "content"}


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", error))[:300]
    return str(error)[:300]


def _error_event(error: LocalSuiteError) -> bytes:
    return b"data: " + error.render() + b"\n\n"
