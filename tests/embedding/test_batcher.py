"""The micro-batcher: coalescing, order, failures that stay with their requests, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from localsuite.core.errors import InvalidRequest, ServiceUnavailable
from localsuite.embedding.backends.base import Embedded
from localsuite.embedding.batcher import MicroBatcher


class Model:
    """A fake model: text "7" becomes the vector [7, 1]; calls can be held at a gate."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_on: dict[str, BaseException] = {}

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()

    async def embed(self, texts: list[str]) -> Embedded:
        self.calls.append(list(texts))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.entered.set()
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        for text in texts:
            if text in self.fail_on:
                raise self.fail_on[text]
        vectors = np.array([[float(t), 1.0] for t in texts], dtype=np.float32)
        return Embedded(vectors, [1] * len(texts))


def numbers(start: int, count: int) -> list[str]:
    return [str(n) for n in range(start, start + count)]


def firsts(result: Embedded) -> list[str]:
    return [str(int(v)) for v in result.vectors[:, 0]]


@pytest.fixture
def model() -> Iterator[Model]:
    yield Model()


async def test_a_lone_request_goes_at_once_and_comes_back_in_order(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=32)
    result = await batcher.submit(numbers(0, 5))
    assert firsts(result) == numbers(0, 5)
    assert result.tokens == [1] * 5
    assert model.calls == [numbers(0, 5)]
    await batcher.aclose()


async def test_requests_that_wait_for_the_model_share_one_batch(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=32)
    model.hold()
    first = asyncio.create_task(batcher.submit(["0"]))
    await model.entered.wait()
    waiting = [asyncio.create_task(batcher.submit(numbers(n * 10, 3))) for n in (1, 2, 3)]
    await asyncio.sleep(0)  # let them queue (no readiness to poll: this is one loop)
    assert batcher.pending == 9
    model.gate.set()
    assert firsts(await first) == ["0"]
    for n, task in zip((1, 2, 3), waiting, strict=True):
        assert firsts(await task) == numbers(n * 10, 3)
    assert model.calls == [["0"], numbers(10, 3) + numbers(20, 3) + numbers(30, 3)]
    await batcher.aclose()


@pytest.mark.parametrize(("size", "batch_size", "calls"), [
    (70, 32, [32, 32, 6]),
    (64, 32, [32, 32]),
    (1, 1, [1]),
    (5, 1, [1, 1, 1, 1, 1]),
])  # fmt: skip
async def test_a_large_request_is_cut_into_batches(
    model: Model, size: int, batch_size: int, calls: list[int]
) -> None:
    batcher = MicroBatcher(model.embed, batch_size=batch_size)
    result = await batcher.submit(numbers(0, size))
    assert firsts(result) == numbers(0, size)
    assert [len(c) for c in model.calls] == calls
    await batcher.aclose()


async def test_requests_spanning_batches_each_get_their_own_rows(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=4)
    model.hold()
    blocker = asyncio.create_task(batcher.submit(["999"]))
    await model.entered.wait()
    sizes = (3, 5, 1, 6)
    starts = (100, 200, 300, 400)
    tasks = [
        asyncio.create_task(batcher.submit(numbers(s, n)))
        for s, n in zip(starts, sizes, strict=True)
    ]
    await asyncio.sleep(0)
    model.gate.set()
    await blocker
    for task, start, size in zip(tasks, starts, sizes, strict=True):
        assert firsts(await task) == numbers(start, size)
    assert all(len(call) <= 4 for call in model.calls)
    assert sum(len(call) for call in model.calls) == 1 + sum(sizes)
    await batcher.aclose()


async def test_an_error_fails_only_the_requests_in_that_batch(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=2)
    model.fail_on["13"] = RuntimeError("model crashed")
    model.hold()
    first = asyncio.create_task(batcher.submit(["1", "2"]))
    await model.entered.wait()
    doomed = asyncio.create_task(batcher.submit(["12", "13"]))
    after = asyncio.create_task(batcher.submit(["21", "22"]))
    await asyncio.sleep(0)
    model.gate.set()
    assert firsts(await first) == ["1", "2"]
    with pytest.raises(RuntimeError, match="model crashed"):
        await doomed
    assert firsts(await after) == ["21", "22"]
    await batcher.aclose()


async def test_a_failed_request_loses_its_later_batches(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=2)
    model.fail_on["1"] = ServiceUnavailable("remote down")
    with pytest.raises(ServiceUnavailable):
        await batcher.submit(numbers(0, 6))
    assert model.calls == [["0", "1"]]  # the rest of the request was never embedded
    assert batcher.pending == 0
    await batcher.aclose()


