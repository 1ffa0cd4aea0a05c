"""Concurrent streaming and plain load through the gateway, with the official SDKs, in
the three protocols (chat completions, Anthropic messages, OpenAI responses).

For chaos tests and benchmarks: workers send requests until told to stop (or until
`max_requests`, a bound whatever happens) and keep every failure with its reason. A
stream counts as failed unless its last chunk says why it finished: a silently
truncated stream is a failure, not a success.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anthropic
import openai
from openai.types.chat import ChatCompletionMessageParam

PROMPT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write a short story about a lighthouse keeper."}
]


class IncompleteStream(Exception):
    """A stream that ended without saying the answer was complete."""


@dataclass
class Load:
    """Workers sending streaming and plain requests until told to stop."""

    client: openai.OpenAI
    model: str = "chat-7b"
    claude: anthropic.Anthropic | None = None  # for the messages protocol
    max_requests: int = 400
    done: list[tuple[str, float, str]] = field(default_factory=list)  # (kind, seconds, backend)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(
        self, streams: int, plains: int, protocols: tuple[str, ...] = ("chat",)
    ) -> list[threading.Thread]:
        """`streams` streaming and `plains` plain workers for each protocol."""
        kinds: list[Callable[[], tuple[str, str]]] = []
        for protocol in protocols:
            stream, plain = self._kinds[protocol]
            kinds += [getattr(self, stream)] * streams + [getattr(self, plain)] * plains
        workers = [threading.Thread(target=self._loop, args=(k,), daemon=True) for k in kinds]
        for worker in workers:
            worker.start()
        return workers

    def finish(self, workers: list[threading.Thread]) -> None:
        """Stop the workers once their current request ends; fail if one hangs."""
        self.stop.set()
        for worker in workers:
            worker.join(timeout=120)
        assert not any(w.is_alive() for w in workers), "a load worker hung"

    def count(self) -> int:
        with self.lock:
            return len(self.done)

    def _more(self) -> bool:
        return not self.stop.is_set() and len(self.done) + len(self.failures) < self.max_requests

    def _loop(self, once: Callable[[], tuple[str, str]]) -> None:
        while self._more():
            started = time.monotonic()
            try:
                kind, backend = once()
            except (openai.APIError, anthropic.APIError, IncompleteStream) as exc:
                with self.lock:
                    self.failures.append(f"{once.__name__}: {exc}")
            else:
                with self.lock:
                    self.done.append((kind, time.monotonic() - started, backend))

    def _one_stream(self) -> tuple[str, str]:
        raw = self.client.chat.completions.with_raw_response.create(
            model=self.model, messages=PROMPT, max_tokens=48, stream=True
        )
        chunks = [c for c in raw.parse() if c.choices]
        if not chunks or chunks[-1].choices[0].finish_reason is None:
            raise IncompleteStream("stream ended without a finish_reason")
        return "stream", raw.headers["x-localsuite-backend"]

    def _one_plain(self) -> tuple[str, str]:
        raw = self.client.chat.completions.with_raw_response.create(
            model=self.model, messages=PROMPT, max_tokens=24
        )
        raw.parse()
        return "plain", raw.headers["x-localsuite-backend"]

    _kinds = {
        "chat": ("_one_stream", "_one_plain"),
        "messages": ("_one_messages_stream", "_one_messages_plain"),
        "responses": ("_one_responses_stream", "_one_responses_plain"),
    }

    def _claude(self) -> anthropic.Anthropic:
        if self.claude is None:
            raise ValueError("the messages protocol needs an anthropic client")
        return self.claude

    def _one_messages_stream(self) -> tuple[str, str]:
        with self._claude().messages.stream(
            model=self.model,
            max_tokens=48,
            messages=PROMPT,  # type: ignore[arg-type]
        ) as stream:
            for _ in stream.text_stream:
                pass
            final = stream.get_final_message()
            backend = stream.response.headers["x-localsuite-backend"]
        if final.stop_reason is None:
            raise IncompleteStream("message ended without a stop_reason")
        return "messages-stream", backend

    def _one_messages_plain(self) -> tuple[str, str]:
        raw = self._claude().messages.with_raw_response.create(
            model=self.model,
            max_tokens=24,
            messages=PROMPT,  # type: ignore[arg-type]
        )
        raw.parse()
        return "messages-plain", raw.headers["x-localsuite-backend"]

    def _one_responses_stream(self) -> tuple[str, str]:
        raw = self.client.responses.with_raw_response.create(
            model=self.model, input=str(PROMPT[0]["content"]), max_output_tokens=48, stream=True
        )
        kinds = [event.type for event in raw.parse()]
        if not kinds or kinds[-1] not in ("response.completed", "response.incomplete"):
            raise IncompleteStream(f"response stream ended with {kinds[-1:]}")
        return "responses-stream", raw.headers["x-localsuite-backend"]

    def _one_responses_plain(self) -> tuple[str, str]:
        raw = self.client.responses.with_raw_response.create(
            model=self.model, input=str(PROMPT[0]["content"]), max_output_tokens=24
        )
        raw.parse()
        return "responses-plain", raw.headers["x-localsuite-backend"]
