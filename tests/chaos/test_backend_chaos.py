"""Chaos: kill and freeze a real llama-server under concurrent load through the gateway."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

import openai
import pytest

from localsuite.gateway.upstream import Health
from localsuite.testing.llama import LlamaProcess
from localsuite.testing.servers import wait_until

pytestmark = [pytest.mark.llama, pytest.mark.chaos]

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
MAX_REQUESTS = 400  # a bound on the load, whatever happens


@dataclass
class Load:
    """Workers sending streaming and plain requests until told to stop."""

    client: openai.OpenAI
    done: list[tuple[str, float, str]] = field(default_factory=list)  # (kind, seconds, backend)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, streams: int, plains: int) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._stream_loop, daemon=True) for _ in range(streams)]
        workers += [threading.Thread(target=self._plain_loop, daemon=True) for _ in range(plains)]
        for worker in workers:
            worker.start()
        return workers

    def _record(self, kind: str, started: float, backend: str) -> None:
        with self.lock:
            self.done.append((kind, time.monotonic() - started, backend))

    def _fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def _more(self) -> bool:
        return not self.stop.is_set() and len(self.done) + len(self.failures) < MAX_REQUESTS

    def _stream_loop(self) -> None:
        while self._more():
            started = time.monotonic()
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model="chat-7b", messages=PROMPT, max_tokens=48, stream=True
                )
                chunks = [c for c in raw.parse() if c.choices]
                if chunks[-1].choices[0].finish_reason is None:
                    self._fail("stream ended without a finish_reason")
                    continue
                self._record("stream", started, raw.headers["x-localsuite-backend"])
            except openai.APIError as exc:
                self._fail(f"stream: {exc}")

    def _plain_loop(self) -> None:
        while self._more():
            started = time.monotonic()
            try:
                raw = self.client.chat.completions.with_raw_response.create(
                    model="chat-7b", messages=PROMPT, max_tokens=24
                )
                raw.parse()
                self._record("plain", started, raw.headers["x-localsuite-backend"])
            except openai.APIError as exc:
                self._fail(f"plain: {exc}")

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
