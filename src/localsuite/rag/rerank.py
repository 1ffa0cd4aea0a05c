"""An optional reranking stage: a cross-encoder reads the question with each fused
candidate and reorders them (`RAG_RERANKER_MODEL`, a local sentence-transformers
cross-encoder folder; off by default, and nothing is ever downloaded).

A cross-encoder judges a question and a passage together, which a bi-encoder's two
vectors cannot, at the price of one model run per candidate (`RAG_CANDIDATES` of them)
per query. It runs in rag's process on a worker thread, loaded at start-up; rag needs
the `embedding` extra (sentence-transformers) for it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from localsuite.core.errors import ConfigError

log = logging.getLogger("localsuite.rag")


class Reranker(Protocol):
    name: str

    def scores(self, query: str, passages: list[str]) -> list[float]:
        """One relevance score a passage, higher is better."""
        ...


class CrossEncoderReranker:
    def __init__(self, path: Path) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise ConfigError(
                "RAG_RERANKER_MODEL needs sentence-transformers (the `embedding` extra)"
            ) from exc
        if not path.is_dir():
            raise ConfigError(f"RAG_RERANKER_MODEL={path}: no such model folder")
        self._model: Any = CrossEncoder(str(path), device="cpu", local_files_only=True)
        self.name = path.name

    def scores(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        found = self._model.predict([(query, p) for p in passages], show_progress_bar=False)
        return [float(s) for s in found]


def load_reranker(path: Path | None) -> Reranker | None:
    if path is None:
        return None
    reranker = CrossEncoderReranker(path)
    log.info("reranking with the cross-encoder %s", reranker.name)
    return reranker
