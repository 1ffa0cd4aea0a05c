"""Answering a question: retrieve (embed the question, search Qdrant), then generate
(the gateway, with the retrieved chunks as numbered context).

Two deadlines: retrieval has `RAG_RETRIEVAL_TIMEOUT` for the embedding call and the search,
retries included; generation has `RAG_LLM_TIMEOUT`. A dependency that stays down past
its deadline makes the query answer 503 + Retry-After, naming it.

The prompt holds as many of the retrieved chunks, best first, as fit in
`RAG_CONTEXT_TOKENS` (estimated like the chunker counts), so that it fits the model's
context; every retrieved chunk is returned, with `used` telling which were in the prompt.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localsuite.core.intent import looks_like_code
from localsuite.core.metrics import RagMetrics
from localsuite.core.settings import Settings
from localsuite.core.timeouts import Deadline
from localsuite.rag.chunking import count_tokens
from localsuite.rag.clients import EmbeddingClient, GatewayClient
from localsuite.rag.dependencies import Guard
from localsuite.rag.store import Hit, VectorStore

SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages given with the "
    "question. Cite the passages you use as [1], [2]. If the context does not contain "
    "the answer, say that you do not know. Answer in the language of the question."
)
NOTHING_FOUND = "No indexed document matches this question in collection {collection!r}."


@dataclass
class Retrieved:
    collection: str
    hits: list[Hit]
    used: int  # how many of the best hits fit in the prompt
    embedding_ms: float
    search_ms: float

    @property
    def retrieval_ms(self) -> float:
        return self.embedding_ms + self.search_ms

    def timings(self) -> dict[str, float]:
        return {
            "embedding_ms": round(self.embedding_ms, 2),
            "search_ms": round(self.search_ms, 2),
            "retrieval_ms": round(self.retrieval_ms, 2),
        }

    def context(self, documents_dir: Path) -> list[dict[str, Any]]:
        return [
            {
                "source": display_source(str(hit.payload.get("source", "")), documents_dir),
                "chunk": hit.payload.get("chunk"),
                "score": round(hit.score, 4),
                "text": hit.payload.get("text", ""),
                "used": rank < self.used,
            }
            for rank, hit in enumerate(self.hits)
        ]


@dataclass
class Question:
    query: str
    collection: str
    topk: int
    model: str | None = None  # a gateway alias; None: chosen by RAG_MODEL_ROUTING
    max_tokens: int | None = None
    temperature: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def display_source(source: str, documents_dir: Path) -> str:
    """A source as people read it: relative to the documents folder when inside it."""
    try:
        return str(Path(source).relative_to(documents_dir.resolve()))
    except ValueError:
        return source


class Answerer:
    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        embedding: EmbeddingClient,
        gateway: GatewayClient,
        guard: Guard,
        metrics: RagMetrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedding = embedding
        self.gateway = gateway
        self.guard = guard
        self.metrics = metrics

    def alias_for(self, question: Question) -> str:
        if question.model:
            return question.model
        routing = self.settings.rag_model_routing
        code = routing == "code" or (routing == "auto" and looks_like_code(question.query))
        return (
            self.settings.api_gateway_code_model if code else self.settings.api_gateway_chat_model
        )

    async def retrieve(self, question: Question) -> Retrieved:
        started = time.perf_counter()
        deadline = Deadline(self.settings.rag_retrieval_timeout)
        embedded = await self.guard.call(
            "embedding",
            lambda: self.embedding.embed([question.query], deadline.remaining()),
            deadline,
        )
        searching = time.perf_counter()
        hits = await self.guard.call(
            "qdrant",
            lambda: self.store.search(
                question.collection,
                embedded.vectors[0],
                question.topk,
                deadline.budget(self.settings.qdrant_timeout),
            ),
            deadline,
        )
        done = time.perf_counter()
        self.metrics.phase("retrieval", done - started)
        return Retrieved(
            question.collection, hits, self._fitting(hits),
            (searching - started) * 1000, (done - searching) * 1000,
        )  # fmt: skip

    def _fitting(self, hits: list[Hit]) -> int:
        budget = self.settings.rag_context_tokens
        used = 0
        for hit in hits:
            tokens = int(
                hit.payload.get("tokens") or count_tokens(str(hit.payload.get("text", "")))
            )
            if used and tokens > budget:
                break
            budget -= tokens
            used += 1
        return used

    def messages(self, question: Question, retrieved: Retrieved) -> list[dict[str, str]]:
        passages = []
        for number, hit in enumerate(retrieved.hits[: retrieved.used], start=1):
            payload = hit.payload
            source = display_source(str(payload.get("source", "")), self.settings.documents_dir)
            heading = f"[{number}] ({source}, chunk {payload.get('chunk')})"
            passages.append(f"{heading}\n{payload.get('text', '')}")
        context = "\n\n".join(passages)
        return [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Context:\n\n{context}\n\nQuestion: {question.query}"},
        ]

    def request_body(self, question: Question, retrieved: Retrieved) -> dict[str, Any]:
        return {
            **question.extra,
            "model": self.alias_for(question),
            "messages": self.messages(question, retrieved),
            "max_tokens": question.max_tokens or self.settings.rag_llm_max_tokens,
            "temperature": (
                self.settings.rag_llm_temperature
                if question.temperature is None
                else question.temperature
            ),
        }

    async def generate(self, question: Question, retrieved: Retrieved) -> dict[str, Any]:
        """The answer, the model that gave it and its usage."""
        if not retrieved.hits:
            return {
                "answer": NOTHING_FOUND.format(collection=retrieved.collection),
                "model": None,
                "usage": None,
            }
        started = time.perf_counter()
        deadline = Deadline(self.settings.rag_llm_timeout)
        body = self.request_body(question, retrieved)
        answer = await self.guard.call(
            "api-gateway", lambda: self.gateway.chat(body, deadline.remaining()), deadline
        )
        self.metrics.phase("generation", time.perf_counter() - started)
        choice = answer["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        return {"answer": text, "model": answer.get("model"), "usage": answer.get("usage")}

    async def stream(
        self, question: Question, retrieved: Retrieved
    ) -> AsyncIterator[dict[str, Any]]:
        """The answer as events: `delta` pieces of text, then `done` with model and usage."""
        if not retrieved.hits:
            text = NOTHING_FOUND.format(collection=retrieved.collection)
            yield {"type": "delta", "text": text}
            yield {"type": "done", "model": None, "usage": None}
            return
        body = {**self.request_body(question, retrieved), "stream_options": {"include_usage": True}}
        model = usage = None
        chunks = self.gateway.chat_stream(body, self.settings.rag_llm_timeout)
        async for chunk in chunks:
            model = chunk.get("model") or model
            usage = chunk.get("usage") or usage
            if "error" in chunk:
                yield {"type": "error", "error": chunk["error"]}
                return
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield {"type": "delta", "text": piece}
        yield {"type": "done", "model": model, "usage": usage}
