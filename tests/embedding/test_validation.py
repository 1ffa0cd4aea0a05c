"""What the service accepts and the 4xx it gives otherwise: the parsers, then over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from localsuite.core.errors import InvalidRequest, PayloadTooLarge
from localsuite.embedding.validation import Limits, embed_texts, openai_request

LIMITS = Limits(max_texts=4, max_chars=20)


@pytest.mark.parametrize(("body", "expected"), [
    ({"texts": ["a"]}, ["a"]),
    ({"texts": ["a", "", "한국어 문장"]}, ["a", "", "한국어 문장"]),
    ({"texts": ["x" * 20] * 4}, ["x" * 20] * 4),
    ({"texts": ["a"], "extra": 1}, ["a"]),
])  # fmt: skip
def test_embed_accepts(body: dict[str, Any], expected: list[str]) -> None:
    assert embed_texts(body, LIMITS) == expected


@pytest.mark.parametrize(("body", "error", "code"), [
    ({}, InvalidRequest, "missing_texts"),
    ({"input": ["a"]}, InvalidRequest, "missing_texts"),
    ({"texts": "a"}, InvalidRequest, "invalid_request"),
    ({"texts": None}, InvalidRequest, "invalid_request"),
    ({"texts": {"a": 1}}, InvalidRequest, "invalid_request"),
    ({"texts": []}, InvalidRequest, "empty_input"),
    ({"texts": ["a", 1]}, InvalidRequest, "invalid_input"),
    ({"texts": ["a", None]}, InvalidRequest, "invalid_input"),
    ({"texts": [True]}, InvalidRequest, "invalid_input"),
    ({"texts": [["a"]]}, InvalidRequest, "invalid_input"),
    ({"texts": [[1, 2], [3]]}, InvalidRequest, "token_ids_unsupported"),
    ({"texts": [1, 2, 3]}, InvalidRequest, "token_ids_unsupported"),
    ({"texts": ["a"] * 5}, PayloadTooLarge, "too_many_texts"),
    ({"texts": [1] * 5}, PayloadTooLarge, "too_many_texts"),
    ({"texts": ["a", "x" * 21]}, PayloadTooLarge, "text_too_long"),
])  # fmt: skip
def test_embed_refuses(body: dict[str, Any], error: type[Exception], code: str) -> None:
    with pytest.raises(error) as caught:
        embed_texts(body, LIMITS)
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.code == code
    assert type(caught.value) is error


@pytest.mark.parametrize(("body", "texts", "fmt", "dimensions"), [
    ({"input": "a"}, ["a"], "float", None),
    ({"input": ""}, [""], "float", None),
    ({"input": ["a", "b"]}, ["a", "b"], "float", None),
    ({"input": "a", "model": "text-embedding-3-small"}, ["a"], "float", None),
    ({"input": "a", "model": None, "user": "me"}, ["a"], "float", None),
    ({"input": "a", "encoding_format": "base64"}, ["a"], "base64", None),
    ({"input": "a", "encoding_format": None}, ["a"], "float", None),
    ({"input": "a", "dimensions": 384}, ["a"], "float", 384),
])  # fmt: skip
def test_openai_accepts(
    body: dict[str, Any], texts: list[str], fmt: str, dimensions: int | None
) -> None:
    parsed = openai_request(body, LIMITS)
    assert (parsed.texts, parsed.encoding_format, parsed.dimensions) == (texts, fmt, dimensions)


@pytest.mark.parametrize(("body", "error", "param"), [
    ({}, InvalidRequest, "input"),
    ({"texts": ["a"]}, InvalidRequest, "input"),
    ({"input": None}, InvalidRequest, "input"),
    ({"input": 5}, InvalidRequest, "input"),
    ({"input": []}, InvalidRequest, "input"),
    ({"input": [1, 2, 3]}, InvalidRequest, "input"),
    ({"input": [[1, 2], [3, 4]]}, InvalidRequest, "input"),
    ({"input": ["a", ["b"]]}, InvalidRequest, "input"),
    ({"input": "x" * 21}, PayloadTooLarge, "input"),
    ({"input": ["a"] * 5}, PayloadTooLarge, "input"),
    ({"input": "a", "model": 3}, InvalidRequest, "model"),
    ({"input": "a", "encoding_format": "int8"}, InvalidRequest, "encoding_format"),
    ({"input": "a", "dimensions": 0}, InvalidRequest, "dimensions"),
    ({"input": "a", "dimensions": True}, InvalidRequest, "dimensions"),
    ({"input": "a", "dimensions": "384"}, InvalidRequest, "dimensions"),
    ({"input": "a", "user": 1}, InvalidRequest, "user"),
])  # fmt: skip
def test_openai_refuses(body: dict[str, Any], error: type[Exception], param: str) -> None:
    with pytest.raises(error) as caught:
        openai_request(body, LIMITS)
    assert type(caught.value) is error
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.param == param


def test_token_ids_are_named_as_such() -> None:
    with pytest.raises(InvalidRequest, match="token ids"):
        openai_request({"input": [101, 2023, 102]}, LIMITS)


def test_the_body_limit_fits_the_largest_valid_request_escaped() -> None:
    # Python's json.dumps writes every non-ASCII character as \uXXXX: six bytes each.
    largest = 4 * (len('"') * 2 + 20 * 6 + 1) + len('{"texts": []}')
    assert LIMITS.max_body_bytes >= largest


# --- over HTTP, against the real service -----------------------------------------------

BAD_EMBED: list[tuple[Any, int, str]] = [
    ({}, 400, "missing_texts"),
    ({"texts": []}, 400, "empty_input"),
    ({"texts": "one text"}, 400, "invalid_request"),
    ({"texts": ["a", 3]}, 400, "invalid_input"),
    ({"texts": [["nested"]]}, 400, "invalid_input"),
    ({"texts": [[101, 102]]}, 400, "token_ids_unsupported"),
    ({"texts": ["a"] * 513}, 413, "too_many_texts"),
    ({"texts": ["x" * 16385]}, 413, "text_too_long"),
    ([1, 2], 400, "invalid_json"),
    ("just a string", 400, "invalid_json"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_EMBED)
def test_embed_over_http(service_url: str, body: Any, status: int, code: str) -> None:
    response = httpx.post(f"{service_url}/embed", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert {"message", "type", "code"} <= set(response.json()["error"])


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "invalid_json"),
    (b"{not json", "invalid_json"),
    (b'{"texts": ["\\ud800"]}', "invalid_json"),  # a lone surrogate is not text
    (b"\xff\xfe", "invalid_json"),
])  # fmt: skip
def test_garbage_bodies(service_url: str, raw: bytes, code: str) -> None:
    for path in ("/embed", "/v1/embeddings"):
        response = httpx.post(f"{service_url}{path}", content=raw, timeout=30)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"input": []}, 400, "input"),
    ({"input": [1, 2]}, 400, "input"),
    ({"input": "a", "dimensions": 1536}, 400, "dimensions"),
    ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
    ({"input": ["a"] * 513}, 413, "input"),
    ({"input": "y" * 16385}, 413, "input"),
])  # fmt: skip
def test_openai_over_http(service_url: str, body: Any, status: int, param: str) -> None:
    response = httpx.post(f"{service_url}/v1/embeddings", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_a_body_larger_than_any_valid_request_is_413(service_url: str) -> None:
    response = httpx.post(
        f"{service_url}/embed",
        content=b'{"texts": ["' + b"a" * (60 * 2**20) + b'"]}',
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_wrong_method_and_path(service_url: str) -> None:
    assert httpx.get(f"{service_url}/embed", timeout=10).status_code == 405
    assert httpx.post(f"{service_url}/nowhere", json={}, timeout=10).status_code == 404


def test_refusals_are_counted(service_url: str) -> None:
    httpx.post(f"{service_url}/embed", json={"texts": []}, timeout=10)
    metrics = httpx.get(f"{service_url}/metrics", timeout=10).text
    line = 'localsuite_embedding_requests_total{endpoint="embed",outcome="client_error"}'
    assert line in metrics
