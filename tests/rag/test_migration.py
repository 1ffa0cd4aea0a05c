"""A collection built by the old pipeline (estimated 48-token chunks of the whole text, no
headings, no lexical index, a ledger without pipeline) is migrated by re-indexing: every
document is still there, now chunked by the new pipeline and found by words too."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from localsuite.rag.chunking import Chunker
from localsuite.rag.jobstore import JobStore, LedgerEntry
from localsuite.rag.loaders import load
from localsuite.rag.store import Point
from localsuite.testing.documents import write_mixed_corpus
from localsuite.testing.rag import Rag

pytestmark = pytest.mark.llama

OLD_NAMESPACE = uuid.UUID("5f0c5a8e-1d3b-4c71-9a55-6a8f4e0b2c17")
UPLOADED = "The harbour master's secret code word is QUIBBLEFISH, kept in the old ledger."


def old_ids(source: str, texts: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for text in texts:
        digest = hashlib.sha256(text.encode()).hexdigest()
        seen[digest] = seen.get(digest, 0) + 1
        ids.append(str(uuid.uuid5(OLD_NAMESPACE, f"{source}\0{digest}\0{seen[digest] - 1}")))
    return ids


def index_like_the_old_pipeline(rag: Rag, collection: str, documents: dict[str, str]) -> None:
    """What the previous rag wrote for `documents` (source → text): points with the old
    payload, ledger entries with no pipeline, nothing in the lexical index."""
    service = rag.service
    embed_url = service.settings.embedding_service_url
    for n, (source, text) in enumerate(documents.items()):
        chunks = [c.text for c in Chunker(48, 12).split(text)]  # the estimate, no outline
        answer = httpx.post(f"{embed_url}/embed", json={"texts": chunks}, timeout=60)
        answer.raise_for_status()
        embeddings = answer.json()["embeddings"]
        ids = old_ids(source, chunks)
        points = [
            Point(i, v, {"source": source, "chunk": k, "text": t, "tokens": 0,
                         "sha256": f"old{n}", "kind": "text"})
            for k, (i, v, t) in enumerate(zip(ids, embeddings, chunks, strict=True))
        ]  # fmt: skip

        async def write(points: list[Point] = points, dim: int = len(embeddings[0])) -> None:
            await service.store.ensure_collection(collection, dim)
            await service.store.upsert(collection, points)

        asyncio.run(write())
        path = Path(source)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "gone"
        service.jobs.create(collection, [], job_id=f"old{n}")
        service.jobs.set_state(f"old{n}", "done")
        service.jobs.file_done(f"old{n}", 0, collection, source, LedgerEntry(digest, ids))


def ask(rag: Rag, query: str, retrieval: str) -> list[dict[str, Any]]:
    body = {"query": query, "collection": "old", "generate": False, "topk": 1,
            "retrieval": retrieval, "cache": False}  # fmt: skip
    answer = rag.client.post("/query", json=body)
    assert answer.status_code == 200, answer.text
    context: list[dict[str, Any]] = answer.json()["context"]
    return context


def test_an_old_pipeline_collection_migrates_without_losing_a_document(rag: Rag) -> None:
    files = write_mixed_corpus(rag.documents / "corpus")
    documents = {str(path): load(path).text for path in files.values()}
    documents["upload:notes.md"] = UPLOADED  # uploaded back then: no file to read again
    index_like_the_old_pipeline(rag, "old", documents)
    before = rag.ledger("old")
    assert set(before) == set(documents) and rag.points("old") == sum(map(len, before.values()))
    assert rag.service.lexical.count("old") == 0

    migrated = rag.client.post("/index", params={"collection": "old"})
    assert migrated.status_code == 200, migrated.text
    job = migrated.json()["job"]
    assert job["files_failed"] == 0 and job["chunks_unchanged"] == 0  # every file re-chunked

    after = rag.ledger("old")
    assert set(after) == set(documents), "no document lost"
    signature = rag.service.chunker.signature
    for source in files.values():
        entry = rag.service.jobs.ledger("old", str(source))
        assert entry is not None and entry.pipeline == signature
        assert set(entry.chunk_ids).isdisjoint(before[str(source)])  # all chunks are new
    assert after["upload:notes.md"] == before["upload:notes.md"]  # kept as it was
    points = rag.points("old")
    assert points == sum(map(len, after.values()))  # the old chunks are gone from Qdrant
    assert rag.service.lexical.count("old") == points  # and every chunk is found by words

    lighthouse = ask(rag, "Who wrote the names of lost ships in a ledger?", "hybrid")
    assert lighthouse[0]["source"] == "corpus/lighthouse.md"
    assert lighthouse[0]["heading"]  # the new pipeline's chunks carry their heading
    assert ask(rag, "QUIBBLEFISH", "lexical")[0]["source"] == "upload:notes.md"

    again = rag.client.post("/index", params={"collection": "old"}).json()["job"]
    assert again["chunks_added"] == again["chunks_removed"] == 0  # migrated once, for good


def test_a_ledger_written_before_pipelines_were_recorded_opens(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE documents (collection TEXT NOT NULL, source TEXT NOT NULL,"
        " sha256 TEXT NOT NULL, chunk_ids TEXT NOT NULL, updated_at REAL NOT NULL,"
        " PRIMARY KEY (collection, source))"
    )
    db.execute("INSERT INTO documents VALUES ('c', '/a.md', 'abc', '[\"id1\"]', 0)")
    db.commit()
    db.close()
    jobs = JobStore(path)
    try:
        assert jobs.ledger("c", "/a.md") == LedgerEntry("abc", ["id1"], None)
    finally:
        jobs.close()
