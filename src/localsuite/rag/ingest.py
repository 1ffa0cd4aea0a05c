"""Indexing: what a job must do (`plan_paths`), and the worker that does it (`Indexer`).

Per file, against the ledger (`jobstore.documents`):

    unchanged (same SHA-256)   nothing is read from or written to Qdrant
    new or changed             chunk; embed only chunks whose id is new; write them;
                               delete the ids the file no longer has; move the ones
                               that changed position; then record the new ledger entry
    removed (under an indexed folder, gone from disk)   delete its chunks, forget it

Chunk ids are deterministic (`chunk_ids`): from the source, the chunk's content hash
and, for repeated identical chunks, their occurrence number. So an interrupted file is
simply done again: the same ids are written again, and the result is exactly what a
clean run gives.

When a dependency is down, the job is marked `waiting` (saying which), waits until
its probe passes, and goes on with the same file; nothing is skipped or lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from localsuite.core.http import BadAnswer, ErrorAnswer
from localsuite.core.metrics import RagMetrics
from localsuite.core.retry import RetryPolicy
from localsuite.rag.chunking import Chunk, Chunker
from localsuite.rag.clients import EmbeddingClient
from localsuite.rag.dependencies import Dependency, is_transient
from localsuite.rag.jobstore import FINAL_STATES, JobStore, LedgerEntry, WorkItem
from localsuite.rag.loaders import MAX_FILE_BYTES, NotADocument, load, walk
from localsuite.rag.store import Point, StoreError, VectorStore

log = logging.getLogger("localsuite.rag")

T = TypeVar("T")
CHUNK_NAMESPACE = uuid.UUID("5f0c5a8e-1d3b-4c71-9a55-6a8f4e0b2c17")


def chunk_ids(source: str, chunks: list[Chunk]) -> list[str]:
    """Deterministic point ids: source + content hash (+ occurrence, for repeats)."""
    seen: dict[str, int] = {}
    ids = []
    for chunk in chunks:
        digest = hashlib.sha256(chunk.text.encode()).hexdigest()
        occurrence = seen.get(digest, 0)
        seen[digest] = occurrence + 1
        ids.append(str(uuid.uuid5(CHUNK_NAMESPACE, f"{source}\0{digest}\0{occurrence}")))
    return ids


def plan_paths(paths: list[Path], known_sources: list[str]) -> list[tuple[str, str, str | None]]:
    """The work list for indexing `paths` (absolute): each file to index, and each source
    the ledger holds under an indexed folder that is no longer on disk, to remove."""
    work: list[tuple[str, str, str | None]] = []
    listed: set[str] = set()
    for path in paths:
        files = walk(path) if path.is_dir() else [path]
        for file in files:
            source = str(file)
            if source not in listed:
                listed.add(source)
                work.append(("index", source, source))
        if path.is_dir():
            prefix = f"{path}/"
            for source in known_sources:
                if source.startswith(prefix) and source not in listed and not Path(source).exists():
                    listed.add(source)
                    work.append(("remove", source, None))
    return work


class JobCancelled(Exception):
    """The job was cancelled (its collection deleted) while it waited."""


@dataclass
class Outcome:
    entry: LedgerEntry | None
    added: int = 0
    removed: int = 0
    unchanged: int = 0


class Indexer:
    """The one worker that runs index jobs, oldest first, one file at a time."""

    def __init__(
        self,
        jobs: JobStore,
        store: VectorStore,
        embedding: EmbeddingClient,
        dependencies: dict[str, Dependency],
        chunker: Chunker,
        *,
        batch_size: int,
        backoff: RetryPolicy,
        embed_budget: float,
        metrics: RagMetrics,
        uploads: Path,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.embedding = embedding
        self.dependencies = dependencies
        self.chunker = chunker
        self.batch_size = batch_size
        self.backoff = backoff
        self.embed_budget = embed_budget
        self.metrics = metrics
        self.uploads = uploads
        self._wake = asyncio.Event()
        self._dims: dict[str, int] = {}
        self.current: str | None = None

    async def _db(self, fn: Callable[..., T], *args: object, **kw: object) -> T:
        return await asyncio.to_thread(fn, *args, **kw)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Run jobs forever; nothing that goes wrong with one job stops the worker."""
        troubles = 0
        while True:
            self._wake.clear()
            try:
                job_id = await self._db(self.jobs.next_active)
                if job_id is None:
                    await self._wake.wait()
                    continue
                self.current = job_id
                await self._run_job(job_id)
                troubles = 0
                if await self._db(self.jobs.state_of, job_id) in FINAL_STATES:
                    # uploads are kept until their job is over; then the index holds them
                    await asyncio.to_thread(shutil.rmtree, self.uploads / job_id, True)
            except Exception:  # SQLite or the disk failing, or a bug: say so, try later
                troubles += 1
                log.exception("the index worker failed on job %s; trying again", self.current)
                await asyncio.sleep(self.backoff.delay(troubles))
            finally:
                self.current = None

    async def _set_state(self, job_id: str, state: str, **kw: str | None) -> None:
        await self._db(self.jobs.set_state, job_id, state, **kw)
        self.metrics.job_states(await self._db(self.jobs.active_counts))

    async def _run_job(self, job_id: str) -> None:
        collection = await self._db(self.jobs.collection_of, job_id)
        await self._set_state(job_id, "running")
        for item in await self._db(self.jobs.pending, job_id):
            if await self._db(self.jobs.state_of, job_id) == "cancelled":
                return
            try:
                outcome = await self._file(job_id, collection, item)
            except JobCancelled:  # while it waited for a dependency
                return
            except (NotADocument, ErrorAnswer, BadAnswer) as exc:  # this file, not the job
                await self._db(self.jobs.file_failed, job_id, item.seq, _reason(exc))
                continue
            except StoreError as exc:  # Qdrant refused: retrying cannot help
                await self._set_state(job_id, "failed", error=str(exc))
                return
            await self._db(
                self.jobs.file_done, job_id, item.seq, collection, item.source, outcome.entry,
                added=outcome.added, removed=outcome.removed, unchanged=outcome.unchanged,
            )  # fmt: skip
            self.metrics.chunks(added=outcome.added, removed=outcome.removed)
        if await self._db(self.jobs.state_of, job_id) != "cancelled":
            await self._set_state(job_id, "done")

    async def _file(self, job_id: str, collection: str, item: WorkItem) -> Outcome:
        before = await self._db(self.jobs.ledger, collection, item.source)
        if item.action == "remove":
            if before is not None:
                await self._persist(
                    job_id, "qdrant", lambda: self.store.delete(collection, before.chunk_ids)
                )
            return Outcome(None, removed=len(before.chunk_ids) if before else 0)

        assert item.path is not None
        path = Path(item.path)
        data = await asyncio.to_thread(_read, path)
        digest = hashlib.sha256(data).hexdigest()
        if before is not None and before.sha256 == digest:
            return Outcome(before, unchanged=len(before.chunk_ids))
        document = await asyncio.to_thread(load, path, data)
        chunks = await asyncio.to_thread(self.chunker.split, document.text, code=document.is_code)
        ids = chunk_ids(item.source, chunks)
        old = before.chunk_ids if before else []
        old_set, new_set = set(old), set(ids)
        fresh = [(i, c) for i, c in zip(ids, chunks, strict=True) if i not in old_set]
        gone = [i for i in old if i not in new_set]
        moved = {
            i: {"chunk": c.index}
            for i, c in zip(ids, chunks, strict=True)
            if i in old_set and old.index(i) != c.index
        }
        for start in range(0, len(fresh), self.batch_size):
            batch = fresh[start : start + self.batch_size]
            vectors = await self._embed(job_id, [c.text for _, c in batch])
            await self._ensure(job_id, collection, len(vectors[0]))
            points = [
                Point(point_id, vector, {
                    "source": item.source, "chunk": chunk.index, "text": chunk.text,
                    "tokens": chunk.tokens, "sha256": digest, "kind": document.kind,
                })
                for (point_id, chunk), vector in zip(batch, vectors, strict=True)
            ]  # fmt: skip
            await self._persist(job_id, "qdrant", lambda p=points: self.store.upsert(collection, p))  # type: ignore[misc]
        await self._persist(job_id, "qdrant", lambda: self.store.delete(collection, gone))
        await self._persist(job_id, "qdrant", lambda: self.store.set_payloads(collection, moved))
        return Outcome(
            LedgerEntry(digest, ids), added=len(fresh), removed=len(gone),
            unchanged=len(ids) - len(fresh),
        )  # fmt: skip

    async def _embed(self, job_id: str, texts: list[str]) -> list[list[float]]:
        async def call() -> list[list[float]]:
            return (await self.embedding.embed(texts, self.embed_budget)).vectors

        return await self._persist(job_id, "embedding", call)

    async def _ensure(self, job_id: str, collection: str, dim: int) -> None:
        if self._dims.get(collection) == dim:
            return
        await self._persist(job_id, "qdrant", lambda: self.store.ensure_collection(collection, dim))
        self._dims[collection] = dim

    def forget(self, collection: str) -> None:
        self._dims.pop(collection, None)

    async def _persist(self, job_id: str, name: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op` until it succeeds; while `name` is down, the job waits for it.

        Only transient failures are retried: a refusal is raised to the job."""
        dependency = self.dependencies[name]
        failures = 0
        while True:
            try:
                result = await op()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                self.metrics.retry(name)
                dependency.nudge()
                log.warning("job %s: %s failed (%s); waiting for it", job_id[:8], name, exc)
                await self._set_state(job_id, "waiting", waiting_for=name)
                await asyncio.sleep(self.backoff.delay(failures))
                await dependency.wait_up()
                if await self._db(self.jobs.state_of, job_id) == "cancelled":
                    raise JobCancelled(job_id) from exc
                continue
            if failures:
                log.info("job %s: %s is back; resuming", job_id[:8], name)
                await self._set_state(job_id, "running")
            return result


def _reason(exc: Exception) -> str:
    """Why a file was not indexed, for the job's `failures`."""
    if isinstance(exc, ErrorAnswer):
        hint = " (is RAG_INDEX_BATCH_SIZE above EMBEDDING_MAX_TEXTS?)" if exc.status == 413 else ""
        return f"the embedding service refused it: HTTP {exc.status} {exc.message()}{hint}"
    return str(exc)


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise NotADocument(f"{path.name}: larger than {MAX_FILE_BYTES // 2**20} MiB")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotADocument(f"{path}: no longer exists") from exc
    except OSError as exc:
        raise NotADocument(f"{path}: cannot read ({exc.strerror or exc})") from exc
