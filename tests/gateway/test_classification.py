"""The meaning of each upstream error status, as a grid."""

from __future__ import annotations

import pytest

from localsuite.gateway.config import DEFAULT_RETRY_STATUSES
from localsuite.gateway.engine import classify_status
from localsuite.gateway.outcomes import Outcome

LLAMA_CONTEXT = (
    b'{"error":{"code":400,"message":"request (831 tokens) exceeds the available context '
    b'size (512 tokens), try increasing it","type":"exceed_context_size_error"}}'
)
OPENAI_CONTEXT = b'{"error":{"message":"too long","code":"context_length_exceeded"}}'


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (400, LLAMA_CONTEXT, Outcome.CONTEXT_LENGTH),
        (400, OPENAI_CONTEXT, Outcome.CONTEXT_LENGTH),
        (400, b'{"error":{"message":"Failed to parse grammar"}}', Outcome.CLIENT_ERROR),
        (401, b"unauthorized", Outcome.CLIENT_ERROR),
        (404, b"not found", Outcome.CLIENT_ERROR),
        (422, b'{"detail":"bad"}', Outcome.CLIENT_ERROR),
        (408, b"", Outcome.HTTP_ERROR),
        (429, b"slow down", Outcome.RATE_LIMITED),
        (500, LLAMA_CONTEXT, Outcome.HTTP_ERROR),
        (500, b"boom", Outcome.HTTP_ERROR),
        (502, b"", Outcome.HTTP_ERROR),
        (503, b'{"error":{"message":"Loading model"}}', Outcome.HTTP_ERROR),
        (504, b"", Outcome.HTTP_ERROR),
    ],
)
def test_classify_status(status: int, body: bytes, verdict: Outcome) -> None:
    assert classify_status(status, body, DEFAULT_RETRY_STATUSES) == verdict


def test_retry_statuses_come_from_the_routing_file() -> None:
    assert classify_status(500, b"", frozenset({503})) == Outcome.CLIENT_ERROR
    assert classify_status(418, b"", frozenset({418})) == Outcome.HTTP_ERROR
