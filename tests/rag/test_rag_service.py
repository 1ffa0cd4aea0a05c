"""The rag service with its real dependencies: index a folder, query it, re-index
unchanged (no writes), change one file (only its chunks replaced), delete one."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from localsuite.testing.documents import write_mixed_corpus
from localsuite.testing.rag import Rag
from localsuite.testing.servers import wait_until

pytestmark = pytest.mark.llama


def qdrant_files(rag: Rag) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every file of the embedded Qdrant: unchanged = nothing written."""
    root = rag.service.root / "qdrant"
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()
    }


def test_index_query_reindex_change_and_delete(rag: Rag, tmp_path: Path) -> None:
    files = write_mixed_corpus(rag.documents / "corpus")

    first = rag.index("docs")  # no paths: the whole documents folder
    assert first["state"] == "done" and first["files_failed"] == 0, first
    assert first["files_total"] == 5 and first["chunks_added"] > 5
    ledger = rag.ledger("docs")
    assert sorted(ledger) == sorted(str(p) for p in files.values())
    assert rag.points("docs") == sum(map(len, ledger.values())) == first["chunks_added"]

    answer = rag.client.post(
        "/query",
        json={
            "query": "Who wrote the names of lost ships in a ledger?",
            "collection": "docs",
            "topk": 3,
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["context"][0]["source"] == "corpus/lighthouse.md"
    assert {"source", "chunk", "score", "text"} <= set(body["context"][0])
    assert isinstance(body["answer"], str) and body["answer"].strip()
    assert body["model"] and body["usage"]["completion_tokens"] > 0

    korean = rag.client.post(
        "/query", json={"query": "한강은 어디로 흐르나요?", "collection": "docs", "generate": False}
    )
    assert korean.json()["context"][0]["source"] == "corpus/seoul.txt"
    assert korean.json()["answer"] is None

    # Unchanged: nothing is embedded or written, not a byte of Qdrant's files moves.
    before = qdrant_files(rag)
    again = rag.index("docs")
    assert (again["chunks_added"], again["chunks_removed"]) == (0, 0)
    assert again["chunks_unchanged"] == first["chunks_added"]
    assert qdrant_files(rag) == before and rag.ledger("docs") == ledger

    # One file changed: only its chunks are replaced; the others keep their ids.
    seoul = files["seoul"]
    seoul.write_text(seoul.read_text() + "\n부산은 바다와 항구로 유명한 두 번째 도시입니다.\n")
    changed = rag.index("docs")
    after = rag.ledger("docs")
    assert changed["chunks_added"] >= 1
    for source, ids in ledger.items():
        if source != str(seoul):
            assert after[source] == ids
    assert after[str(seoul)] != ledger[str(seoul)]
    assert rag.points("docs") == sum(map(len, after.values()))
    busan = rag.client.post(
        "/query",
        json={"query": "부산은 무엇으로 유명한가요?", "collection": "docs", "generate": False},
    )
    assert "부산" in busan.json()["context"][0]["text"]

    # One file deleted: its chunks go, the rest stay.
    files["tools"].unlink()
    removed = rag.index("docs", rag.documents / "corpus")
    assert removed["chunks_removed"] == len(after[str(files["tools"])])
    final = rag.ledger("docs")
    assert str(files["tools"]) not in final
    assert rag.points("docs") == sum(map(len, final.values()))


def test_upload_then_query_and_stream_an_answer(rag: Rag) -> None:
    upload = rag.client.post(
        "/documents",
        params={"collection": "uploads"},
        files=[
            ("files", ("notes.md", b"The secret harbour code is BLUE-SEVEN.\n", "text/markdown"))
        ],
    )
    assert upload.status_code == 202, upload.text
    job = rag.wait_job(upload.json()["job"]["id"])
    assert job["state"] == "done" and job["chunks_added"] == 1
    assert not (rag.service.uploads / job["id"]).exists()  # the index holds it now

    def answered() -> float:
        return float(rag.service.metrics.queries.labels("ok")._value.get())

    answered_before = answered()
    with rag.client.stream(
        "POST",
        "/query",
        json={"query": "What is the harbour code?", "collection": "uploads", "stream": True},
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    events = [orjson.loads(line[6:]) for line in lines[:-1]]
    assert lines[-1] == "data: [DONE]"
    assert events[0]["type"] == "context" and events[0]["context"][0]["source"] == "upload:notes.md"
    assert any(e["type"] == "delta" for e in events)
    assert events[-1]["type"] == "done" and events[-1]["model"]
    wait_until(lambda: answered() == answered_before + 1, what="the stream counted as ok")


def test_collections_are_listed_and_deleted(rag: Rag) -> None:
    files = write_mixed_corpus(rag.documents / "c")
    rag.index("alpha", files["lighthouse"])
    listed = {c["name"]: c for c in rag.client.get("/collections").json()["collections"]}
    assert listed["alpha"]["documents"] == 1 and listed["alpha"]["dim"] == 384
    assert rag.client.delete("/collections/alpha").status_code == 200
    assert rag.client.delete("/collections/alpha").status_code == 404
    gone = rag.client.post("/query", json={"query": "lighthouse", "collection": "alpha"})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "collection_not_found"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/index", {"json": {"paths": ["does/not/exist.md"]}}, 404),
        ("post", "/index", {"json": {"paths": ["x\u0000y"]}}, 400),
        ("post", "/index", {"json": {"paths": ["/etc"]}}, 403),
        ("post", "/index", {"json": {"paths": ["../../outside"]}}, 403),
        ("post", "/index", {"json": {"paths": "not-a-list"}}, 422),
        ("post", "/index", {"json": {"paths": [], "extra": 1}}, 422),
        ("post", "/index", {"params": {"collection": "../etc"}}, 422),
        ("post", "/query", {"json": {"query": ""}}, 422),
        ("post", "/query", {"json": {"query": "hi", "topk": 0}}, 422),
        ("post", "/query", {"json": {"query": "hi", "collection": "nope"}}, 404),
        (
            "post",
            "/query",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
        ),
        ("post", "/documents", {"content": b"x", "headers": {"content-type": "text/plain"}}, 400),
        ("post", "/documents", {"files": [("files", ("a.png", b"\x89PNG", "image/png"))]}, 400),
        ("get", "/jobs/unknown", {}, 404),
        ("delete", "/collections/never", {}, 404),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    rag: Rag, method: str, path: str, kwargs: dict, status: int
) -> None:  # type: ignore[type-arg]
    response = getattr(rag.client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert {"message", "type", "code"} <= set(response.json()["error"])


def test_an_upload_over_the_limit_is_refused(rag_factory) -> None:  # type: ignore[no-untyped-def]
    rag = rag_factory(rag_max_upload_bytes=2048)
    big = rag.client.post("/documents", files=[("files", ("big.txt", b"x" * 4096, "text/plain"))])
    assert big.status_code == 413


def test_health_reports_every_dependency(rag: Rag) -> None:
    health = rag.client.get("/health")
    assert health.status_code == 200
    checks = health.json()["checks"]
    assert set(checks) == {"qdrant", "embedding", "api-gateway"}
    assert all(c["ok"] and c["latency_ms"] is not None for c in checks.values())


def test_only_allowed_folders_are_read(rag_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "note.md").write_text("Notes kept outside the documents folder.\n")
    rag = rag_factory(rag_index_roots=str(elsewhere))
    assert rag.index("extra", elsewhere)["chunks_added"] == 1

    (rag.documents / "escape").symlink_to(tmp_path.parent)  # a link out of the folder
    refused = rag.client.post("/index", json={"paths": ["escape"]})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "path_not_allowed"
