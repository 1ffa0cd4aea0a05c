"""The pieces of retrieval on their own: the lexical index (BM25), reciprocal
rank fusion, the query cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from localsuite.rag.cache import QueryCache
from localsuite.rag.lexical import LexicalIndex
from localsuite.rag.query import fuse
from localsuite.rag.store import Hit


@pytest.fixture
def lexical(tmp_path: Path) -> LexicalIndex:
    index = LexicalIndex(tmp_path / "lexical.sqlite")
    yield index  # type: ignore[misc]
    index.close()


def test_lexical_index_ranks_by_bm25_and_follows_writes(lexical: LexicalIndex) -> None:
    rows = [(f"p{i}", f"filler text about rivers and stones number {i}") for i in range(30)]
    rows.append(("target", "the frobnicate_quota setting limits frobnication per user"))
    lexical.add("docs", rows)
    assert lexical.count("docs") == 31
    found = lexical.search("docs", "What does frobnicate_quota limit?", 5)
    assert found[0][0] == "target" and found[0][1] > 0

    lexical.add("docs", [("target", "now about something else entirely")])  # replaced
    lexical.refresh("docs")  # as the index worker does at the end of a job
    assert lexical.count("docs") == 31
    assert all(point != "target" for point, _ in lexical.search("docs", "frobnicate_quota", 5))
    lexical.delete("docs", ["p1", "p2", "unknown"])
    assert lexical.count("docs") == 29 and lexical.points("docs") >= {"p0", "target"}
    lexical.refresh("docs")
    assert {p for p, _ in lexical.search("docs", "filler number", 40)} == lexical.points("docs") - {
        "target"
    }


def test_lexical_index_weighs_rare_words_and_keeps_collections_apart(
    lexical: LexicalIndex,
) -> None:
    lexical.add("a", [(f"a{i}", f"how the system works, part {i}") for i in range(40)])
    lexical.add("a", [("stash", "how the stash keeps changes away")])
    lexical.add("b", [("other", "stash changes in another collection")])
    assert lexical.search("a", "how is the stash kept", 3)[0][0] == "stash"
    assert lexical.search("a", "how the", 3)  # only common words: still matched
    assert [p for p, _ in lexical.search("b", "STASH", 3)] == ["other"]
    assert lexical.search("missing", "stash", 3) == []
    assert lexical.search("a", "???", 3) == []
    lexical.drop("a")
    assert lexical.count("a") == 0 and lexical.search("a", "stash", 3) == []
    assert lexical.count("b") == 1


def hit(point: str, score: float) -> Hit:
    return Hit(point, score, {"text": point})


def test_fusion_lifts_what_both_rankings_agree_on_and_finds_what_only_words_find() -> None:
    dense = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)]
    extra = [hit("z", 0.0)]  # found by words alone
    lexical = [("z", 12.0), ("c", 9.0), ("gone", 8.0)]  # "gone": not in Qdrant any more
    hits, scores = fuse(dense, extra, lexical, topk=3, k=60)
    assert [h.id for h in hits] == ["c", "a", "z"]  # a tie keeps the dense order
    assert hits[0].score == pytest.approx(1 / 63 + 1 / 62)
    assert hits[1].score == hits[2].score == pytest.approx(1 / 61)
    assert scores["c"] == {"dense": 0.7, "lexical": 9.0} and scores["z"] == {"lexical": 12.0}

    dense_only, _ = fuse(dense, [], [], topk=2, k=60)
    assert [(h.id, h.score) for h in dense_only] == [("a", 0.9), ("b", 0.8)]
    words_only, _ = fuse([], extra, lexical, topk=2, k=60)
    assert [(h.id, h.score) for h in words_only] == [("z", 12.0)]


def test_cache_hits_until_the_collection_changes_and_entries_age_out() -> None:
    now = [0.0]
    cache = QueryCache(size=2, ttl=10, clock=lambda: now[0])
    key = cache.key("docs", {"query": "q", "topk": 4})
    assert cache.get(key) is None
    cache.put(key, {"answer": "a"})
    assert cache.get(cache.key("docs", {"topk": 4, "query": "q"})) == {"answer": "a"}
    assert cache.get(cache.key("docs", {"query": "q", "topk": 3})) is None
    assert cache.get(cache.key("other", {"query": "q", "topk": 4})) is None

    cache.changed("docs")
    assert cache.get(key) is None and len(cache) == 0
    cache.put(key, {"answer": "stale"})  # computed before the change: never stored
    assert len(cache) == 0

    fresh = cache.key("docs", {"query": "q", "topk": 4})
    cache.put(fresh, {"answer": "b"})
    now[0] = 11
    assert cache.get(fresh) is None  # too old

    for n in range(3):
        cache.put(cache.key("docs", {"n": n}), {"n": n})
    assert len(cache) == 2 and cache.get(cache.key("docs", {"n": 0})) is None


def test_a_cache_of_size_zero_keeps_nothing() -> None:
    cache = QueryCache(size=0, ttl=10)
    key = cache.key("docs", {})
    cache.put(key, {"answer": "a"})
    assert not cache.enabled and cache.get(key) is None


def test_the_top_chunks_can_be_kept_from_several_documents() -> None:
    pages = ["a.html", "a.html", "a.html", "b.html", "c.html"]
    dense = [Hit(f"p{i}", 1 - i / 10, {"source": page}) for i, page in enumerate(pages)]
    any_page, _ = fuse(dense, [], [], topk=3, k=60)
    two_each, _ = fuse(dense, [], [], topk=3, k=60, per_source=2)
    one_each, _ = fuse(dense, [], [], topk=3, k=60, per_source=1)
    assert [h.payload["source"] for h in any_page] == ["a.html"] * 3
    assert [h.payload["source"] for h in two_each] == ["a.html", "a.html", "b.html"]
    assert [h.payload["source"] for h in one_each] == ["a.html", "b.html", "c.html"]
    few, _ = fuse(dense[:3], [], [], topk=3, k=60, per_source=1)  # one page only: still 3
    assert [h.id for h in few] == ["p0", "p1", "p2"]
