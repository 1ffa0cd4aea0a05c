"""The query cache: a repeated question is answered from memory, as the original suite did.

An answer is keyed by its collection, the collection's version, the question and every
parameter that shapes the answer (topk, model, generation limits, retrieval mode). A
collection's version moves on with every change to it (an index job writing or deleting
its chunks, the collection's deletion), so an answer never outlives the data it came
from; entries of old versions are never read again and age out. The version is read when
a query starts: a query that ran while the collection changed is stored under the
version it started from, which no later query asks for.

Bounded in entries (least recently used go first) and in age (`ttl` seconds). One rag
process owns a DATA_DIR's collections, so an in-memory version is exact; rag replicas
sharing one Qdrant server would each keep their own (their caches see only their own
writes).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

Key = tuple[str, int, bytes]


class QueryCache:
    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, dict[str, Any]]] = OrderedDict()
        self._versions: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0

    def version(self, collection: str) -> int:
        return self._versions.get(collection, 0)

    def changed(self, collection: str) -> None:
        """The collection changed: its answers so far are stale."""
        self._versions[collection] = self.version(collection) + 1
        stale = [key for key in self._entries if key[0] == collection]
        for key in stale:
            del self._entries[key]

    def key(self, collection: str, params: dict[str, Any]) -> Key:
        return (
            collection,
            self.version(collection),
            orjson.dumps(params, option=orjson.OPT_SORT_KEYS),
        )

    def get(self, key: Key) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None or key[1] != self.version(key[0]):
            return None
        stored, value = entry
        if self._clock() - stored > self.ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Key, value: dict[str, Any]) -> None:
        if not self.enabled or key[1] != self.version(key[0]):
            return
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
