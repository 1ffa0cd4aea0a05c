"""The original suite's request and response forms, against the real service: synchronous
`POST /index` (with `path`, a `{"collection"}` body, `Prefer: respond-async`, the bounded
wait), `doc_id`/`chunk_id`, `cached` and `response_time_ms` with the query cache and its
invalidation, `/health`'s `status` and `dependencies` (and `?llm=true`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from localsuite.testing.documents import write_mixed_corpus
from localsuite.testing.rag import Rag

RagFactory = Callable[..., Rag]

pytestmark = pytest.mark.llama

ASYNC = {"Prefer": "respond-async"}


def ask(rag: Rag, query: str, collection: str, **extra: Any) -> dict[str, Any]:
    body = {"query": query, "collection": collection, "generate": False, **extra}
    answer = rag.client.post("/query", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_index_answers_synchronously_as_the_original_did(rag: Rag) -> None:
    files = write_mixed_corpus(rag.documents / "corpus")
    whole = rag.client.post("/index", params={"collection": "legacy"})  # no body at all
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["collection"] == "legacy" and body["job"]["state"] == "done"
    assert body["chunks"] == body["job"]["chunks_added"] == rag.points("legacy") > 0

    again = rag.client.post("/index", params={"collection": "legacy"}).json()
    assert again["chunks"] == body["chunks"]  # every chunk of the files, even unchanged ones
    assert again["job"]["chunks_added"] == 0

    one = rag.client.post("/index", params={"collection": "one", "path": "corpus/seoul.txt"})
    assert one.status_code == 200, one.text
    assert list(rag.ledger("one")) == [str(files["seoul"])]

    named = rag.client.post("/index", json={"collection": "bodied"})
    assert named.status_code == 200 and named.json()["collection"] == "bodied"
    assert len(rag.ledger("bodied")) == len(files)


def test_respond_async_and_a_wait_that_runs_out_give_the_job(rag_factory: RagFactory) -> None:
    rag = rag_factory(rag_index_sync_wait=0)
    write_mixed_corpus(rag.documents / "corpus")
    at_once = rag.client.post("/index", params={"collection": "a"}, headers=ASYNC)
    assert at_once.status_code == 202 and at_once.headers["Preference-Applied"] == "respond-async"
    assert at_once.headers["Location"] == f"/jobs/{at_once.json()['job']['id']}"
    rag.wait_job(at_once.json()["job"]["id"])

    timed_out = rag.client.post("/index", params={"collection": "b"})  # no time to wait
    assert timed_out.status_code == 202 and "Preference-Applied" not in timed_out.headers
    assert rag.wait_job(timed_out.json()["job"]["id"])["state"] == "done"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"params": {"collection": "x"}, "json": {"collection": "y"}}, 400,
         "conflicting_collection"),
        ({"json": {"collection": "../etc"}}, 422, None),
        ({"params": {"path": "/etc"}}, 403, "path_not_allowed"),
        ({"params": {"path": "missing.md"}}, 404, "path_not_found"),
    ],
)  # fmt: skip
def test_legacy_index_input_is_checked(
    rag: Rag, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    answer = rag.client.post("/index", **kwargs)
    assert answer.status_code == status, answer.text
    if code:
        assert answer.json()["error"]["code"] == code


def test_query_items_and_the_cache_with_its_invalidation(rag: Rag) -> None:
    files = write_mixed_corpus(rag.documents / "corpus")
    rag.index("c")
    first = ask(rag, "Who wrote the names of lost ships in a ledger?", "c")
    assert first["cached"] is False and first["response_time_ms"] > 0
    item = first["context"][0]
    assert item["doc_id"] == item["source"] == "corpus/lighthouse.md"
    assert item["chunk_id"] in rag.ledger("c")[str(files["lighthouse"])]

    repeated = ask(rag, "Who wrote the names of lost ships in a ledger?", "c")
    assert repeated["cached"] is True and repeated["context"] == first["context"]
    assert rag.service.metrics.cache_hits._value.get() == 1
    other_params = ask(rag, "Who wrote the names of lost ships in a ledger?", "c", topk=2)
    assert other_params["cached"] is False and len(other_params["context"]) == 2
    unasked = ask(rag, "Who wrote the names of lost ships in a ledger?", "c", cache=False)
    assert unasked["cached"] is False

    # Re-indexing unchanged files changes nothing: the cache still answers.
    rag.index("c")
    assert ask(rag, "Who wrote the names of lost ships in a ledger?", "c")["cached"] is True

    # A changed file is a change of the collection: the next answer is fresh, and sees it.
    lighthouse = files["lighthouse"]
    lighthouse.write_text(
        lighthouse.read_text() + "\n\nAda Okonkwo wrote the names of lost ships in a ledger.\n"
    )
    rag.index("c")
    fresh = ask(rag, "Who wrote the names of lost ships in a ledger?", "c")
    assert fresh["cached"] is False
    assert any("Okonkwo" in c["text"] for c in fresh["context"])

    # Deleting the collection: no cached answer survives it.
    assert rag.client.delete("/collections/c").status_code == 200
    gone = rag.client.post("/query", json={"query": "lost ships ledger", "collection": "c"})
    assert gone.status_code == 404
    rag.index("c", files["seoul"])
    rebuilt = ask(rag, "Who wrote the names of lost ships in a ledger?", "c")
    assert rebuilt["cached"] is False
    assert {c["doc_id"] for c in rebuilt["context"]} == {"corpus/seoul.txt"}


def test_a_disabled_cache_never_answers(rag_factory: RagFactory) -> None:
    rag = rag_factory(rag_query_cache_size=0)
    write_mixed_corpus(rag.documents / "corpus")
    rag.index("c")
    assert ask(rag, "lighthouse keeper", "c")["cached"] is False
    assert ask(rag, "lighthouse keeper", "c")["cached"] is False


def test_health_speaks_the_original_dialect_too(rag: Rag) -> None:
    health = rag.client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["ok"] is True and body["status"] == "healthy"
    assert set(body["checks"]) == {"qdrant", "embedding", "api-gateway"}
    assert body["dependencies"] == {
        "qdrant": "healthy", "embedding": "healthy", "api_gateway": "healthy",
        "llm": "not_checked",
    }  # fmt: skip

    with_llm = rag.client.get("/health", params={"llm": "true"}).json()
    assert with_llm["dependencies"]["llm"] == "healthy"
    assert with_llm["checks"]["llm"]["ok"] is True


def test_health_is_degraded_when_a_dependency_is_down(
    rag_factory: RagFactory, tmp_path: Path
) -> None:
    rag = rag_factory(embedding_url="http://127.0.0.1:9")  # nothing listens on port 9
    health = rag.client.get("/health")
    assert health.status_code == 503 and int(health.headers["Retry-After"]) >= 1
    body = health.json()
    assert body["status"] == "degraded" and body["ok"] is False
    assert body["dependencies"]["embedding"] == "unhealthy"
    assert body["dependencies"]["qdrant"] == "healthy"
