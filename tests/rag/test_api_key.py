"""With LOCALSUITE_API_KEY set, every service demands it, and the services send it to
each other: rag to the embedding service and the gateway, the gateway to the embedding
service (its /v1/embeddings forward)."""

from __future__ import annotations

from pathlib import Path

import httpx

from localsuite.core.settings import Settings
from localsuite.embedding.app import create_embedding_app
from localsuite.gateway.app import create_gateway_app
from localsuite.rag.app import create_rag_app
from localsuite.testing.documents import write_mixed_corpus
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.servers import serve_in_thread, wait_until

KEY = "sk-local-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", headers=AUTH, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_key_is_demanded_and_passed_along(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    embedding = create_embedding_app(
        Settings(_env_file=None, embedding_cache_dir=cache, localsuite_api_key=KEY)
    )
    with (
        serve_in_thread(embedding) as embedding_url,
        serve_in_thread(FakeUpstream("llm").app()) as llm,
    ):
        wait_until(lambda: ready(embedding_url), 120, "the embedding model to load")
        gateway = create_gateway_app(
            make_settings(llm, llm, localsuite_api_key=KEY, embedding_url=embedding_url)
        )
        with serve_in_thread(gateway) as gateway_url:
            settings = Settings(
                _env_file=None, data_dir=tmp_path / "data", embedding_url=embedding_url,
                api_gateway_url=gateway_url, localsuite_api_key=KEY,
            )  # fmt: skip
            write_mixed_corpus(settings.documents_dir)
            with (
                serve_in_thread(create_rag_app(settings)) as rag_url,
                httpx.Client(base_url=rag_url, timeout=60) as rag,
            ):
                assert rag.get("/collections").status_code == 401  # /health is open
                wait_until(lambda: ready(rag_url), 30, "rag to see its dependencies")

                job = rag.post("/index", headers=AUTH).json()["job"]
                wait_until(
                    lambda: rag.get(f"/jobs/{job['id']}", headers=AUTH).json()["state"] == "done",
                    60,
                    "the index job",
                )
                answer = rag.post("/query", headers=AUTH, json={"query": "lost ships ledger"})
                assert answer.status_code == 200, answer.text
                assert answer.json()["context"] and answer.json()["answer"]

            forwarded = httpx.post(
                f"{gateway_url}/v1/embeddings", headers=AUTH, json={"input": "hello"}, timeout=30
            )
            assert forwarded.status_code == 200, forwarded.text
            assert len(forwarded.json()["data"][0]["embedding"]) == 384
