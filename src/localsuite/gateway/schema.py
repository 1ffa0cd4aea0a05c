"""OpenAPI descriptions of the gateway's request bodies.

They document the API (and give schemathesis something to aim at); the routes do not
validate against them, because the body is passed to the backend as sent: only `model`
and `stream` are the gateway's business, the rest is the backend's to accept or refuse.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from localsuite.core.openapi import AnthropicErrorResponse, error_responses


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


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[dict[str, object]]
    stream: bool = False
    instructions: str | None = None
    previous_response_id: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)


class AnthropicMessage(_Open):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, object]]


class MessagesRequest(_Open):
    model: str = Field(min_length=1, description="A model alias, or a name mapped to one")
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    stream: bool = False
    system: str | list[dict[str, object]] | None = None


class CountTokensRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[dict[str, object]] | None = None


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

ANTHROPIC_ERRORS = error_responses(
    {
        400: "invalid_request_error: bad input, or a 4xx the backend gave (its reason kept)",
        401: "authentication_error: missing or wrong API key (x-api-key or Bearer)",
        404: "not_found_error: unknown model",
        413: "request_too_large: body larger than GATEWAY_MAX_BODY_BYTES",
        429: "rate_limit_error: every backend is busy, or the queue is full (Retry-After)",
        504: "timeout_error: the request deadline passed",
        529: "overloaded_error: no backend can take it now (Retry-After)",
    },
    AnthropicErrorResponse,
)
