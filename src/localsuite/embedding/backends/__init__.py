"""Embedding backends, side by side; `create_backend` picks one from EMBEDDING_BACKEND."""

from __future__ import annotations

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.embedding.backends.base import EmbeddingBackend


def create_backend(settings: Settings) -> EmbeddingBackend:
    """The configured backend, checked but not loaded (ConfigError when it cannot work)."""
    kind = settings.embedding_backend
    if kind == "sentence-transformers":
        from localsuite.embedding.backends.sentence_transformers import (
            SentenceTransformersBackend,
        )

        return SentenceTransformersBackend(settings)
    if kind == "fastembed":
        from localsuite.embedding.backends.fastembed import FastEmbedBackend

        return FastEmbedBackend(settings)
    if kind == "openai":
        from localsuite.embedding.backends.openai import OpenAIBackend

        return OpenAIBackend(settings)
    raise ConfigError(
        f"unknown EMBEDDING_BACKEND={kind!r}: sentence-transformers, fastembed, openai"
    )
