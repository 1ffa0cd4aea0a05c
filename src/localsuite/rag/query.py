"""Answering a question: retrieve, then generate (the gateway, with the retrieved chunks
as numbered context).

Retrieval is hybrid by default (`RAG_RETRIEVAL`): the question is embedded (the
embedding service) while the lexical index (`lexical`, BM25) is searched, then Qdrant
gives the `RAG_CANDIDATES` nearest chunks, and the two rankings are fused by reciprocal
rank: a chunk's score is the sum over the rankings it is in of 1 / (RAG_RRF_K + rank).
Meaning finds paraphrases; words find names, options and rare terms that a small
embedding model blurs. `dense` and `lexical` use one ranking alone. With
`RAG_RERANKER_MODEL`, a cross-encoder reorders the `RAG_CANDIDATES` best fused chunks
(`rerank`) before the top `topk` are kept.

Two deadlines: retrieval has `RAG_RETRIEVAL_TIMEOUT` for the embedding call and the search,
retries included; generation has `RAG_LLM_TIMEOUT`. A dependency that stays down past
its deadline makes the query answer 503 + Retry-After, naming it.

The prompt holds as many of the retrieved chunks, best first, as fit in
`RAG_CONTEXT_TOKENS` (estimated like the chunker counts), so that it fits the model's
context; every retrieved chunk is returned, with `used` telling which were in the prompt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from localsuite.core.intent import looks_like_code
from localsuite.core.metrics import RagMetrics
from localsuite.core.settings import Settings
from localsuite.core.timeouts import Deadline
from localsuite.core.tracing import NULL_SPAN, OFF, Span, Tracing
from localsuite.rag.chunking import count_tokens
from localsuite.rag.clients import EmbeddingClient, GatewayClient
from localsuite.rag.dependencies import Guard
from localsuite.rag.lexical import LexicalIndex
from localsuite.rag.rerank import Reranker
from localsuite.rag.store import Hit, VectorStore

SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages given with the "
    "question. Cite the passages you use as [1], [2]. If the context does not contain "
    "the answer, say that you do not know. Answer in the language of the question."
)
NOTHING_FOUND = "No indexed document matches this question in collection {collection!r}."


RETRIEVAL_MODES = ("hybrid", "dense", "lexical")


@dataclass
class Retrieved:
    collection: str
    hits: list[Hit]  # best first; `score` as the mode ranks them
    used: int  # how many of the best hits fit in the prompt
    embedding_ms: float
    search_ms: float
    lexical_ms: float = 0.0
    retrieval_ms: float = 0.0
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # id → dense, lexical

    def timings(self) -> dict[str, float]:
        return {
            "embedding_ms": round(self.embedding_ms, 2),
            "lexical_ms": round(self.lexical_ms, 2),
            "search_ms": round(self.search_ms, 2),
            "retrieval_ms": round(self.retrieval_ms, 2),
        }

    def context(self, documents_dir: Path) -> list[dict[str, Any]]:
        items = []
        for rank, hit in enumerate(self.hits):
            source = display_source(str(hit.payload.get("source", "")), documents_dir)
            items.append({
                "source": source,
                "chunk": hit.payload.get("chunk"),
                "score": round(hit.score, 4),
                "text": hit.payload.get("text", ""),
                "heading": hit.payload.get("heading") or None,
                "used": rank < self.used,
                # the original suite's names for the document and the chunk
                "doc_id": source,
                "chunk_id": hit.id,
                "scores": {k: round(v, 4) for k, v in self.scores.get(hit.id, {}).items()},
            })  # fmt: skip
        return items


@dataclass
class Question:
    query: str
    collection: str
    topk: int
    model: str | None = None  # a gateway alias; None: chosen by RAG_MODEL_ROUTING
    max_tokens: int | None = None
    temperature: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    retrieval: str = "hybrid"  # one of RETRIEVAL_MODES
    per_source: int = 0  # at most this many chunks of one document; 0: any


def fuse(
    dense: list[Hit],
    extra: list[Hit],
    lexical: list[tuple[str, float]],
    topk: int,
    k: int,
    per_source: int = 0,
) -> tuple[list[Hit], dict[str, dict[str, float]]]:
    """The best `topk` hits, and each one's dense and lexical scores.

    `dense` is the dense ranking, `lexical` BM25's (point id, score), and `extra` the
    lexical points that are not in `dense`. With both rankings, reciprocal rank fusion
    decides (a hit's `score` is its fused score); with one, that ranking and its score.
    `per_source` > 0 keeps at most that many chunks of one document, so that the top
    few are not all one page's neighbours (the rest are filled from the next best)."""
    by_id = {hit.id: hit for hit in (*dense, *extra)}
    words = [(point, score) for point, score in lexical if point in by_id]  # still stored
    scores: dict[str, dict[str, float]] = {hit.id: {"dense": hit.score} for hit in dense}
    for point, score in words:
        scores.setdefault(point, {})["lexical"] = score
    ranked: list[tuple[str, float]]
    if not words:
        ranked = [(hit.id, hit.score) for hit in dense]
    elif not dense:
        ranked = words
    else:
        fused: dict[str, float] = {}
        for ranking in ([hit.id for hit in dense], [point for point, _ in words]):
            for rank, point in enumerate(ranking, start=1):
                fused[point] = fused.get(point, 0.0) + 1.0 / (k + rank)
        ranked = sorted(fused.items(), key=lambda item: -item[1])
    chosen = _diverse(ranked, by_id, topk, per_source)
    hits = [replace(by_id[point], score=score) for point, score in chosen]
    return hits, {hit.id: scores.get(hit.id, {}) for hit in hits}


def _diverse(
    ranked: list[tuple[str, float]], by_id: dict[str, Hit], topk: int, per_source: int
) -> list[tuple[str, float]]:
    if per_source <= 0:
        return ranked[:topk]
    kept: list[tuple[str, float]] = []
    counts: dict[object, int] = {}
    for point, score in ranked:
        source = by_id[point].payload.get("source")
        if counts.get(source, 0) < per_source:
            counts[source] = counts.get(source, 0) + 1
            kept.append((point, score))
            if len(kept) == topk:
                return kept
    seen = {point for point, _ in kept}  # too few documents: their other chunks, in order
    kept += [(p, s) for p, s in ranked if p not in seen][: topk - len(kept)]
    return sorted(kept, key=lambda item: -item[1])


def _searchable(payload: dict[str, Any]) -> str:
    heading, text = payload.get("heading") or "", payload.get("text") or ""
    return f"{heading}\n{text}" if heading else str(text)


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
        lexical: LexicalIndex | None = None,
        reranker: Reranker | None = None,
        tracing: Tracing = OFF,
    ) -> None:
        self.settings = settings
        self.tracing = tracing
        self.lexical = lexical
        self.reranker = reranker
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
        mode = question.retrieval
        candidates = max(question.topk, self.settings.rag_candidates)
        lexical_ms = 0.0

        async def words() -> list[tuple[str, float]]:
            nonlocal lexical_ms
            if mode == "dense" or self.lexical is None:
                return []
            began = time.perf_counter()
            with self.tracing.active("rag.lexical"):
                found = await asyncio.to_thread(
                    self.lexical.search, question.collection, question.query, candidates
                )
            lexical_ms = (time.perf_counter() - began) * 1000
            return found

        async def meaning() -> list[float] | None:
            if mode == "lexical":
                return None
            embedded = await self.guard.call(
                "embedding",
                lambda: self.embedding.embed([question.query], deadline.remaining()),
                deadline,
            )
            return embedded.vectors[0]

        vector, lexical = await asyncio.gather(meaning(), words())
        searching = time.perf_counter()
        budget = deadline.budget(self.settings.qdrant_timeout)
        also = [point for point, _ in lexical]
        with self.tracing.active("rag.qdrant.search"):
            dense, extra = await self._search(question, vector, also, candidates, budget,
                                              deadline)  # fmt: skip
        keep = candidates if self.reranker else question.topk
        hits, scores = fuse(dense, extra, lexical, keep, self.settings.rag_rrf_k,
                            question.per_source)  # fmt: skip
        if self.reranker is not None and hits:
            hits = await asyncio.to_thread(self._rerank, question, hits)
        done = time.perf_counter()
        self.metrics.phase("retrieval", done - started)
        return Retrieved(
            question.collection, hits, self._fitting(hits),
            (searching - started) * 1000 if vector is not None else 0.0,
            (done - searching) * 1000, lexical_ms, (done - started) * 1000, scores,
        )  # fmt: skip

    async def _search(
        self,
        question: Question,
        vector: list[float] | None,
        also: list[str],
        candidates: int,
        budget: float,
        deadline: Deadline,
    ) -> tuple[list[Hit], list[Hit]]:
        """Qdrant's nearest points (none without a vector), and the points the lexical
        ranking found (`also`), read in the same call."""
        if vector is None:
            extra = await self.guard.call(
                "qdrant", lambda: self.store.search_ids(question.collection, also, budget), deadline
            )
            return [], extra
        limit = candidates if question.retrieval == "hybrid" or self.reranker else question.topk
        return await self.guard.call(
            "qdrant",
            lambda: self.store.search_and_read(question.collection, vector, limit, also, budget),
            deadline,
        )

    def _rerank(self, question: Question, hits: list[Hit]) -> list[Hit]:
        """The cross-encoder's order of the fused candidates, its scores as theirs."""
        assert self.reranker is not None
        passages = [_searchable(hit.payload) for hit in hits]
        judged = self.reranker.scores(question.query, passages)
        ranked = sorted(zip(judged, range(len(hits)), hits, strict=True), key=lambda t: -t[0])
        return [replace(hit, score=score) for score, _, hit in ranked[: question.topk]]

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
        self, question: Question, retrieved: Retrieved, span: Span = NULL_SPAN
    ) -> AsyncIterator[dict[str, Any]]:
        """The answer as events: `delta` pieces of text, then `done` with model and usage;
        its generation is traced under `span` (the query's)."""
        if not retrieved.hits:
            text = NOTHING_FOUND.format(collection=retrieved.collection)
            yield {"type": "delta", "text": text}
            yield {"type": "done", "model": None, "usage": None}
            return
        body = {**self.request_body(question, retrieved), "stream_options": {"include_usage": True}}
        model = usage = None
        generation = span.child(
            "rag.generation", attributes={"localsuite.alias": str(body["model"])}
        )
        chunks = self.gateway.chat_stream(body, self.settings.rag_llm_timeout,
                                          generation.headers())  # fmt: skip
        outcome, error = "cancelled", None
        try:
            async for chunk in chunks:
                model = chunk.get("model") or model
                usage = chunk.get("usage") or usage
                if "error" in chunk:
                    outcome, error = "failed", str(chunk["error"])
                    yield {"type": "error", "error": chunk["error"]}
                    return
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield {"type": "delta", "text": piece}
            outcome = "ok"
            yield {"type": "done", "model": model, "usage": usage}
        except Exception as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            generation.end(outcome, error=error)
