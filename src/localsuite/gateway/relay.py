"""Sending an attempt and reading its answer: the one exchange with a backend.

Both kinds of request go through `Engine.attempts()` and `Relay.exchange()`:

- a plain request is streamed from the backend (where the protocol generates text) and
  assembled into the plain answer (`Assembler`), so that a backend that accepts it and
  then says nothing costs one first-byte timeout, and a long answer is bounded by the
  idle timeout between tokens and by the request's deadline, not by a guess; a backend
  that answers a plain JSON body anyway is read as such;
- a streamed request is relayed event by event to the client (`StreamRelay`), through a
  queue from a task of its own (so that its timeout scopes live in one task). Until the
  first event reaches the client it fails over like any request (the client still gets
  a proper HTTP status). After that, a stream that dies, stalls or turns to garbage is
  continued on the next deployment where its protocol allows (`StreamView.continuation`),
  and otherwise ends with the protocol's error event: clients see a failed stream, never
  a truncated one presented as complete.

The first event must come within the first-byte timeout (`LLM_FIRST_BYTE_TIMEOUT`, or the
deployment's `stream_timeout`), then each read within the idle timeout of the previous.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from localsuite.core.errors import LocalSuiteError, Refused, UpstreamError
from localsuite.core.http import (
    AnswerTimeout,
    ConnectFailed,
    ConnectionLost,
    ErrorAnswer,
    NoAnswer,
    parse_retry_after,
)
from localsuite.core.metrics import GatewayMetrics
from localsuite.core.timeouts import Timeouts
from localsuite.gateway.engine import Attempt, Engine, Exchange, classify_status
from localsuite.gateway.outcomes import BadStream, Outcome
from localsuite.gateway.protocols.base import Assembler, cut_short
from localsuite.gateway.servers import Server
from localsuite.gateway.sse import Event, SSEParser

log = logging.getLogger("localsuite.gateway")

REQUEST_ID = "x-request-id"


@dataclass(frozen=True, slots=True)
class Served:
    """A plain answer and who gave it."""

    body: bytes
    status: int
    attempt: Attempt


class _Refusal(Exception):
    """The backend refused the client's own request (a 4xx): it goes back as it is."""

    def __init__(self, error: LocalSuiteError) -> None:
        super().__init__(error.message)
        self.error = error


