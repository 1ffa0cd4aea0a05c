"""OpenAPI descriptions of the gateway's request bodies.

They document the API (and give schemathesis something to aim at); the routes do not
validate against them, because the body is passed to the backend as sent: only `model`
and `stream` are the gateway's business, the rest is the backend's to accept or refuse.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from localsuite.core.openapi import error_responses


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Open):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None


class ChatCompletionRequest(_Open):
    model: str = Field(min_length=1, description="A model alias, e.g. chat-7b or code-7b")
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)


class CompletionRequest(_Open):
    model: str = Field(min_length=1)
    prompt: str
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)


class EmbeddingRequest(_Open):
    model: str | None = None
    input: str | list[str]


ERROR_RESPONSES = error_responses(
    {
        400: "Bad input, or a 4xx the backend gave (its reason kept)",
        401: "Missing or wrong API key",
        404: "Unknown model alias",
        413: "Body larger than GATEWAY_MAX_BODY_BYTES",
        422: "Invalid value",
        429: "Every backend is busy (Retry-After)",
        502: "Backends answered garbage",
        503: "No backend could answer (Retry-After)",
        504: "The request deadline passed",
    }
)
