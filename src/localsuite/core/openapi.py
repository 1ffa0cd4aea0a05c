"""OpenAPI pieces every service's routes share: the error body and documented bodies.

Routes that parse their own bodies (to answer 413/400 with messages that say what to
change) still describe them here, so the OpenAPI document is right and schemathesis
has a target.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


class AnthropicErrorBody(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    type: str
    error: AnthropicErrorBody


def error_responses(
    described: dict[int, str], model: type[BaseModel] = ErrorResponse
) -> dict[int | str, dict[str, Any]]:
    """`responses` for a route: each error status, with what it means there."""
    return {status: {"model": model, "description": what} for status, what in described.items()}
