"""Chaos: kill and freeze a real llama-server under concurrent load through the gateway."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import openai
import pytest

from localsuite.gateway.upstream import Health
from localsuite.testing.llama import LlamaProcess
from localsuite.testing.servers import wait_until

pytestmark = [pytest.mark.llama, pytest.mark.chaos]

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
MAX_REQUESTS = 400  # a bound on the load, whatever happens


class IncompleteStream(Exception):
    """A stream that ended without saying the answer was complete."""


@dataclass
class Load:
    """Workers sending streaming and plain requests until told to stop."""

    client: openai.OpenAI
    done: list[tuple[str, float, str]] = field(default_factory=list)  # (kind, seconds, backend)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, streams: int, plains: int) -> list[threading.Thread]:
        kinds = [self._one_stream] * streams + [self._one_plain] * plains
        workers = [threading.Thread(target=self._loop, args=(k,), daemon=True) for k in kinds]
        for worker in workers:
            worker.start()
        return workers

    def _more(self) -> bool:
        return not self.stop.is_set() and len(self.done) + len(self.failures) < MAX_REQUESTS

    def _loop(self, once: Callable[[], tuple[str, str]]) -> None:
        while self._more():
            started = time.monotonic()
            try:
                kind, backend = once()
            except (openai.APIError, IncompleteStream) as exc:
                with self.lock:
                    self.failures.append(f"{once.__name__}: {exc}")
            else:
                with self.lock:
                    self.done.append((kind, time.monotonic() - started, backend))

    def _one_stream(self) -> tuple[str, str]:
        raw = self.client.chat.completions.with_raw_response.create(
            model="chat-7b", messages=PROMPT, max_tokens=48, stream=True
        )
        chunks = [c for c in raw.parse() if c.choices]
        if chunks[-1].choices[0].finish_reason is None:
            raise IncompleteStream("stream ended without a finish_reason")
        return "stream", raw.headers["x-localsuite-backend"]

    def _one_plain(self) -> tuple[str, str]:
        raw = self.client.chat.completions.with_raw_response.create(
            model="chat-7b", messages=PROMPT, max_tokens=24
        )
        raw.parse()
        return "plain", raw.headers["x-localsuite-backend"]

    def count(self) -> int:
        with self.lock:
            return len(self.done)


def _finish(load: Load, workers: list[threading.Thread]) -> None:
    load.stop.set()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a load worker hung"


def test_sigkill_primary_under_load_loses_nothing_and_it_comes_back(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    stack = llama_gateway
    load = Load(stack.sdk(timeout=120))
    workers = load.run(streams=3, plains=3)
    try:
        wait_until(lambda: load.count() >= 6, 120, "steady load")
        stack.chat.signal(signal.SIGKILL)
        killed_at = load.count()
        wait_until(lambda: load.count() >= killed_at + 12, 120, "load after the kill")
    finally:
        _finish(load, workers)
    assert load.failures == []
    after = [backend for _, _, backend in load.done[killed_at + 6 :]]
    assert set(after) == {"inference-code"}

    # Restarted on the same port, the probe lets it back and it gets traffic again.
    revived = LlamaProcess("inference-chat", stack.chat.log_path.parent, port=stack.chat.port)
    stack.chat.proc = revived.start().proc
    upstream = stack.gateway.upstreams["inference-chat"]
    wait_until(lambda: upstream.health is Health.READY and upstream.routable, 60, "probe")
    raw = stack.sdk().chat.completions.with_raw_response.create(
        model="chat-7b", messages=PROMPT, max_tokens=4
    )
    assert raw.headers["x-localsuite-backend"] == "inference-chat"


def test_sigstop_primary_costs_a_bounded_wait_not_the_deadline(llama_gateway) -> None:  # type: ignore[no-untyped-def]
    stack = llama_gateway
    deadline = stack.gateway.settings.llm_request_timeout
    load = Load(stack.sdk(timeout=deadline + 30))
    workers = load.run(streams=2, plains=2)
    try:
        wait_until(lambda: load.count() >= 4, 120, "steady load")
        stack.chat.signal(signal.SIGSTOP)
        frozen_at = load.count()
        wait_until(lambda: load.count() >= frozen_at + 8, 120, "load while frozen")
    finally:
        _finish(load, workers)
        stack.chat.signal(signal.SIGCONT)
    assert load.failures == []
    assert stack.gateway.upstreams["inference-chat"].last_error is not None
    worst = max(seconds for _, seconds, _ in load.done)
    assert worst < deadline / 2  # bounded by the probe and first-byte/idle timeouts

    upstream = stack.gateway.upstreams["inference-chat"]
    wait_until(lambda: upstream.health is Health.READY and upstream.routable, 60, "thawed")
