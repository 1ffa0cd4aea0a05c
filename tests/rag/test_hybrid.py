"""Hybrid retrieval with the real embedding model: a question about an exact code that the
embeddings blur with look-alike codes, which BM25 matches exactly. Dense retrieval alone
misses the answering document; the fusion of both rankings finds it."""

from __future__ import annotations

from typing import Any

import pytest

from localsuite.testing.rag import Rag

pytestmark = pytest.mark.llama

QUESTION = "What does error QX4471 mean?"
DOCUMENTS = {
    "spool.txt": "Spool notes. QX4471 is printed when the spool folder on the print server "
    "cannot be written to.",
    "log.txt": "Error QX4417 means the error log is full: what the error means is that old "
    "entries must be removed.",
    "licence.txt": "Error QX7144 means the licence has expired; this error means you must "
    "renew it.",
    "cable.txt": "Error XQ4471 means the network cable is unplugged, which is what this error "
    "code means.",
    "disk.txt": "Error QX4470 means the disk is full; that is what the error means.",
}
TOPK = 3


def sources(rag: Rag, retrieval: str) -> list[str]:
    body: dict[str, Any] = {"query": QUESTION, "collection": "codes", "topk": TOPK,
                            "generate": False, "retrieval": retrieval}  # fmt: skip
    answer = rag.client.post("/query", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["retrieval"] == retrieval
    return [item["source"] for item in answer.json()["context"]]


def test_the_fusion_finds_what_dense_retrieval_alone_misses(rag: Rag) -> None:
    folder = rag.documents / "codes"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text + "\n")
    rag.index("codes", folder)

    dense = sources(rag, "dense")
    assert len(dense) == TOPK and "codes/spool.txt" not in dense  # look-alike codes win
    assert sources(rag, "lexical")[0] == "codes/spool.txt"  # the exact code, by words
    hybrid = sources(rag, "hybrid")
    assert "codes/spool.txt" in hybrid and len(hybrid) == TOPK
