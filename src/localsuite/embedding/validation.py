"""What the embedding service accepts, and the 4xx it gives for everything else.

    /embed            {"texts": ["...", ...]}
    /v1/embeddings    {"input": "..." | ["...", ...], "model"?, "encoding_format"?,
                       "dimensions"?, "user"?}

Refused with 400: a missing or mistyped field, an empty list, anything but strings in it
(nested lists, numbers, and OpenAI's token-id arrays, which mean nothing to another
tokenizer). Refused with 413: more than EMBEDDING_MAX_TEXTS texts, a text longer than
EMBEDDING_MAX_CHARS characters, or a body larger than any such request could be.
An empty string is accepted (its vector is the model's answer for no words).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from localsuite.core.errors import InvalidRequest, PayloadTooLarge
from localsuite.core.settings import Settings

EncodingFormat = Literal["float", "base64"]
_BODY_SLACK = 64 * 1024  # field names, the model name, options
# A character is at most 6 bytes in JSON ("\uXXXX"); Python's json.dumps escapes every
# non-ASCII character by default, so Korean text really arrives that way.
_BYTES_PER_CHAR = 6


@dataclass(frozen=True, slots=True)
class Limits:
    max_texts: int
    max_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.embedding_max_texts, settings.embedding_max_chars)

    @property
    def max_body_bytes(self) -> int:
        """The largest body a request within the other limits can need."""
        return self.max_texts * (self.max_chars * _BYTES_PER_CHAR + 8) + _BODY_SLACK


@dataclass(frozen=True, slots=True)
class OpenAIRequest:
    texts: list[str]
    encoding_format: EncodingFormat
    dimensions: int | None


def embed_texts(body: dict[str, Any], limits: Limits) -> list[str]:
    """The texts of a `POST /embed` body."""
    if "texts" not in body:
        raise InvalidRequest(
            '`texts` is required: {"texts": ["a text", ...]}', code="missing_texts", param="texts"
        )
    texts = body["texts"]
    if isinstance(texts, str):
        raise InvalidRequest(
            '`texts` must be a list of strings: send one text as ["..."]', param="texts"
        )
    return _strings(texts, "texts", limits)


def openai_request(body: dict[str, Any], limits: Limits) -> OpenAIRequest:
    """The texts and options of a `POST /v1/embeddings` body."""
    if "input" not in body:
        raise InvalidRequest(
            "`input` is required: a string or a list of strings",
            code="missing_input",
            param="input",
        )
    raw = body["input"]
    if isinstance(raw, str):
        texts = [raw]
        _check_lengths(texts, "input", limits)
    else:
        texts = _strings(raw, "input", limits)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("`model` must be a string", param="model")
    fmt: EncodingFormat
    match body.get("encoding_format"):
        case None | "float":
            fmt = "float"
        case "base64":
            fmt = "base64"
        case _:
            raise InvalidRequest(
                '`encoding_format` must be "float" or "base64"', param="encoding_format"
            )
    dimensions = body.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions < 1):
        raise InvalidRequest("`dimensions` must be a positive integer", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("`user` must be a string", param="user")
    return OpenAIRequest(texts, fmt, dimensions)


def _strings(value: Any, field: str, limits: Limits) -> list[str]:
    if not isinstance(value, list):
        raise InvalidRequest(
            f"`{field}` must be a list of strings, not {_kind(value)}", param=field
        )
    if not value:
        raise InvalidRequest(
            f"`{field}` is empty: send at least one text", code="empty_input", param=field
        )
    # Counted before looking at each item: the count alone decides a too-large request.
    if len(value) > limits.max_texts:
        raise PayloadTooLarge(
            f"{len(value)} texts in one request; the limit is EMBEDDING_MAX_TEXTS="
            f"{limits.max_texts}: send them in several requests",
            code="too_many_texts",
            param=field,
        )
    for index, item in enumerate(value):
        if isinstance(item, str):
            continue
        if _is_token_ids(value) or _is_token_ids(item):
            raise InvalidRequest(
                f"`{field}` holds token ids; this service takes text only (token ids of "
                "another tokenizer mean nothing to its model)",
                code="token_ids_unsupported",
                param=field,
            )
        raise InvalidRequest(
            f"`{field}[{index}]` is {_kind(item)}: every item must be a string",
            code="invalid_input",
            param=field,
        )
    _check_lengths(value, field, limits)
    return value


def _check_lengths(texts: list[str], field: str, limits: Limits) -> None:
    for index, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise PayloadTooLarge(
                f"`{field}[{index}]` has {len(text)} characters; the limit is "
                f"EMBEDDING_MAX_CHARS={limits.max_chars}: split it",
                code="text_too_long",
                param=field,
            )


def _is_token_ids(value: Any) -> bool:
    """A non-empty list of ints (not bools), or a non-empty list of such lists."""
    if not isinstance(value, list) or not value:
        return False
    if all(type(v) is int for v in value):
        return True
    return all(isinstance(v, list) and v and all(type(t) is int for t in v) for v in value)


def _kind(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
        str: "a string",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)
