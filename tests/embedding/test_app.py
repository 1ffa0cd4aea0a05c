"""The service with the real bundled model: vectors, both endpoints, the SDK, health, metrics."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from localsuite.core.bundled import unpacked_model
from localsuite.embedding.app import create_embedding_app
from localsuite.embedding.backends.sentence_transformers import (
    SentenceTransformersBackend,
    _runs,
)
from localsuite.testing.servers import serve_in_thread, wait_until

CAT = "The cat sits on the mat."
CAT_TOO = "A cat is sitting on a rug."
TAXES = "The deadline for quarterly tax filings is next Tuesday."


def embed(url: str, texts: list[str]) -> np.ndarray:
    response = httpx.post(f"{url}/embed", json={"texts": texts}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["dim"] == 384
    return np.array(body["embeddings"], dtype=np.float32)


def as_floats(value: Any) -> Any:
    return np.frombuffer(base64.b64decode(value), dtype="<f4") if isinstance(value, str) else value


def test_vectors_have_384_dimensions_and_unit_length(service_url: str) -> None:
    vectors = embed(service_url, [CAT, TAXES, "", "한국어 문장도 임베딩됩니다."])
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_identical_texts_give_identical_vectors(service_url: str) -> None:
    together = embed(service_url, [CAT, TAXES, CAT])
    alone = embed(service_url, [CAT])
    np.testing.assert_allclose(together[0], together[2], atol=1e-6)
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)


def test_similar_texts_score_higher_than_unrelated_ones(service_url: str) -> None:
    cat, cat_too, taxes = embed(service_url, [CAT, CAT_TOO, TAXES])
    assert float(cat @ cat_too) > float(cat @ taxes) + 0.3


def test_vectors_match_the_model_called_in_process(service_url: str, real_backend: Any) -> None:
    from sentence_transformers import SentenceTransformer

    path = unpacked_model(real_backend._cache)
    assert path is not None
    model = SentenceTransformer(str(path), device="cpu")
    model.max_seq_length = 512
    texts = [CAT, TAXES, "short", "word " * 400]
    expected = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(embed(service_url, texts), expected, atol=1e-5)


def test_the_window_holds_a_whole_rag_chunk(
    service_url: str, real_backend: SentenceTransformersBackend
) -> None:
    assert real_backend.max_tokens == 512
    # Texts alike for their first 300 tokens: a 256-token window could not tell them apart.
    common = "alpha " * 300
    a, b = embed(service_url, [common + "volcano eruption lava", common + "violin concerto"])
    assert not np.allclose(a, b, atol=1e-4)


def test_embed_and_openai_endpoints_agree(service_url: str) -> None:
    texts = [CAT, TAXES, "third"]
    vectors = embed(service_url, texts)
    response = httpx.post(f"{service_url}/v1/embeddings", json={"input": texts}, timeout=60)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    floats = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(floats, vectors, atol=1e-6)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0

    packed = httpx.post(
        f"{service_url}/v1/embeddings",
        json={"input": texts, "encoding_format": "base64", "model": "anything"},
        timeout=60,
    ).json()
    decoded = np.array([as_floats(d["embedding"]) for d in packed["data"]])
    np.testing.assert_allclose(decoded, vectors, atol=1e-6)


def test_a_single_string_input(service_url: str) -> None:
    body = httpx.post(
        f"{service_url}/v1/embeddings", json={"input": "hello world", "dimensions": 384}, timeout=60
    ).json()
    assert len(body["data"]) == 1
    assert len(body["data"][0]["embedding"]) == 384
    assert body["usage"]["prompt_tokens"] == 4  # [CLS] hello world [SEP]


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_the_official_openai_sdk(service_url: str, encoding_format: str | None) -> None:
    client = openai.OpenAI(base_url=f"{service_url}/v1", api_key="unused", max_retries=0)
    kw: dict[str, Any] = {} if encoding_format is None else {"encoding_format": encoding_format}
    answer = client.embeddings.create(model="text-embedding-3-small", input=[CAT, TAXES], **kw)
    assert answer.model == "all-MiniLM-L6-v2"
    # Asked for explicitly, base64 comes back as the string; by default the SDK decodes it.
    got = np.array([as_floats(d.embedding) for d in answer.data], dtype=np.float32)
    np.testing.assert_allclose(got, embed(service_url, [CAT, TAXES]), atol=1e-6)
    assert answer.usage.prompt_tokens > 0


async def test_concurrent_requests_each_get_their_own_vectors(service_url: str) -> None:
    requests = [[f"request {n} text {i}" for i in range(n % 5 + 1)] for n in range(24)]
    expected = [embed(service_url, texts) for texts in requests]
    async with httpx.AsyncClient(base_url=service_url, timeout=120) as client:
        answers = await asyncio.gather(
            *(client.post("/embed", json={"texts": texts}) for texts in requests)
        )
    for answer, want in zip(answers, expected, strict=True):
        assert answer.status_code == 200
        np.testing.assert_allclose(np.array(answer.json()["embeddings"]), want, atol=1e-5)


def test_health_is_503_while_loading_then_200(make_settings: Any, gated_backend: Any) -> None:
    app = create_embedding_app(make_settings(), backend=gated_backend)
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/health/live", timeout=5).status_code == 200
        loading = httpx.get(f"{url}/health", timeout=5)
        assert loading.status_code == 503
        assert loading.headers["Retry-After"] == "1"
        assert loading.json()["state"] == "loading"
        assert loading.json()["checks"]["model"]["ok"] is False
        refused = httpx.post(f"{url}/embed", json={"texts": ["hi"]}, timeout=5)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "model_loading"
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'localsuite_embedding_model_state{state="loading"} 1.0' in metrics

        gated_backend.gate.set()
        wait_until(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200,
                   what="the model to load")  # fmt: skip
        body = httpx.get(f"{url}/health", timeout=5).json()
        assert body["ok"] is True
        assert (body["model"], body["dim"], body["state"]) == ("all-MiniLM-L6-v2", 384, "ready")
        assert body["max_tokens"] == 512
        assert embed(url, ["hi"]).shape == (1, 384)
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'localsuite_embedding_model_state{state="ready"} 1.0' in metrics


def test_metrics_count_requests_texts_and_batches(service_url: str) -> None:
    embed(service_url, ["one", "two", "three"])
    metrics = httpx.get(f"{service_url}/metrics", timeout=10).text
    for name in (
        'localsuite_embedding_requests_total{endpoint="embed",outcome="ok"}',
        'localsuite_embedding_texts_total{endpoint="embed"}',
        "localsuite_embedding_batch_texts_count",
        'localsuite_embedding_batch_seconds_count{result="ok"}',
        'localsuite_embedding_request_seconds_count{endpoint="embed"}',
        "localsuite_embedding_queued_texts 0.0",
    ):
        assert name in metrics, name


def test_a_batch_of_mixed_lengths_embeds_as_each_text_alone(
    real_backend: SentenceTransformersBackend,
) -> None:
    """Long texts run in several model calls of similar lengths (`PADDED_TOKENS`): every
    row must still be its own text's vector, in the caller's order, token counts too."""
    texts = [("word " * n).strip() + f" {n}" for n in (3, 700, 40, 250, 5, 250, 120, 1)]
    model = real_backend._st
    together = SentenceTransformersBackend._embed_with(model, texts)
    for i, text in enumerate(texts):
        alone = SentenceTransformersBackend._embed_with(model, [text])
        assert np.allclose(together.vectors[i], alone.vectors[0], atol=1e-5), i
        assert together.tokens[i] == alone.tokens[0]
    assert together.tokens[1] == 512  # the 700 words, truncated to the window


@pytest.mark.parametrize(
    ("lengths", "budget", "runs"),
    [
        ([10, 300, 20, 300, 5], 600, [[1, 3], [2, 0, 4]]),
        ([600, 700], 600, [[1], [0]]),  # one text over the budget still runs, alone
        ([8] * 5, 16, [[0, 1], [2, 3], [4]]),
        ([], 100, []),
    ],
)
def test_runs_group_by_length_within_the_padded_budget(
    lengths: list[int], budget: int, runs: list[list[int]]
) -> None:
    assert _runs(lengths, budget) == runs
