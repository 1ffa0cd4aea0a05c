"""The micro-batcher: concurrent requests share model calls of up to EMBEDDING_BATCH_SIZE texts.

A model embeds 32 texts in one call far faster than in 32 calls, but each client sends
what it has. Requests queue their texts; a consumer task takes batches from the front of
the queue, in arrival order, whenever a model slot is free (one slot for a local model).
There is no timer: while the model is busy, texts pile up and the next batch is full;
when it is idle, a lone request goes at once. A request's texts may span several batches,
and a batch may hold several requests' texts; each request gets its rows back in order.

Failures stay with their requests:

- a batch that fails fails the requests it holds texts of, not those queued behind it;
- a client error (`InvalidRequest`, e.g. a remote 4xx about one text) from a batch that
  mixes requests is retried once per request, so a request never gets another's 400;
- a request whose caller is gone (cancelled) is skipped: its texts not yet taken are
  never embedded.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress

import numpy as np

from localsuite.core.errors import InvalidRequest, ServiceUnavailable
from localsuite.embedding.backends.base import Embedded

EmbedFn = Callable[[list[str]], Awaitable[Embedded]]
BatchHook = Callable[[int, float, bool], None]  # texts, seconds, ok


class _Job:
    """One request's texts, the rows filled so far, and the future its caller awaits."""

    __slots__ = ("filled", "future", "taken", "texts", "tokens", "vectors")

    def __init__(self, texts: list[str], future: asyncio.Future[Embedded]) -> None:
        self.texts = texts
        self.future = future
        self.taken = 0  # texts handed to batches so far
        self.filled = 0  # rows received so far
        self.vectors: np.ndarray | None = None
        self.tokens = [0] * len(texts)

    def fill(self, start: int, part: Embedded) -> None:
        if self.future.done():
            return
        rows = part.vectors
        if self.vectors is None:
            self.vectors = np.empty((len(self.texts), rows.shape[1]), dtype=np.float32)
        self.vectors[start : start + len(rows)] = rows
        self.tokens[start : start + len(rows)] = part.tokens
        self.filled += len(rows)
        if self.filled == len(self.texts):
            self.future.set_result(Embedded(self.vectors, self.tokens))

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


# A batch is a list of (job, start, stop): texts[start:stop] of that job, in order.
_Batch = list[tuple[_Job, int, int]]


class MicroBatcher:
    def __init__(
        self,
        embed: EmbedFn,
        *,
        batch_size: int,
        concurrency: int = 1,
        on_batch: BatchHook | None = None,
    ) -> None:
        self._embed = embed
        self._batch_size = batch_size
        self._slots = asyncio.Semaphore(concurrency)
        self._on_batch = on_batch
        self._queue: deque[_Job] = deque()
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Texts queued and not yet handed to the model."""
        return self._pending

    async def submit(self, texts: list[str]) -> Embedded:
        """Vectors (and token counts) for `texts`, in order, once their batches ran."""
        if self._closed:
            raise ServiceUnavailable("the embedding service is shutting down")
        if not texts:
            raise InvalidRequest("no texts to embed")
        if self._consumer is None:
            self._consumer = asyncio.create_task(self._consume(), name="embedding-batcher")
        job = _Job(texts, asyncio.get_running_loop().create_future())
        job.future.add_done_callback(lambda _: self._forget(job))
        self._queue.append(job)
        self._pending += len(texts)
        self._wakeup.set()
        # Cancelling the caller cancels `job.future`, which makes the batcher skip the job.
        return await job.future

    async def aclose(self) -> None:
        """Stop taking batches; queued requests fail with 503, running batches finish."""
        self._closed = True
        if self._consumer is not None:
            self._consumer.cancel()
            with suppress(asyncio.CancelledError):
                await self._consumer
        while self._queue:
            self._queue.popleft().fail(ServiceUnavailable("the embedding service is shutting down"))
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _consume(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                # Waiting for a free slot before taking is what lets a batch fill up.
                await self._slots.acquire()
                batch = self._take()
                if not batch:
                    self._slots.release()
                    break
                task = asyncio.create_task(self._run(batch))
                self._running.add(task)
                task.add_done_callback(self._finished)

    def _forget(self, job: _Job) -> None:
        # A failed or cancelled job's texts not yet taken are no longer pending.
        self._pending -= len(job.texts) - job.taken
        job.taken = len(job.texts)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()

    def _take(self) -> _Batch:
        batch: _Batch = []
        room = self._batch_size
        while self._queue and room:
            job = self._queue[0]
            if job.future.done():  # cancelled, or failed in an earlier batch
                self._queue.popleft()
                continue
            start = job.taken
            stop = min(len(job.texts), start + room)
            batch.append((job, start, stop))
            job.taken = stop
            room -= stop - start
            self._pending -= stop - start
            if stop == len(job.texts):
                self._queue.popleft()
        return batch

    async def _run(self, batch: _Batch) -> None:
        try:
            await self._embed_batch(batch)
        except InvalidRequest as error:
            if len({id(job) for job, _, _ in batch}) == 1:
                _fail(batch, error)
                return
            for part in _per_job(batch):  # whose text was it? ask for each request alone
                try:
                    await self._embed_batch(part)
                except Exception as part_error:  # it belongs to that request alone
                    _fail(part, part_error)
        except Exception as error:  # the batch's requests receive it
            _fail(batch, error)

    async def _embed_batch(self, batch: _Batch) -> None:
        texts = [text for job, start, stop in batch for text in job.texts[start:stop]]
        started = time.perf_counter()
        try:
            result = await self._embed(texts)
        except Exception:
            self._hook(len(texts), started, ok=False)
            raise
        self._hook(len(texts), started, ok=True)
        offset = 0
        for job, start, stop in batch:
            size = stop - start
            part = Embedded(
                result.vectors[offset : offset + size], result.tokens[offset : offset + size]
            )
            job.fill(start, part)
            offset += size

    def _hook(self, size: int, started: float, *, ok: bool) -> None:
        if self._on_batch is not None:
            self._on_batch(size, time.perf_counter() - started, ok)


def _fail(batch: _Batch, error: BaseException) -> None:
    for job, _, _ in batch:
        job.fail(error)


def _per_job(batch: _Batch) -> list[_Batch]:
    parts: dict[int, _Batch] = {}
    for entry in batch:
        parts.setdefault(id(entry[0]), []).append(entry)
    return list(parts.values())