class Relay:
    def __init__(
        self, session: aiohttp.ClientSession, timeouts: Timeouts, metrics: GatewayMetrics
    ) -> None:
        self.session = session
        self.timeouts = timeouts
        self.metrics = metrics

    # --- one attempt -----------------------------------------------------------------
    async def exchange(
        self,
        attempt: Attempt,
        body: dict[str, Any],
        *,
        stream: bool,
        on_event: Callable[[Event], None] | None,
        terminated: Callable[[], bool],
    ) -> tuple[int, bytes | None]:
        """Send `body` to the attempt's deployment and read the answer.

        With `on_event`, an event stream is fed to it until `terminated()`; returns
        (status, None), or (status, body) if the backend answered a plain body. Raises
        `_Refusal` for the request's own 4xx; records every other failure on the attempt
        and raises `_Failed`."""
        exchange, deployment = attempt.exchange, attempt.deployment
        payload = orjson.dumps(body if deployment.spec.model is None
                               else {**body, "model": deployment.spec.model})  # fmt: skip
        path = exchange.protocol.path
        headers = {REQUEST_ID: exchange.request_id, **exchange.forward, **attempt.span.headers()}
        loop = asyncio.get_running_loop()
        cap = self._cap(attempt, stream)
        ends_at = loop.time() + cap
        first = self._first_byte(attempt, on_event is not None)
        try:
            async with deployment.server.post(
                self.session, path, payload, min(first, cap), headers
            ) as (response, scope):
                if response.status >= 300:
                    await self._judge_error(attempt, response)
                if on_event is None or not _is_event_stream(response):
                    # a whole body (a backend that answered plain): bounded by the attempt's
                    # cap, not by the first-byte timeout that its headers met
                    scope.reschedule(ends_at)
                    data = await response.read()
                    if on_event is not None and stream:
                        raise BadStream(f"{deployment.id}: answered a stream request with "
                                        f"{response.content_type}")  # fmt: skip
                    return response.status, data
                parser = SSEParser()
                idle = self.timeouts.idle
                async for chunk in response.content.iter_any():
                    for event in parser.feed(chunk):
                        on_event(event)
                    scope.reschedule(min(loop.time() + idle, ends_at))
                    if terminated():
                        await self._finish(response, deployment.server)
                        break
                else:
                    if deployment.server.closes_after_streams:
                        response.close()  # ended by the server: never back to the pool
                return response.status, None
        except NoAnswer as exc:
            raise _Failed(self._no_answer(attempt, exc), str(exc)) from exc
        except BadStream as exc:
            raise _Failed(exc.outcome, f"{deployment.id}: {exc}") from exc

    @staticmethod
    async def _finish(response: aiohttp.ClientResponse, server: Server) -> None:
        """After the protocol's last event: read the body's end (so that the connection
        can serve the next request), or close it where the server would close it anyway."""
        if server.closes_after_streams:
            response.close()
            return
        async for _ in response.content.iter_any():
            pass  # the chunked terminator, maybe nothing at all

    def _first_byte(self, attempt: Attempt, events: bool) -> float:
        spec = attempt.deployment.spec
        limit = attempt.exchange.deadline.remaining()
        if events:
            limit = min(limit, spec.stream_timeout or self.timeouts.first_byte)
        return limit

    def _cap(self, attempt: Attempt, stream: bool) -> float:
        """How long this attempt may take in all: a plain answer is bounded by the deadline
        and the deployment's `timeout`; a flowing stream by its idle timeout alone."""
        spec = attempt.deployment.spec
        if stream:
            return spec.timeout if spec.timeout is not None else float("inf")
        remaining = attempt.exchange.deadline.remaining()
        return min(remaining, spec.timeout) if spec.timeout is not None else remaining

    async def _judge_error(self, attempt: Attempt, response: aiohttp.ClientResponse) -> None:
        answer = ErrorAnswer(
            response.status,
            await response.read(),
            parse_retry_after(response.headers.get("Retry-After")),
        )
        policy_retry = attempt.engine.table.config.policy.retry_on_status
        outcome = classify_status(answer.status, answer.body, policy_retry)
        detail = f"HTTP {answer.status}: {answer.message()}"
        if outcome is Outcome.CLIENT_ERROR and attempt.continuing:
            outcome = Outcome.UNSUITABLE  # refused to continue what another one started
            detail = f"refused the continuation ({detail})"
        if outcome is Outcome.CONTEXT_LENGTH:
            detail = "context too long"
        attempt.record(outcome, detail, retry_after=answer.retry_after, answer=answer)
        if outcome is Outcome.CLIENT_ERROR:
            raise _Refusal(client_error(answer))
        raise _Failed(outcome, detail, recorded=True)

    def _no_answer(self, attempt: Attempt, exc: NoAnswer) -> Outcome:
        if isinstance(exc, ConnectFailed):
            return Outcome.UNREACHABLE
        if isinstance(exc, AnswerTimeout) and attempt.exchange.deadline.expired:
            return Outcome.DEADLINE  # the request's budget ran out: not the backend's fault
        if isinstance(exc, ConnectionLost):
            return Outcome.CUT
        return Outcome.NO_ANSWER


class _Failed(Exception):
    def __init__(self, outcome: Outcome, detail: str, *, recorded: bool = False) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.recorded = recorded


def _is_event_stream(response: aiohttp.ClientResponse) -> bool:
    return response.content_type == "text/event-stream"


def client_error(answer: ErrorAnswer) -> LocalSuiteError:
    """A backend's own refusal of the request, for the client: its status and reason."""
    if 400 <= answer.status < 500:
        return Refused(answer.status, answer.message(), code=f"upstream_{answer.status}")
    return UpstreamError(f"the backend answered HTTP {answer.status}: {answer.message()}")


def _json_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


# --- plain requests ---------------------------------------------------------------------


async def serve_plain(engine: Engine, relay: Relay, exchange: Exchange) -> Served:
    protocol = exchange.protocol
    async with aclosing(engine.attempts(exchange)) as attempts:
        async for attempt in attempts:
            assembler = protocol.assembler(exchange.body) if protocol.generates else None
            body = protocol.plain_upstream(exchange.body) if assembler else exchange.body

            def terminated(assembler: Assembler | None = assembler) -> bool:
                return assembler is not None and assembler.terminated

            try:
                status, data = await relay.exchange(
                    attempt,
                    body,
                    stream=False,
                    on_event=assembler.feed if assembler else None,
                    terminated=terminated,
                )
                if data is None:
                    assert assembler is not None
                    if not (assembler.terminated or assembler.complete):
                        raise _Failed(Outcome.CUT, str(cut_short(attempt.deployment.id)))
                    data = assembler.result()
                elif not _json_object(data):
                    raise _Failed(Outcome.GARBAGE,
                                  f"{attempt.deployment.id}: HTTP {status} with a body that "
                                  "is not JSON")  # fmt: skip
            except _Refusal as refusal:
                raise refusal.error from None
            except _Failed as failed:
                if not failed.recorded:
                    attempt.record(failed.outcome, failed.detail)
                continue
            attempt.record(Outcome.OK)
            return Served(data, status, attempt)
    raise engine.exhausted(exchange)


