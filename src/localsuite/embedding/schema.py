"""OpenAPI descriptions of the embedding service's bodies.

They document the API and give schemathesis its target; the routes parse bodies
themselves (`embedding.validation`), to answer 413 for size and 400 for shape with
messages that say what to change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from localsuite.core.openapi import error_responses


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    texts: list[str] = Field(
        min_length=1, description="Texts to embed, at most EMBEDDING_MAX_TEXTS"
    )


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    model: str
    dim: int


class EmbeddingsRequest(BaseModel):
    """OpenAI's `POST /v1/embeddings`; `model` is accepted and the served model reported."""

    model_config = ConfigDict(extra="allow")
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, description="Must equal the model's")
    user: str | None = None


ERROR_RESPONSES = error_responses(
    {
        400: "Bad input: missing field, empty list, non-strings, token ids",
        401: "Missing or wrong API key",
        413: "Too many texts, a text too long, or a body too large",
        422: "Invalid value",
        429: "The remote API is rate-limiting (Retry-After)",
        502: "The remote API answered garbage, or refused our key",
        503: "The model is loading, or the remote API is down (Retry-After)",
        504: "The remote API did not answer within EMBEDDING_TIMEOUT",
    }
)
