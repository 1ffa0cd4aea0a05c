"""Indexing: what a job must do (`plan_paths`), and the worker that does it (`Indexer`).

Per file, against the ledger (`jobstore.documents`):

    unchanged (same SHA-256)   nothing is read from or written to Qdrant
    new or changed             chunk; embed only chunks whose id is new; write them;
                               delete the ids the file no longer has; move the ones
                               that changed position; then record the new ledger entry
    removed (under an indexed folder, gone from disk)   delete its chunks, forget it

    made by another pipeline   (the ledger's `pipeline` is not `Chunker.signature`: an
                               older chunker, another size or tokenizer) chunked again,
                               as if changed: this is how a collection migrates

Chunk ids are deterministic (`chunk_ids`): from the source, the hash of what is embedded
(heading and text) and, for repeated identical chunks, their occurrence number. So an
interrupted file is simply done again: the same ids are written again, and the result is
exactly what a clean run gives.

Files go through a pipeline, so that the embedding service always has work: the next
files are read and chunked, and up to `concurrency` of them embedded, while the previous
one is written (Qdrant, the lexical index, then the ledger, strictly in the job's order).

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from localsuite.core.http import BadAnswer, ErrorAnswer
from localsuite.core.metrics import RagMetrics
from localsuite.core.retry import RetryPolicy
from localsuite.core.tracing import OFF, Tracing
from localsuite.rag.chunking import Chunk, Chunker
from localsuite.rag.clients import EmbeddingClient
from localsuite.rag.dependencies import Dependency, is_transient
from localsuite.rag.jobstore import FINAL_STATES, JobStore, LedgerEntry, WorkItem
from localsuite.rag.lexical import LexicalIndex
from localsuite.rag.loaders import MAX_FILE_BYTES, Document, NotADocument, load, walk
from localsuite.rag.store import CollectionMissing, Point, StoreError, VectorStore

log = logging.getLogger("localsuite.rag")

T = TypeVar("T")
CHUNK_NAMESPACE = uuid.UUID("5f0c5a8e-1d3b-4c71-9a55-6a8f4e0b2c17")


def chunk_ids(source: str, chunks: list[Chunk]) -> list[str]:
    """Deterministic point ids: source + content hash (+ occurrence, for repeats)."""
    seen: dict[str, int] = {}
    ids = []
    for chunk in chunks:
        digest = hashlib.sha256(chunk.embedded.encode()).hexdigest()
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


@dataclass
class Prepared:
    """One work item, read and chunked, and what writing it takes."""

    item: WorkItem
    outcome: Outcome
    fresh: list[tuple[str, Chunk]] = field(default_factory=list)  # (id, chunk) to embed
    gone: list[str] = field(default_factory=list)  # ids to delete
    moved: dict[str, dict[str, object]] = field(default_factory=dict)  # id → new payload part
    payload: dict[str, object] = field(default_factory=dict)  # shared by the file's points
    failure: Exception | None = None  # this file cannot be indexed (the job goes on)


LOOKAHEAD = 4  # files read and chunked ahead of the one being written


class Indexer:
    """The one worker that runs index jobs, oldest first, files through a pipeline."""

    def __init__(
        self,
        jobs: JobStore,
        store: VectorStore,
        lexical: LexicalIndex,
        embedding: EmbeddingClient,
        dependencies: dict[str, Dependency],
        chunker: Chunker,
        *,
        batch_size: int,
        backoff: RetryPolicy,
        embed_budget: float,
        metrics: RagMetrics,
        uploads: Path,
        concurrency: int = 2,
        on_change: Callable[[str], None] | None = None,
        tracing: Tracing = OFF,
    ) -> None:
        self.jobs = jobs
        self.tracing = tracing
        self.store = store
        self.lexical = lexical
        self.embedding = embedding
        self.dependencies = dependencies
        self.chunker = chunker
        self.batch_size = batch_size
        self.backoff = replace(backoff, attempts=None)  # background work waits out outages
        self.embed_budget = embed_budget
        self.metrics = metrics
        self.uploads = uploads
        self._embedding_slots = asyncio.Semaphore(concurrency)
        self._on_change = on_change or (lambda _: None)
        self._wake = asyncio.Event()
        self._finished: dict[str, asyncio.Event] = {}
        self._dims: dict[str, int] = {}
        self.current: str | None = None

    async def _db(self, fn: Callable[..., T], *args: object, **kw: object) -> T:
        return await asyncio.to_thread(fn, *args, **kw)

    def wake(self) -> None:
        self._wake.set()

    async def wait_finished(self, job_id: str, within: float) -> bool:
        """Whether the job reached a final state within `within` seconds."""
        event = self._finished.setdefault(job_id, asyncio.Event())
        if await self._db(self.jobs.state_of, job_id) in FINAL_STATES:  # over before we came
            self._finished.pop(job_id, None)
            return True
        try:
            async with asyncio.timeout(within):
                await event.wait()
        except TimeoutError:
            return False
        finally:
            if event.is_set() or not within:
                self._finished.pop(job_id, None)
        return True

    def ended(self, job_id: str) -> None:
        """The job is over (done, failed, or cancelled from outside): wake its waiters."""
        event = self._finished.get(job_id)
        if event is not None:
            event.set()

    async def run(self) -> None:
        """Run jobs forever; nothing that goes wrong with one job stops the worker: it is
        logged and the job tried again after the policy's backoff."""

        def troubled(_: BaseException, wait: float) -> None:
            log.exception("the index worker failed on job %s; again in %.1fs", self.current, wait)

        while True:
            await self.backoff.call(self._next, retry_on=_any_error, on_retry=troubled)

    async def _next(self) -> None:
        self._wake.clear()
        try:
            job_id = await self._db(self.jobs.next_active)
            if job_id is None:
                await self._wake.wait()
                return
            self.current = job_id
            # the job's span is current while it runs: its embedding calls and writes
            # (in the tasks the job starts) are its children
            with self.tracing.active(
                "rag.index_job", attributes={"localsuite.job_id": job_id}
            ) as span:
                await self._run_job(job_id)
                span.set("localsuite.state", str(await self._db(self.jobs.state_of, job_id)))
            if await self._db(self.jobs.state_of, job_id) in FINAL_STATES:
                self.ended(job_id)
                # uploads are kept until their job is over; then the index holds them
                await asyncio.to_thread(shutil.rmtree, self.uploads / job_id, True)
        finally:
            self.current = None

    async def _set_state(self, job_id: str, state: str, **kw: str | None) -> None:
        await self._db(self.jobs.set_state, job_id, state, **kw)
        self.metrics.job_states(await self._db(self.jobs.active_counts))

    async def _run_job(self, job_id: str) -> None:
        collection = await self._db(self.jobs.collection_of, job_id)
        await self._set_state(job_id, "running")
        ahead: asyncio.Queue[tuple[Prepared, asyncio.Task[list[list[float]]]] | None]
        ahead = asyncio.Queue(maxsize=LOOKAHEAD)
        feeder = asyncio.create_task(self._feed(job_id, collection, ahead))
        touched = False  # whether the job changed the collection
        try:
            while (next_file := await ahead.get()) is not None:
                prepared, embedding = next_file
                if await self._db(self.jobs.state_of, job_id) == "cancelled":
                    return
                try:
                    vectors = await embedding
                    if prepared.failure is not None:
                        raise prepared.failure
                    outcome = await self._write(job_id, collection, prepared, vectors)
                except JobCancelled:  # while it waited for a dependency
                    return
                except (NotADocument, ErrorAnswer, BadAnswer) as exc:  # this file, not the job
                    await self._db(self.jobs.file_failed, job_id, prepared.item.seq, _reason(exc))
                    continue
                except StoreError as exc:  # Qdrant refused: retrying cannot help
                    await self._set_state(job_id, "failed", error=str(exc))
                    return
                await self._db(
                    self.jobs.file_done, job_id, prepared.item.seq, collection,
                    prepared.item.source, outcome.entry, added=outcome.added,
                    removed=outcome.removed, unchanged=outcome.unchanged,
                )  # fmt: skip
                self.metrics.chunks(added=outcome.added, removed=outcome.removed)
                touched = touched or bool(prepared.fresh or prepared.gone or prepared.moved)
            await feeder  # its errors (the job store failing) are the job's
            if await self._backfill_lexical(job_id, collection) or touched:
                await self._db(self.lexical.refresh, collection)  # searches see the whole job
                self._on_change(collection)
        finally:
            feeder.cancel()
            while not ahead.empty():
                left = ahead.get_nowait()
                if left is not None:
                    left[1].cancel()
        if await self._db(self.jobs.state_of, job_id) != "cancelled":
            await self._set_state(job_id, "done")

    async def _feed(
        self,
        job_id: str,
        collection: str,
        ahead: asyncio.Queue[tuple[Prepared, asyncio.Task[list[list[float]]]] | None],
    ) -> None:
        """Read and chunk the job's files in order; start embedding each one's new chunks.
        The end of the list, or an error here (raised by `await feeder`), is a None."""
        try:
            for item in await self._db(self.jobs.pending, job_id):
                try:
                    prepared = await self._prepare(job_id, collection, item)
                except NotADocument as exc:
                    prepared = Prepared(item, Outcome(None), failure=exc)
                embedding = asyncio.create_task(self._embed_fresh(job_id, prepared))
                await ahead.put((prepared, embedding))
        except Exception:
            await ahead.put(None)  # the writer is still reading: let it stop, then raise
            raise
        await ahead.put(None)

    async def _prepare(self, job_id: str, collection: str, item: WorkItem) -> Prepared:
        before = await self._db(self.jobs.ledger, collection, item.source)
        if item.action == "remove":
            gone = before.chunk_ids if before else []
            return Prepared(item, Outcome(None, removed=len(gone)), gone=gone)
        assert item.path is not None
        path = Path(item.path)
        data = await asyncio.to_thread(_read, path)
        digest = hashlib.sha256(data).hexdigest()
        signature = self.chunker.signature
        if before is not None and before.sha256 == digest and before.pipeline == signature:
            return Prepared(item, Outcome(before, unchanged=len(before.chunk_ids)))
        name = Path(item.source.removeprefix("upload:")).name
        document, chunks = await asyncio.to_thread(self._chunk, path, data, name)
        ids = chunk_ids(item.source, chunks)
        old = before.chunk_ids if before else []
        old_set, new_set = set(old), set(ids)
        old_position = {point: n for n, point in enumerate(old)}
        return Prepared(
            item,
            Outcome(
                LedgerEntry(digest, ids, signature), added=len(ids) - len(old_set & new_set),
                removed=len(old_set - new_set), unchanged=len(old_set & new_set),
            ),
            fresh=[(i, c) for i, c in zip(ids, chunks, strict=True) if i not in old_set],
            gone=[i for i in old if i not in new_set],
            moved={
                i: {"chunk": c.index} for i, c in zip(ids, chunks, strict=True)
                if i in old_set and old_position[i] != c.index
            },
            payload={"source": item.source, "sha256": digest, "kind": document.kind},
        )  # fmt: skip

    def _chunk(self, path: Path, data: bytes, name: str) -> tuple[Document, list[Chunk]]:
        document = load(path, data, name)
        return document, self.chunker.chunk(document.outline)

    async def _embed_fresh(self, job_id: str, prepared: Prepared) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(prepared.fresh), self.batch_size):
            texts = [c.embedded for _, c in prepared.fresh[start : start + self.batch_size]]
            async with self._embedding_slots:
                vectors.extend(await self._embed(job_id, texts))
        return vectors

    async def _write(
        self, job_id: str, collection: str, prepared: Prepared, vectors: list[list[float]]
    ) -> Outcome:
        """Qdrant first, then the lexical index: a query may briefly find a chunk only
        by meaning, never by words alone a chunk Qdrant does not have."""
        if prepared.fresh:
            await self._ensure(job_id, collection, len(vectors[0]))
            points = [
                Point(point_id, vector, {
                    **prepared.payload, "chunk": chunk.index, "text": chunk.text,
                    "heading": chunk.heading, "tokens": chunk.tokens,
                })
                for (point_id, chunk), vector in zip(prepared.fresh, vectors, strict=True)
            ]  # fmt: skip
            with self.tracing.active(
                "rag.qdrant.upsert", attributes={"localsuite.points": len(points)}
            ):
                await self._persist(job_id, "qdrant",
                                    lambda: self.store.upsert(collection, points))  # fmt: skip
        gone, moved = prepared.gone, prepared.moved
        await self._persist(job_id, "qdrant", lambda: self.store.delete(collection, gone))
        await self._persist(job_id, "qdrant", lambda: self.store.set_payloads(collection, moved))
        rows = [(point_id, chunk.embedded) for point_id, chunk in prepared.fresh]
        await self._db(self.lexical.add, collection, rows)
        await self._db(self.lexical.delete, collection, gone)
        if prepared.fresh or gone or moved:
            self._on_change(collection)
        return prepared.outcome

    async def _backfill_lexical(self, job_id: str, collection: str) -> bool:
        """Give the lexical index the points it lacks: those of a collection built before
        rag had one (documents uploaded then cannot be read again to migrate them)."""
        have = await self._db(self.lexical.count, collection)
        points = await self._persist(job_id, "qdrant", lambda: self._count(collection))
        if have >= points:
            return False
        known = await self._db(self.lexical.points, collection)
        payloads = await self._persist(job_id, "qdrant", lambda: self.store.payloads(collection))
        rows = [(point, _searchable(payload)) for point, payload in payloads if point not in known]
        if rows:
            log.info("collection %r: %d chunks added to the lexical index", collection, len(rows))
            await self._db(self.lexical.add, collection, rows)
        return bool(rows)

    async def _count(self, collection: str) -> int:
        try:
            return await self.store.count(collection)
        except CollectionMissing:
            return 0

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

        def failed(exc: BaseException, _: float) -> None:
            nonlocal failures
            failures += 1
            self.metrics.retry(name)
            dependency.nudge()
            log.warning("job %s: %s failed (%s); waiting for it", job_id[:8], name, exc)

        async def wait_for_it(backoff: float) -> None:
            await self._set_state(job_id, "waiting", waiting_for=name)
            await asyncio.sleep(backoff)
            await dependency.wait_up()
            if await self._db(self.jobs.state_of, job_id) == "cancelled":
                raise JobCancelled(job_id)

        result = await self.backoff.call(
            op, retry_on=is_transient, on_retry=failed, pause=wait_for_it
        )
        if failures:
            log.info("job %s: %s is back; resuming", job_id[:8], name)
            await self._set_state(job_id, "running")
        return result


def _any_error(exc: BaseException) -> bool:
    return isinstance(exc, Exception)


def _searchable(payload: dict[str, object]) -> str:
    heading, text = payload.get("heading") or "", payload.get("text") or ""
    return f"{heading}\n{text}" if heading else str(text)


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
