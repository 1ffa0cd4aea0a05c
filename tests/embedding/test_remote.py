"""The openai backend, with a second real embedding service as its remote (and a fake one
for the answers a healthy service never gives: garbage, 5xx, 429, silence)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localsuite.embedding.app import create_embedding_app
from localsuite.testing.servers import free_port, serve_in_thread, wait_until

TEXTS = ["The cat sits on the mat.", "Quarterly taxes are due.", "한국어 문장"]


def status(url: str, key: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        return httpx.get(f"{url}/health", headers=headers, timeout=5).status_code
    except httpx.HTTPError:
        return 0


@contextmanager
def real_remote(
    make_settings: Any, backend: Any, port: int | None = None, **overrides: Any
) -> Iterator[str]:
    """A real embedding service (the shared bundled model) to stand as the remote API."""
    app = create_embedding_app(make_settings(**overrides), backend=backend)
    key = overrides.get("localsuite_api_key")
    with serve_in_thread(app, port) as url:
        wait_until(lambda: status(url, key) == 200, what="the remote to be ready")
        yield url


@contextmanager
def relay(
    make_settings: Any, remote: str, *, ready: bool = True, **overrides: Any
) -> Iterator[str]:
    """Our service with the openai backend pointed at `remote`."""
    settings = make_settings(
        embedding_backend="openai", embedding_remote_url=f"{remote}/v1",
        llm_connect_timeout=1.0, **overrides,
    )  # fmt: skip
    with serve_in_thread(create_embedding_app(settings)) as url:
        if ready:
            wait_until(lambda: status(url) == 200, within=20, what="the relay to be ready")
        yield url


def post(url: str, texts: list[str], path: str = "/embed") -> httpx.Response:
    key = "texts" if path == "/embed" else "input"
    return httpx.post(f"{url}{path}", json={key: texts}, timeout=30)


def test_vectors_come_from_the_remote(make_settings: Any, real_backend: Any) -> None:
    with real_remote(make_settings, real_backend) as remote, relay(make_settings, remote) as url:
        health = httpx.get(f"{url}/health", timeout=5).json()
        assert (health["backend"], health["dim"], health["remote"]) == (
            "openai",
            384,
            f"{remote}/v1",
        )
        ours, theirs = post(url, TEXTS), post(remote, TEXTS)
        assert ours.status_code == 200
        np.testing.assert_allclose(
            np.array(ours.json()["embeddings"]), np.array(theirs.json()["embeddings"]), atol=1e-6
        )
        openai_shape = post(url, TEXTS, "/v1/embeddings").json()
        assert len(openai_shape["data"]) == 3
        assert openai_shape["usage"]["prompt_tokens"] > 0


def test_remote_down_is_503_with_retry_after_and_recovers_by_itself(
    make_settings: Any, real_backend: Any
) -> None:
    port = free_port()
    with real_remote(make_settings, real_backend, port) as remote:
        relay_ctx = relay(make_settings, remote)
        url = relay_ctx.__enter__()
    try:
        down = post(url, TEXTS)
        assert down.status_code == 503, down.text
        assert int(down.headers["Retry-After"]) >= 1
        assert down.json()["error"]["code"] == "remote_unavailable"
        assert down.json()["error"]["type"] == "service_unavailable"
        health = httpx.get(f"{url}/health", timeout=5)
        assert health.status_code == 503
        assert health.json()["checks"]["backend"]["ok"] is False
        assert "Retry-After" in health.headers

        with real_remote(make_settings, real_backend, port):
            # No traffic needed: /health probes the remote while it is marked down.
            wait_until(lambda: status(url) == 200, what="the relay to see the remote again")
            assert post(url, TEXTS).status_code == 200
    finally:
        relay_ctx.__exit__(None, None, None)


def test_remote_down_at_start_keeps_loading_until_it_comes(
    make_settings: Any, real_backend: Any
) -> None:
    port = free_port()
    with relay(make_settings, f"http://127.0.0.1:{port}", ready=False) as url:
        health = httpx.get(f"{url}/health", timeout=5)
        assert health.status_code == 503
        assert health.json()["state"] == "loading"
        refused = post(url, TEXTS)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "model_loading"
        with real_remote(make_settings, real_backend, port):
            wait_until(lambda: status(url) == 200, within=20, what="the relay to load")
            assert post(url, TEXTS).status_code == 200


def test_a_remote_4xx_reaches_the_client_with_its_reason(
    make_settings: Any, real_backend: Any
) -> None:
    with (
        real_remote(make_settings, real_backend, embedding_max_chars=100) as remote,
        relay(make_settings, remote) as url,
    ):
        refused = post(url, ["x" * 200])
        assert refused.status_code == 413
        assert "EMBEDDING_MAX_CHARS=100" in refused.json()["error"]["message"]
        assert post(url, ["short"]).status_code == 200


async def test_a_remote_4xx_belongs_only_to_the_request_that_caused_it(
    make_settings: Any, real_backend: Any
) -> None:
    with (
        real_remote(make_settings, real_backend, embedding_max_chars=100) as remote,
        relay(make_settings, remote) as url,
    ):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            bodies = [["x" * 200] if n % 4 == 0 else [f"fine {n}"] for n in range(16)]
            answers = await asyncio.gather(
                *(client.post("/embed", json={"texts": texts}) for texts in bodies)
            )
        for n, answer in enumerate(answers):
            assert answer.status_code == (413 if n % 4 == 0 else 200), (n, answer.text)


def test_the_remote_api_key_is_sent(make_settings: Any, real_backend: Any) -> None:
    with real_remote(make_settings, real_backend, localsuite_api_key="remote-key") as remote:
        with relay(make_settings, remote, embedding_remote_api_key="remote-key") as url:
            assert post(url, TEXTS).status_code == 200
        with relay(make_settings, remote, ready=False, embedding_remote_api_key="wrong") as url:
            wait_until(lambda: httpx.get(f"{url}/health", timeout=5).json()["state"] == "failed",
                       what="the relay to give up on a key the remote refuses")  # fmt: skip
            health = httpx.get(f"{url}/health", timeout=5)
            assert health.status_code == 503
            assert "401" in health.json()["checks"]["model"]["detail"]
            refused = post(url, TEXTS)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "model_failed"


class FakeRemote:
    """An OpenAI-style embeddings API whose next answers the test chooses."""

    def __init__(self) -> None:
        self.mode = "ok"

    def app(self) -> Starlette:
        async def embeddings(request: Request) -> Response:
            texts = (await request.json())["input"]
            rows = [{"index": i, "embedding": [1.0, 0.0, float(i)]} for i in range(len(texts))]
            match self.mode:
                case "ok":
                    return JSONResponse({"data": rows, "usage": {"prompt_tokens": 3}})
                case "garbage":
                    return JSONResponse({"data": "nope"})
                case "not json":
                    return Response(b"<html>proxy page</html>", 200)
                case "wrong size":
                    wide = [{"index": i, "embedding": [1.0] * 5} for i in range(len(texts))]
                    return JSONResponse({"data": wide})
                case "too few":
                    return JSONResponse({"data": rows[:1]})
                case "hang":
                    await asyncio.sleep(5)
                    return JSONResponse({"data": rows})
            code, _, retry_after = self.mode.partition(" retry ")
            headers = {"Retry-After": retry_after} if retry_after else {}
            error = {"error": {"message": f"remote says {code}", "type": "x", "code": "x"}}
            return JSONResponse(error, int(code), headers)

        return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])


@pytest.fixture(scope="module")
def fake_relay(make_settings: Any) -> Iterator[tuple[FakeRemote, str]]:
    fake = FakeRemote()
    with (
        serve_in_thread(fake.app()) as remote,
        relay(make_settings, remote, embedding_timeout=0.5) as url,
    ):
        yield fake, url


@pytest.mark.parametrize(("mode", "status_code", "retry_after", "says"), [
    ("garbage", 502, None, "not 2 embeddings"),
    ("not json", 502, None, "not JSON"),
    ("wrong size", 502, None, "vector size"),
    ("too few", 502, None, "expected 2 vectors"),
    ("500", 502, None, "remote says 500"),
    ("401", 502, None, "remote says 401"),
    ("404", 502, None, "remote says 404"),
    ("503 retry 7", 503, "7", "remote says 503"),
    ("502", 503, "1", "remote says 502"),
    ("429 retry 3", 429, "3", "remote says 429"),
    ("400", 400, None, "remote says 400"),
    ("422", 422, None, "remote says 422"),
    ("hang", 504, None, "EMBEDDING_TIMEOUT"),
])  # fmt: skip
def test_what_the_remote_answers_becomes_an_honest_status(
    fake_relay: tuple[FakeRemote, str],
    mode: str,
    status_code: int,
    retry_after: str | None,
    says: str,
) -> None:
    fake, url = fake_relay
    fake.mode = mode
    try:
        answer = post(url, ["a", "b"])
    finally:
        fake.mode = "ok"
    assert answer.status_code == status_code, answer.text
    assert answer.headers.get("Retry-After") == retry_after
    assert says in answer.json()["error"]["message"]
    # The relay serves again once the remote does (after an outage, /health probes it).
    wait_until(lambda: status(url) == 200, what="the relay to be healthy again")
    assert post(url, ["a", "b"]).json()["embeddings"] == [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