# --- streams ----------------------------------------------------------------------------


class StreamRelay:
    def __init__(self, engine: Engine, relay: Relay, exchange: Exchange) -> None:
        self.engine = engine
        self.relay = relay
        self.exchange = exchange
        self.view = exchange.protocol.view(exchange.body)
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.failed = False  # the stream ended with an error event
        self.attempt: Attempt | None = None  # the one that sent the first event
        self.started_at = time.perf_counter()
        self._current: Attempt | None = None
        self._error: LocalSuiteError | None = None  # the request's own, from a backend
        self._task: asyncio.Task[None] | None = None

    # --- the client's side -----------------------------------------------------------
    async def start(self) -> tuple[Attempt, int]:
        """Open the stream; returns the attempt whose first event is ready to go, and the
        number of attempts it took (the stream may move on before the client reads it).

        Raises the request's error if no deployment could start it."""
        self._task = asyncio.create_task(self._produce(), name=f"stream-{self.exchange.alias}")
        try:
            kind, value = await self.queue.get()
        except asyncio.CancelledError:  # the client left before the first byte
            self._task.cancel()
            raise
        if kind == "error":
            raise value
        attempt, count = value
        return attempt, count

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

    def _emit(self, data: bytes | None) -> None:
        if data is None:
            return
        if not self.view.started:
            self.view.started = True
            self.attempt = self._current
            assert self._current is not None
            self.queue.put_nowait(("start", (self._current, self.exchange.count)))
        self.queue.put_nowait(("event", data))

    def _feed(self, event: Event) -> None:
        self._emit(self.view.feed(event))

    # --- the upstream's side ---------------------------------------------------------
    async def _produce(self) -> None:
        exchange, view, metrics = self.exchange, self.view, self.engine.metrics
        body = exchange.body
        error: LocalSuiteError | None = None
        try:
            async with aclosing(self.engine.attempts(exchange)) as attempts:
                async for attempt in attempts:
                    self._current = attempt
                    attempt.continuing = view.started
                    view.begin(continuing=view.started)
                    if await self._try(attempt, body):
                        return
                    if attempt.outcome is Outcome.CLIENT_ERROR:
                        break
                    if view.started:
                        if view.finished:  # complete, only its end was lost: end it here
                            self._emit(view.close())
                            return
                        if not view.continuable:
                            break
                        # A flowing stream is bounded by idle timeouts, not by the request's
                        # deadline: its continuation gets a deadline of its own.
                        exchange.deadline = self.engine.new_deadline()
                        body = view.continuation()
                        metrics.continuation(attempt.deployment.id, "attempted")
            error = self._error or self.engine.exhausted(exchange)
            if not view.started:
                self.queue.put_nowait(("error", error))
            else:
                self.failed = True
                self.queue.put_nowait(("event", view.error_event(error)))
        except Exception as exc:  # a bug must still end the client's stream cleanly
            log.exception("[%s] stream relay failed", exchange.request_id)
            failure = UpstreamError(f"stream relay failed: {type(exc).__name__}")
            if not view.started:
                self.queue.put_nowait(("error", failure))
            else:
                self.failed = True
                self.queue.put_nowait(("event", view.error_event(failure)))
        finally:
            self.queue.put_nowait(("end", None))

    async def _try(self, attempt: Attempt, body: dict[str, Any]) -> bool:
        """One attempt; True if it ended the stream well."""
        view = self.view
        try:
            await self.relay.exchange(
                attempt, body, stream=True, on_event=self._feed, terminated=lambda: view.terminated
            )
            if not view.terminated:
                self._emit(view.close())
        except _Refusal as refusal:
            self._error = refusal.error
            return False
        except _Failed as failed:
            if not failed.recorded:
                attempt.record(failed.outcome, failed.detail)
            if view.started:
                log.warning("[%s] stream from %s broke after %d tokens: %s",
                            self.exchange.request_id, attempt.deployment.id, view.tokens,
                            failed.detail)  # fmt: skip
            return False
        except BadStream as exc:  # view.close(): the stream ended before its answer did
            attempt.record(exc.outcome, f"{attempt.deployment.id}: {exc}")
            return False
        attempt.record(Outcome.OK)
        if attempt.continuing:
            self.engine.metrics.continuation(attempt.deployment.id, "completed")
        return True
