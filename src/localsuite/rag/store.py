"""The vector store: Qdrant, embedded (qdrant-client's local mode under DATA_DIR) or a
server (`QDRANT_URL`), through one code path.

qdrant-client's calls are synchronous (local mode is pure Python over SQLite and NumPy),
so they run on a worker thread: a long upsert never stalls the event loop, and `/health`
answers while an index job writes. Local mode allows one caller at a time, so it gets
one thread; a server gets a few.

qdrant-client's exceptions are translated here and nowhere else:

    StoreError
    ├── StoreUnavailable     Qdrant did not answer, or answered 5xx/429: may pass
    └── StoreRejected        Qdrant refused the request (4xx, a bad value): will not pass
        └── CollectionMissing
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

T = TypeVar("T")


class StoreError(Exception):
    pass


class StoreUnavailable(StoreError):
    pass


class StoreRejected(StoreError):
    pass


class CollectionMissing(StoreRejected):
    pass


@dataclass(frozen=True, slots=True)
class Point:
    id: str
    vector: Sequence[float]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    points: int
    dim: int | None


class VectorStore:
    def __init__(self, *, url: str = "", path: Path | None = None, timeout: float = 30) -> None:
        if not url and path is None:
            raise ValueError("a vector store needs a Qdrant URL or a local path")
        self.url = url
        self.path = path
        self.timeout = timeout
        self.where = url or f"embedded Qdrant at {path}"
        self._executor = ThreadPoolExecutor(
            max_workers=4 if url else 1, thread_name_prefix="qdrant"
        )
        self._client: QdrantClient | None = None
        self._client_lock = threading.Lock()

    # --- plumbing ------------------------------------------------------------------------
    def _connect(self) -> QdrantClient:
        with self._client_lock:
            if self._client is None:
                if self.url:
                    self._client = QdrantClient(
                        url=self.url, timeout=max(1, round(self.timeout)), check_compatibility=False
                    )
                else:
                    assert self.path is not None
                    self.path.mkdir(parents=True, exist_ok=True)
                    self._client = QdrantClient(
                        path=str(self.path), force_disable_check_same_thread=True
                    )
            return self._client

    async def _run(
        self, what: str, call: Callable[[QdrantClient], T], budget: float | None = None
    ) -> T:
        """Run `call` on the worker thread; `budget` (seconds, default QDRANT_TIMEOUT)
        bounds the wait for it, whatever the client's own timeouts do."""

        def work() -> T:
            with translate(what, self.where):
                return call(self._connect())

        limit = self.timeout if budget is None else budget
        running = asyncio.get_running_loop().run_in_executor(self._executor, work)
        try:
            return await asyncio.wait_for(running, limit)
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"Qdrant ({self.where}) could not {what}: no answer within {limit:g}s"
            ) from exc

    async def close(self, within: float = 5.0) -> None:
        """Close the client after the calls in progress, waiting at most `within` seconds
        (a hung server's call ends at its own timeout, not ours)."""

        def shut() -> None:
            if self._client is not None:
                self._client.close()

        with suppress(TimeoutError):
            closing = asyncio.get_running_loop().run_in_executor(self._executor, shut)
            await asyncio.wait_for(closing, within)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- operations ----------------------------------------------------------------------
    async def ping(self, budget: float | None = None) -> str:
        """Raises when Qdrant cannot serve; returns how many collections it holds."""
        names = await self._run(
            "list collections", lambda c: c.get_collections().collections, budget
        )
        return f"{len(names)} collection(s)"

    async def ensure_collection(self, name: str, dim: int) -> None:
        def ensure(client: QdrantClient) -> None:
            if not client.collection_exists(name):
                client.create_collection(
                    name,
                    vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                )
                return
            have = _dim_of(client.get_collection(name))
            if have is not None and have != dim:
                raise StoreRejected(
                    f"collection {name!r} holds {have}-dimensional vectors but the embedding "
                    f"model gives {dim}: delete the collection or index into another one"
                )

        await self._run(f"prepare collection {name!r}", ensure)

    async def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        structs = [
            models.PointStruct(id=p.id, vector=list(p.vector), payload=p.payload) for p in points
        ]
        await self._run(
            f"write {len(points)} point(s) to {name!r}",
            lambda c: c.upsert(name, points=structs, wait=True),
        )

    async def set_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        def update(client: QdrantClient) -> None:
            for point_id, payload in payloads.items():
                client.set_payload(name, payload=payload, points=[point_id], wait=True)

        if payloads:
            await self._run(f"update {len(payloads)} payload(s) in {name!r}", update)

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        selector = models.PointIdsList(points=list(ids))
        await self._run(
            f"delete {len(ids)} point(s) from {name!r}",
            lambda c: c.delete(name, points_selector=selector, wait=True),
        )

    async def search(
        self, name: str, vector: Sequence[float], limit: int, budget: float | None = None
    ) -> list[Hit]:
        """The `limit` points nearest to `vector`, best first."""
        dense, _ = await self.search_and_read(name, vector, limit, (), budget)
        return dense

    async def search_and_read(
        self,
        name: str,
        vector: Sequence[float],
        limit: int,
        also: Sequence[str],
        budget: float | None = None,
    ) -> tuple[list[Hit], list[Hit]]:
        """The `limit` points nearest to `vector`, best first, and those of the points
        `also` (found another way) that are not among them (score 0), in one call."""

        def query(client: QdrantClient) -> tuple[list[Hit], list[Hit]]:
            if not client.collection_exists(name):
                raise CollectionMissing(f"collection {name!r} does not exist")
            found = client.query_points(name, query=list(vector), limit=limit, with_payload=True)
            hits = [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in found.points]
            seen = {hit.id for hit in hits}
            missing = [i for i in also if i not in seen]
            extra = []
            if missing:
                points = client.retrieve(name, ids=missing, with_payload=True, with_vectors=False)
                extra = [Hit(str(p.id), 0.0, dict(p.payload or {})) for p in points]
            return hits, extra

        return await self._run(f"search {name!r}", query, budget)

    async def search_ids(
        self, name: str, ids: Sequence[str], budget: float | None = None
    ) -> list[Hit]:
        """The points `ids` (score 0), in no particular order; unknown ids are left out."""

        def fetch(client: QdrantClient) -> list[Hit]:
            if not client.collection_exists(name):
                raise CollectionMissing(f"collection {name!r} does not exist")
            if not ids:
                return []
            found = client.retrieve(name, ids=list(ids), with_payload=True, with_vectors=False)
            return [Hit(str(p.id), 0.0, dict(p.payload or {})) for p in found]

        return await self._run(f"read {len(ids)} point(s) of {name!r}", fetch, budget)

    async def payloads(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """Every point's id and payload (no vectors)."""

        def scroll(client: QdrantClient) -> list[tuple[str, dict[str, Any]]]:
            out: list[tuple[str, dict[str, Any]]] = []
            offset = None
            while True:
                points, offset = client.scroll(
                    name, limit=1000, offset=offset, with_payload=True, with_vectors=False
                )
                out.extend((str(p.id), dict(p.payload or {})) for p in points)
                if offset is None:
                    return out

        return await self._run(f"read the points of {name!r}", scroll)

    async def count(self, name: str) -> int:
        return await self._run(f"count {name!r}", lambda c: c.count(name, exact=True).count)

    async def collections(self) -> list[CollectionInfo]:
        def listing(client: QdrantClient) -> list[CollectionInfo]:
            out = []
            for item in client.get_collections().collections:
                info = client.get_collection(item.name)
                points = client.count(item.name, exact=True).count
                out.append(CollectionInfo(item.name, points, _dim_of(info)))
            return sorted(out, key=lambda i: i.name)

        return await self._run("list collections", listing)

    async def drop(self, name: str) -> bool:
        def drop(client: QdrantClient) -> bool:
            if not client.collection_exists(name):
                return False
            client.delete_collection(name)
            return True

        return await self._run(f"delete collection {name!r}", drop)


def _dim_of(info: models.CollectionInfo) -> int | None:
    vectors = info.config.params.vectors
    return vectors.size if isinstance(vectors, models.VectorParams) else None


@contextmanager
def translate(what: str, where: str) -> Iterator[None]:
    """Map qdrant-client's (and its HTTP client's) exceptions to the `StoreError` tree."""
    prefix = f"Qdrant ({where}) could not {what}"
    try:
        yield
    except StoreError:
        raise
    except UnexpectedResponse as exc:
        status = exc.status_code or 0
        detail = exc.content[:300].decode("utf-8", "replace")
        if status == 404:
            raise CollectionMissing(f"{prefix}: not found ({detail})") from exc
        if status == 429 or status >= 500:
            raise StoreUnavailable(f"{prefix}: HTTP {status} {detail}") from exc
        raise StoreRejected(f"{prefix}: HTTP {status} {detail}") from exc
    except (ResponseHandlingException, httpx.HTTPError, OSError, TimeoutError) as exc:
        raise StoreUnavailable(f"{prefix}: {type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # local mode's refusals (unknown collection, bad value)
        if "not found" in str(exc).lower():
            raise CollectionMissing(f"{prefix}: {exc}") from exc
        raise StoreRejected(f"{prefix}: {exc}") from exc
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise StoreUnavailable(
            f"{prefix}: its folder is locked by another process (is a second rag service "
            "running on the same DATA_DIR?)"
        ) from exc
