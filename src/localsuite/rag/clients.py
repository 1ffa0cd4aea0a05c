"""HTTP clients of the services rag calls: the embedding service and the gateway.

They speak only HTTP (`core.http.call_json` and the aiohttp session); what crosses a
service boundary is JSON. Errors come out as `core.http`'s kinds (`NoAnswer`,
`ErrorAnswer`, `BadAnswer`) for `dependencies.Guard` to classify.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from localsuite.core.http import (
    BadAnswer,
    ErrorAnswer,
    bearer,
    call_json,
    parse_retry_after,
    translate_errors,
)
from localsuite.core.tracing import OFF, Tracing


@dataclass(frozen=True, slots=True)
class Embedded:
    vectors: list[list[float]]
    model: str
    dim: int


def auth(api_key: str | None) -> dict[str, str]:
    """The suite's key (`LOCALSUITE_API_KEY`): every service of the suite demands it."""
    return bearer(api_key)


class EmbeddingClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        timeout: float,
        api_key: str | None = None,
        tracing: Tracing = OFF,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.timeout = timeout
        self.headers = auth(api_key)
        self.tracing = tracing

    async def embed(self, texts: list[str], budget: float) -> Embedded:
        with self.tracing.active("rag.embedding", attributes={"localsuite.texts": len(texts)}):
            body = await call_json(
                self.session, "POST", f"{self.base_url}/embed", payload={"texts": texts},
                budget=min(budget, self.timeout), what="embedding",
                headers={**self.headers, **self.tracing.headers()},
            )  # fmt: skip
        try:
            vectors = body["embeddings"]
            dim = int(body["dim"])
            model = str(body.get("model", ""))
        except (TypeError, KeyError, ValueError) as exc:
            raise BadAnswer("embedding: answer without `embeddings` and `dim`") from exc
        if len(vectors) != len(texts) or any(len(v) != dim for v in vectors):
            raise BadAnswer(
                f"embedding: asked for {len(texts)} vectors of one size, got {len(vectors)}"
            )
        return Embedded(vectors, model, dim)

    async def health(self, budget: float) -> str:
        body = await call_json(
            self.session, "GET", f"{self.base_url}/health", budget=budget,
            headers=self.headers, what="embedding",
        )  # fmt: skip
        return f"{body.get('model', '?')} ({body.get('dim', '?')} dims)"


class GatewayClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None = None,
        tracing: Tracing = OFF,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.headers = auth(api_key)
        self.tracing = tracing

    async def chat(self, body: dict[str, Any], budget: float) -> dict[str, Any]:
        with self.tracing.active(
            "rag.generation", attributes={"localsuite.alias": str(body["model"])}
        ):
            answer = await call_json(
                self.session, "POST", f"{self.base_url}/v1/chat/completions", payload=body,
                budget=budget, headers={**self.headers, **self.tracing.headers()},
                what="api-gateway",
            )  # fmt: skip
        if not isinstance(answer, dict) or not answer.get("choices"):
            raise BadAnswer("api-gateway: a chat completion without `choices`")
        return answer

    async def chat_stream(
        self, body: dict[str, Any], first_byte: float, trace: Mapping[str, str]
    ) -> AsyncIterator[dict[str, Any]]:
        """The SSE chunks of a streamed chat completion, as dicts; the gateway owns
        failover and idle timeouts, this bounds only the wait for the answer to start.
        `trace`: the generation span's `traceparent` (a stream outlives the request's
        task, so the current span cannot say it)."""
        url = f"{self.base_url}/v1/chat/completions"
        headers = {"Content-Type": "application/json", **self.headers, **trace}
        with translate_errors("api-gateway"):
            response = await self.session.post(
                url,
                data=orjson.dumps({**body, "stream": True}),
                headers=headers,
                timeout=aiohttp.ClientTimeout(sock_read=first_byte),
            )
        async with response:
            if response.status >= 400:
                raw = await response.read()
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise ErrorAnswer(response.status, raw, retry_after)
            with translate_errors("api-gateway"):
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise BadAnswer("api-gateway: a stream event that is not JSON") from exc
                    if isinstance(chunk, dict):
                        yield chunk

    async def health(self, budget: float) -> str:
        body = await call_json(
            self.session, "GET", f"{self.base_url}/health", budget=budget,
            headers=self.headers, what="api-gateway",
        )  # fmt: skip
        checks = body.get("checks", {}) if isinstance(body, dict) else {}
        return ", ".join(f"{k}: {v.get('detail', '')}" for k, v in checks.items()) or "ok"
