"""A remote OpenAI-compatible `/v1/embeddings` (OpenAI itself, vLLM, llama.cpp, another suite).

EMBEDDING_REMOTE_URL is the API's base URL (`.../v1`); EMBEDDING_MODEL is the model name
sent to it; EMBEDDING_REMOTE_API_KEY, if set, goes as a bearer token. Each batch is one
call bounded by EMBEDDING_TIMEOUT. "Loading" means reaching the remote once to learn the
vector size; the service keeps retrying that in the background while the remote is down.

What the remote does becomes what our client sees:

    no answer (refused, reset)            503 + Retry-After
    no answer in EMBEDDING_TIMEOUT        504
    502 / 503 / 504                       503 + Retry-After (the remote's, if it gave one)
    429                                   429 + Retry-After
    401 / 403 / 404                       502: our key, URL or model name is wrong (not the input)
    413, other 4xx                        the same status with the remote's reason
    other 5xx, or a 2xx that is garbage   502
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import numpy as np

from localsuite.core.errors import (
    ConfigError,
    DeadlineExceeded,
    LocalSuiteError,
    PayloadTooLarge,
    RateLimited,
    Refused,
    ServiceUnavailable,
    UpstreamError,
)
from localsuite.core.http import (
    AnswerTimeout,
    BadAnswer,
    ErrorAnswer,
    NoAnswer,
    call_json,
    create_session,
)
from localsuite.core.settings import Settings
from localsuite.embedding.backends.base import Embedded, Vectors, as_matrix

CONFIG_STATUSES = frozenset({401, 403, 404})


class OpenAIBackend:
    kind = "openai"
    concurrency = 4

    def __init__(self, settings: Settings) -> None:
        if not settings.embedding_remote_url:
            raise ConfigError(
                "EMBEDDING_BACKEND=openai needs EMBEDDING_REMOTE_URL: the base URL of an "
                "OpenAI-compatible API, e.g. https://api.openai.com/v1"
            )
        self.base_url = settings.embedding_remote_url.rstrip("/")
        self.model = settings.embedding_model
        self._url = f"{self.base_url}/embeddings"
        key = settings.embedding_remote_api_key
        self._headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        self._timeout = settings.embedding_timeout
        self._connect_timeout = settings.llm_connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._dim: int | None = None

    @property
    def dim(self) -> int | None:
        return self._dim

    def describe(self) -> dict[str, Any]:
        return {"remote": self.base_url}

    async def load(self) -> None:
        if self._session is None:
            self._session = create_session(connect_timeout=self._connect_timeout)
        if self._dim is None:
            self._dim = int((await self.embed(["dimension"])).vectors.shape[1])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def embed(self, texts: list[str]) -> Embedded:
        if self._session is None:
            raise ServiceUnavailable("the embedding backend is starting")
        try:
            answer = await call_json(
                self._session, "POST", self._url,
                budget=self._timeout,
                payload={"model": self.model, "input": texts},
                headers=self._headers,
                what=f"remote embedding API {self.base_url}",
            )  # fmt: skip
        except AnswerTimeout as exc:
            raise DeadlineExceeded(f"{exc} (EMBEDDING_TIMEOUT={self._timeout:g}s)") from exc
        except NoAnswer as exc:
            raise ServiceUnavailable(str(exc), code="remote_unavailable") from exc
        except ErrorAnswer as exc:
            raise self._translate(exc) from exc
        except BadAnswer as exc:
            raise UpstreamError(str(exc)) from exc
        return self._parse(answer, texts)

    def _translate(self, answer: ErrorAnswer) -> LocalSuiteError:
        reason = f"remote embedding API answered HTTP {answer.status}: {answer.message()}"
        if answer.status in (502, 503, 504):
            return ServiceUnavailable(
                reason, retry_after=answer.retry_after or 1.0, code="remote_unavailable"
            )
        if answer.status == 429:
            return RateLimited(reason, retry_after=answer.retry_after or 1.0)
        if answer.status >= 500 or answer.status in CONFIG_STATUSES:
            return UpstreamError(reason, code=f"remote_{answer.status}")
        if answer.status == 413:
            return PayloadTooLarge(reason, code="remote_413")
        return Refused(answer.status, reason, code=f"remote_{answer.status}")

    def _parse(self, answer: Any, texts: list[str]) -> Embedded:
        expected = len(texts)
        try:
            data = sorted(answer["data"], key=lambda item: int(item.get("index", 0)))
            vectors = as_matrix([_vector(item["embedding"]) for item in data], expected)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UpstreamError(
                f"remote embedding API {self.base_url} answered something that is not "
                f"{expected} embeddings: {exc}"
            ) from exc
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise UpstreamError(
                f"remote embedding API {self.base_url} changed vector size: "
                f"{vectors.shape[1]} instead of {self._dim}"
            )
        usage = answer.get("usage") if isinstance(answer, dict) else None
        total = usage.get("prompt_tokens", 0) if isinstance(usage, dict) else 0
        return Embedded(vectors, spread(total if isinstance(total, int) else 0, texts))


def _vector(value: Any) -> Vectors | list[float]:
    # Some servers answer base64 (little-endian float32) even when floats were not refused.
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    if not isinstance(value, list):
        raise TypeError("an embedding is neither a list of numbers nor base64")
    return value


def spread(total: int, texts: list[str]) -> list[int]:
    """The remote's token total shared over the texts by length (exact for one text): a
    batch may hold several clients' texts, and each is told its own usage."""
    chars = [len(t) for t in texts]
    whole = sum(chars) or 1
    shares = [total * c // whole for c in chars]
    shares[-1] += total - sum(shares)
    return shares
