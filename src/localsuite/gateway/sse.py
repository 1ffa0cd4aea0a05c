"""Server-sent events, read from bytes as they arrive and written back unchanged.

An `Event` keeps the bytes it was read from (`raw`), so that what the gateway does not
need to change reaches the client byte for byte; OpenAI's streams use `data:` lines only,
Anthropic's and the Responses API's name each event with an `event:` line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    name: bytes | None  # the `event:` field, if any
    data: bytes  # the `data:` lines, joined by newlines
    raw: bytes  # the event as it came, ending in a blank line
    error: bool = False  # an `error:` field (old llama.cpp servers put errors there)

    @classmethod
    def build(cls, data: bytes, name: bytes | None = None) -> Event:
        head = b"event: " + name + b"\n" if name is not None else b""
        return cls(name, data, head + b"data: " + data + b"\n\n")


class SSEParser:
    """Splits a byte stream into events; `feed()` returns the events completed so far."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[Event] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            block = buffer[start:end]
            start = end + 2
            event = _parse(block)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def pending(self) -> bool:
        """Bytes of an unfinished event are waiting (the stream was cut inside one)."""
        return bool(self._buffer.strip())


def _parse(block: bytes) -> Event | None:
    block = block.lstrip(b"\n")
    if not block:
        return None
    name: bytes | None = None
    data: list[bytes] = []
    error = False
    for line in block.split(b"\n"):
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value
        elif field == b"error":
            data.append(value)
            error = True
        # comments (":...") and other fields (id, retry) carry nothing for the gateway
    if not data and name is None:
        return None
    return Event(name, b"\n".join(data), block + b"\n\n", error)
