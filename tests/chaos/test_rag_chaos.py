"""Chaos: the embedding service killed in the middle of an index job, and brought back.

While it is down the job waits (it says for what), `/query` answers 503 + Retry-After
within its deadline and `/health` names the dependency; once it is back, rag works
again without a restart and the job ends with exactly the chunks a clean run gives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localsuite.core.settings import Settings
from localsuite.rag.app import create_rag_app
from localsuite.rag.jobstore import JobStore
from localsuite.testing.documents import write_generated_corpus
from localsuite.testing.processes import ServiceProcess
from localsuite.testing.servers import free_port, serve_in_thread, wait_until

pytestmark = [pytest.mark.chaos]

RETRIEVAL_DEADLINE = 3.0


@pytest.fixture
def embedding(tmp_path: Path) -> Iterator[ServiceProcess]:
    env = {"EMBEDDING_CACHE_DIR": str(tmp_path / "cache"), "EMBEDDING_BATCH_SIZE": "16"}
    process = ServiceProcess("embedding", tmp_path / "logs", env).start().wait_ready()
    yield process
    process.stop()


def job(client: httpx.Client, job_id: str) -> dict:  # type: ignore[type-arg]
    data: dict = client.get(f"/jobs/{job_id}").json()  # type: ignore[type-arg]
    return data


def test_embedding_killed_mid_index_job_loses_nothing(
    embedding: ServiceProcess, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        embedding_url=embedding.url,
        api_gateway_url=f"http://127.0.0.1:{free_port()}",  # not needed: retrieval only
        rag_chunk_size=40,
        rag_chunk_overlap=8,
        rag_index_batch_size=16,
        rag_retrieval_timeout=RETRIEVAL_DEADLINE,
        rag_probe_interval=1.0,
        qdrant_retry_min_wait=0.2,
        qdrant_retry_max_wait=1.0,
    )
    corpus = tmp_path / "data" / "documents" / "corpus"
    write_generated_corpus(corpus, files=40, paragraphs=8)
    app = create_rag_app(settings)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        accepted = client.post(
            "/index", params={"collection": "chaos"}, json={"paths": [str(corpus)]},
            headers={"Prefer": "respond-async"},
        )  # fmt: skip
        job_id = accepted.json()["job"]["id"]
        wait_until(lambda: job(client, job_id)["chunks_added"] > 0, 120, "the job to start writing")
        embedding.kill()

        wait_until(lambda: job(client, job_id)["state"] == "waiting", 30, "the job to wait")
        assert job(client, job_id)["waiting_for"] == "embedding"
        health = client.get("/health")  # (the gateway is down all along: not needed here)
        assert health.status_code == 503 and health.headers["Retry-After"]
        assert health.json()["checks"]["embedding"]["ok"] is False
        assert health.json()["checks"]["qdrant"]["ok"] is True

        started = time.monotonic()
        refused = client.post(
            "/query", json={"query": "harbour", "collection": "chaos", "generate": False}
        )
        took = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert (
            refused.headers["Retry-After"]
            and refused.json()["error"]["code"] == "embedding_unavailable"
        )
        assert took < RETRIEVAL_DEADLINE + 2  # the retrieval deadline bounds it, not a hang

        embedding.start().wait_ready()
        wait_until(
            lambda: (
                client.post(
                    "/query", json={"query": "harbour", "collection": "chaos", "generate": False}
                ).status_code
                == 200
            ),
            5,
            "rag to work again within 5 s of the embedding service's return",
        )
        wait_until(
            lambda: client.get("/health").json()["checks"]["embedding"]["ok"],
            5,
            "rag's /health to see the embedding service back",
        )
        wait_until(lambda: job(client, job_id)["state"] == "done", 180, "the job to finish")
        interrupted = app.state.rag.jobs

        clean = client.post("/index", params={"collection": "clean"}, json={"paths": [str(corpus)]})
        wait_until(
            lambda: job(client, clean.json()["job"]["id"])["state"] == "done", 180, "clean run"
        )
        for source in interrupted.sources("chaos"):
            assert (
                interrupted.ledger("chaos", source).chunk_ids
                == interrupted.ledger("clean", source).chunk_ids
            )  # type: ignore[union-attr]
        counts = {c["name"]: c["points"] for c in client.get("/collections").json()["collections"]}
        assert counts["chaos"] == counts["clean"] > 0
        finished = job(client, job_id)
        assert finished["files_failed"] == 0 and finished["chunks_added"] == counts["chaos"]


@pytest.mark.llama
def test_rag_killed_mid_index_job_resumes_it_after_restart(
    embedding_url: str, gateway_url: str, tmp_path: Path
) -> None:
    """Accepted work survives a crash of rag itself: the job resumes where it stopped."""
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "EMBEDDING_URL": embedding_url,
        "API_GATEWAY_URL": gateway_url,
        "RAG_CHUNK_SIZE": "40",
        "RAG_CHUNK_OVERLAP": "8",
        "RAG_INDEX_BATCH_SIZE": "16",
    }
    corpus = tmp_path / "data" / "documents" / "corpus"
    write_generated_corpus(corpus, files=30, paragraphs=8)
    rag = ServiceProcess("rag", tmp_path / "logs", env).start().wait_ready()
    try:
        with httpx.Client(base_url=rag.url, timeout=60) as client:
            accepted = client.post(
                "/index", params={"collection": "c"}, json={"paths": [str(corpus)]},
                headers={"Prefer": "respond-async"},
            )  # fmt: skip
            job_id = accepted.json()["job"]["id"]
            wait_until(lambda: job(client, job_id)["files_done"] >= 3, 120, "some files done")
        rag.kill()

        rag.start().wait_ready()
        with httpx.Client(base_url=rag.url, timeout=60) as client:
            wait_until(lambda: job(client, job_id)["state"] == "done", 180, "the resumed job")
            finished = job(client, job_id)
            clean = client.post(
                "/index", params={"collection": "clean"}, json={"paths": [str(corpus)]}
            )
            wait_until(
                lambda: job(client, clean.json()["job"]["id"])["state"] == "done", 180, "clean"
            )
            counts = {
                c["name"]: c["points"] for c in client.get("/collections").json()["collections"]
            }
    finally:
        rag.stop()
    assert finished["files_total"] == finished["files_done"] == 30 and finished["files_failed"] == 0
    assert counts["c"] == counts["clean"] > 0
    ledger = JobStore(tmp_path / "data" / "rag" / "jobs.sqlite")
    assert ledger.sources("c") == ledger.sources("clean")
    for source in ledger.sources("c"):
        assert ledger.ledger("c", source) == ledger.ledger("clean", source)
