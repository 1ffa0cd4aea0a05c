"""What goes wrong around an index job is contained: a file the embedding service refuses
fails alone, work that cannot be written down is refused (503), and the worker goes on."""

from __future__ import annotations

from pathlib import Path

from localsuite.core.settings import Settings
from localsuite.embedding.app import create_embedding_app
from localsuite.testing.rag import Rag
from localsuite.testing.servers import free_port, healthy, serve_in_thread, wait_until


def test_a_file_the_embedding_service_refuses_fails_alone(rag_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    strict = create_embedding_app(
        Settings(_env_file=None, embedding_cache_dir=tmp_path / "cache", embedding_max_texts=2)
    )
    with serve_in_thread(strict) as embedding_url:
        wait_until(lambda: healthy(f"{embedding_url}/health"), 120, "the embedding model")
        rag: Rag = rag_factory(embedding_url=embedding_url, rag_index_batch_size=16)
        (rag.documents / "long.md").write_text("One sentence here. " * 200)  # many chunks
        (rag.documents / "short.md").write_text("Just one short line.\n")
        job = rag.index("c")
        assert job["state"] == "done" and job["files_failed"] == 1, job
        [failure] = job["failures"]
        assert failure["source"].endswith("long.md")
        assert "HTTP 413" in failure["error"] and "RAG_INDEX_BATCH_SIZE" in failure["error"]
        assert list(rag.ledger("c")) == [str(rag.documents / "short.md")]
        # the worker lives on: the next job runs
        (rag.documents / "more.md").write_text("Another short line.\n")
        assert rag.index("c", rag.documents / "more.md")["state"] == "done"


def test_work_that_cannot_be_kept_is_refused_not_lost(rag: Rag) -> None:
    uploads = rag.service.uploads
    uploads.rmdir()
    uploads.write_text("a file where the uploads folder should be")
    refused = rag.client.post("/documents", files=[("files", ("a.md", b"text", "text/markdown"))])
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "storage_unavailable"
    assert refused.headers["Retry-After"]
    assert rag.client.get("/jobs").json()["jobs"] == []  # nothing half-accepted


def test_deleting_a_collection_cancels_its_jobs_and_drops_their_uploads(rag_factory) -> None:  # type: ignore[no-untyped-def]
    rag: Rag = rag_factory(embedding_url=f"http://127.0.0.1:{free_port()}")  # never up
    accepted = rag.client.post(
        "/documents", params={"collection": "gone"},
        files=[("files", ("a.md", b"some text", "text/markdown"))],
    )  # fmt: skip
    job_id = accepted.json()["job"]["id"]
    wait_until(lambda: rag.service.jobs.state_of(job_id) == "waiting", 10, "the job to wait")
    assert (rag.service.uploads / job_id).is_dir()

    deleted = rag.client.delete("/collections/gone")
    assert deleted.status_code == 200 and deleted.json()["jobs_cancelled"] == 1
    assert rag.client.get(f"/jobs/{job_id}").json()["state"] == "cancelled"
    assert not (rag.service.uploads / job_id).exists()
