"""The meaning of each upstream error status, as a grid."""

from __future__ import annotations

import pytest

from localsuite.gateway.config import DEFAULT_RETRY_STATUSES
from localsuite.gateway.failover import classify_status

LLAMA_CONTEXT = (
    b'{"error":{"code":400,"message":"request (831 tokens) exceeds the available context '
    b'size (512 tokens), try increasing it","type":"exceed_context_size_error"}}'
)
OPENAI_CONTEXT = b'{"error":{"message":"too long","code":"context_length_exceeded"}}'


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (400, LLAMA_CONTEXT, "context"),
        (400, OPENAI_CONTEXT, "context"),
        (400, b'{"error":{"message":"Failed to parse grammar"}}', "client"),
        (401, b"unauthorized", "client"),
        (404, b"not found", "client"),
        (422, b'{"detail":"bad"}', "client"),
        (408, b"", "transient"),
        (429, b"slow down", "transient"),
        (500, LLAMA_CONTEXT, "transient"),
        (500, b"boom", "transient"),
        (502, b"", "transient"),
        (503, b'{"error":{"message":"Loading model"}}', "transient"),
        (504, b"", "transient"),
    ],
)
def test_classify_status(status: int, body: bytes, verdict: str) -> None:
    assert classify_status(status, body, DEFAULT_RETRY_STATUSES) == verdict


def test_retry_statuses_come_from_the_routing_file() -> None:
    assert classify_status(500, b"", frozenset({503})) == "client"
    assert classify_status(418, b"", frozenset({418})) == "transient"