async def test_a_client_error_in_a_shared_batch_goes_to_its_own_request(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=8)
    model.fail_on["66"] = InvalidRequest("text 66 is refused by the remote")
    model.hold()
    first = asyncio.create_task(batcher.submit(["0"]))
    await model.entered.wait()
    guilty = asyncio.create_task(batcher.submit(["65", "66"]))
    innocent = asyncio.create_task(batcher.submit(["70", "71"]))
    await asyncio.sleep(0)
    model.gate.set()
    await first
    with pytest.raises(InvalidRequest, match="66"):
        await guilty
    assert firsts(await innocent) == ["70", "71"]
    # Shared batch, then each request alone to learn whose text it was.
    assert model.calls == [["0"], ["65", "66", "70", "71"], ["65", "66"], ["70", "71"]]
    await batcher.aclose()


async def test_an_outage_fails_every_request_in_the_batch_without_retrying(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=8)
    model.fail_on["1"] = ServiceUnavailable("remote down")
    model.hold()
    first = asyncio.create_task(batcher.submit(["0"]))
    await model.entered.wait()
    a = asyncio.create_task(batcher.submit(["1"]))
    b = asyncio.create_task(batcher.submit(["2"]))
    await asyncio.sleep(0)
    model.gate.set()
    await first
    for task in (a, b):
        with pytest.raises(ServiceUnavailable):
            await task
    assert len(model.calls) == 2
    await batcher.aclose()


async def test_a_cancelled_request_is_never_embedded(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=8)
    model.hold()
    first = asyncio.create_task(batcher.submit(["0"]))
    await model.entered.wait()
    gone = asyncio.create_task(batcher.submit(numbers(50, 3)))
    kept = asyncio.create_task(batcher.submit(numbers(60, 2)))
    await asyncio.sleep(0)
    gone.cancel()
    model.gate.set()
    await first
    assert firsts(await kept) == numbers(60, 2)
    assert gone.cancelled()
    assert model.calls == [["0"], numbers(60, 2)]
    assert batcher.pending == 0
    await batcher.aclose()


async def test_cancelling_mid_request_stops_its_remaining_batches(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=2)
    model.hold()
    task = asyncio.create_task(batcher.submit(numbers(0, 6)))
    await model.entered.wait()
    task.cancel()
    model.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    other = await batcher.submit(["9"])  # the batcher still serves
    assert firsts(other) == ["9"]
    assert model.calls == [["0", "1"], ["9"]]
    await batcher.aclose()


async def test_a_cancelled_neighbour_does_not_disturb_a_shared_batch(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=8)
    model.hold()
    blocker = asyncio.create_task(batcher.submit(["0"]))
    await model.entered.wait()
    a = asyncio.create_task(batcher.submit(["1"]))
    b = asyncio.create_task(batcher.submit(["2"]))
    await asyncio.sleep(0)
    model.gate.set()
    await blocker
    model.hold()
    await model.entered.wait()  # a and b are in the model together
    a.cancel()
    model.gate.set()
    assert firsts(await b) == ["2"]
    assert a.cancelled()
    await batcher.aclose()


async def test_a_remote_backend_runs_several_batches_at_once(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=1, concurrency=3)
    model.hold()
    task = asyncio.create_task(batcher.submit(numbers(0, 6)))
    await model.entered.wait()
    await asyncio.sleep(0)
    assert model.in_flight == 3
    model.gate.set()
    assert firsts(await task) == numbers(0, 6)
    assert model.most_in_flight == 3
    await batcher.aclose()


async def test_closing_fails_queued_requests_with_503(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=8)
    model.hold()
    running = asyncio.create_task(batcher.submit(["0"]))
    await model.entered.wait()
    queued = asyncio.create_task(batcher.submit(["1"]))
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.aclose())
    with pytest.raises(ServiceUnavailable):
        await queued
    model.gate.set()
    await closing
    assert firsts(await running) == ["0"]  # what the model had started finishes
    assert batcher.pending == 0
    with pytest.raises(ServiceUnavailable):
        await batcher.submit(["2"])


async def test_nothing_to_embed_is_a_client_error(model: Model) -> None:
    batcher = MicroBatcher(model.embed, batch_size=8)
    with pytest.raises(InvalidRequest):
        await batcher.submit([])
    await batcher.aclose()


async def test_the_batch_hook_sees_each_model_call(model: Model) -> None:
    seen: list[tuple[int, bool]] = []
    batcher = MicroBatcher(
        model.embed, batch_size=3, on_batch=lambda n, _s, ok: seen.append((n, ok))
    )
    await batcher.submit(numbers(0, 7))
    model.fail_on["9"] = RuntimeError("x")
    with pytest.raises(RuntimeError):
        await batcher.submit(["9"])
    assert seen == [(3, True), (3, True), (1, True), (1, False)]
    await batcher.aclose()
