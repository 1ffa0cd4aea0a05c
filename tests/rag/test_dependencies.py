"""Which failures are retried, what the client gets when retries run out, and probes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from localsuite.core.errors import InvalidRequest, NotFound, ServiceUnavailable, UpstreamError
from localsuite.core.http import (
    AnswerTimeout,
    BadAnswer,
    ConnectFailed,
    ConnectionLost,
    ErrorAnswer,
)
from localsuite.core.retry import RetryPolicy, no_backoff, set_testing
from localsuite.core.timeouts import Deadline
from localsuite.rag.dependencies import Dependency, Guard, State, is_transient
from localsuite.rag.store import CollectionMissing, StoreRejected, StoreUnavailable, VectorStore
from localsuite.testing.servers import free_port


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with no_backoff():
        yield


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectFailed("refused"), True),
        (AnswerTimeout("silent"), True),
        (ConnectionLost("reset"), True),
        (ErrorAnswer(503, b"{}"), True),
        (ErrorAnswer(502, b"{}"), True),
        (ErrorAnswer(500, b"{}"), True),
        (ErrorAnswer(504, b"{}"), True),
        (ErrorAnswer(429, b"{}"), True),
        (ErrorAnswer(408, b"{}"), True),
        (StoreUnavailable("qdrant down"), True),
        (ErrorAnswer(400, b"{}"), False),
        (ErrorAnswer(404, b"{}"), False),
        (ErrorAnswer(413, b"{}"), False),
        (ErrorAnswer(422, b"{}"), False),
        (StoreRejected("bad vector size"), False),
        (CollectionMissing("no such collection"), False),
        (BadAnswer("not json"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_failures_that_can_pass_are_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def make_guard(up: bool = True) -> Guard:
    async def probe() -> str:
        if not up:
            raise ConnectionError("refused")
        return "ok"

    names = ("qdrant", "embedding", "api-gateway")
    return Guard({n: Dependency(n, probe, 2.0) for n in names}, RetryPolicy(attempts=3))


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (ConnectFailed("refused"), ServiceUnavailable, 503),
        (StoreUnavailable("HTTP 503"), ServiceUnavailable, 503),
        (CollectionMissing("gone"), NotFound, 404),
        (StoreRejected("wrong dim"), InvalidRequest, 400),
        (ErrorAnswer(413, b'{"error": {"message": "too long"}}'), InvalidRequest, 413),
        (ErrorAnswer(422, b'{"error": {"message": "bad"}}'), InvalidRequest, 422),
        (BadAnswer("garbage"), UpstreamError, 502),
    ],
)
def test_what_the_client_gets_for_each_failure(error: Exception, kind: type, status: int) -> None:
    translated = make_guard().translate("embedding", error)
    assert isinstance(translated, kind)
    assert translated.status == status
    if status == 503:
        assert translated.headers()["Retry-After"]
        assert "embedding" in translated.message and translated.code == "embedding_unavailable"


async def test_transient_failures_are_retried_then_answered_with_503() -> None:
    guard = make_guard()
    calls = 0

    async def always_down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectFailed("embedding: cannot connect")

    with pytest.raises(ServiceUnavailable) as caught:
        await guard.call("embedding", always_down, Deadline(30))
    assert calls == 3  # the policy's tries, no more
    assert caught.value.retry_after is not None


async def test_a_refusal_is_not_retried() -> None:
    guard = make_guard()
    calls = 0

    async def refuses() -> None:
        nonlocal calls
        calls += 1
        raise ErrorAnswer(400, b'{"error": {"message": "no"}}')

    with pytest.raises(InvalidRequest, match="no"):
        await guard.call("embedding", refuses, Deadline(30))
    assert calls == 1


async def test_a_call_that_recovers_within_its_tries_succeeds() -> None:
    outcomes = [ConnectFailed("down"), ErrorAnswer(503, b"{}"), "ok"]

    async def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert await make_guard().call("embedding", flaky, Deadline(30)) == "ok"


async def test_retries_never_outlast_the_deadline() -> None:
    set_testing(False)
    guard = Guard(make_guard().dependencies, RetryPolicy(attempts=10, wait_min=5, wait_max=5))
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectFailed("down")

    with pytest.raises(ServiceUnavailable):
        await asyncio.wait_for(guard.call("embedding", down, Deadline(1.0)), timeout=10)
    assert calls == 1  # a 5 s wait does not fit a 1 s deadline: no sleeping past it


async def test_a_dependency_is_probed_down_and_waited_for_until_up() -> None:
    healthy = False
    changes: list[tuple[str, bool]] = []

    async def probe() -> str:
        if not healthy:
            raise ConnectionRefusedError("refused")
        return "fine"

    dependency = Dependency("embedding", probe, 0.2, lambda name, up: changes.append((name, up)))
    assert await dependency.probe() is State.DOWN
    assert not dependency.check().ok and "refused" in (dependency.check().detail or "")
    prober = asyncio.create_task(dependency.run())
    waiter = asyncio.create_task(dependency.wait_up())
    await asyncio.sleep(0)
    assert not waiter.done()
    healthy = True
    await asyncio.wait_for(waiter, timeout=5)  # probed every 0.05 s while down
    prober.cancel()
    assert dependency.up and dependency.check().ok
    assert changes == [("embedding", False), ("embedding", True)]


async def test_a_qdrant_server_that_is_not_there_is_unavailable_not_a_crash() -> None:
    store = VectorStore(url=f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(StoreUnavailable, match="could not"):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.search("docs", [0.1, 0.2], 3)
    finally:
        await store.close()


async def test_a_qdrant_server_that_hangs_costs_the_budget_not_the_client_timeout() -> None:
    """A server that accepts connections and says nothing (a hung Qdrant)."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    store = VectorStore(url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        with pytest.raises(StoreUnavailable, match=r"no answer within 0\.5s"):
            await asyncio.wait_for(store.search("docs", [0.1, 0.2], 3, budget=0.5), timeout=10)
    finally:
        silent.close()
        await store.close()
