"""What an index job plans, and the ids its chunks get."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from localsuite.core.settings import Settings
from localsuite.rag.chunking import Chunker
from localsuite.rag.ingest import chunk_ids, plan_paths
from localsuite.rag.loaders import walk
from localsuite.rag.query import Answerer, Question

TEXT = "First sentence here. Second one follows.\n\nA new paragraph. " * 6


def test_chunk_ids_are_deterministic_per_source_and_content() -> None:
    chunks = Chunker(12, 3).split(TEXT)
    ids = chunk_ids("/docs/a.md", chunks)
    assert ids == chunk_ids("/docs/a.md", Chunker(12, 3).split(TEXT))
    assert all(uuid.UUID(i).version == 5 for i in ids)
    assert set(ids).isdisjoint(chunk_ids("/docs/b.md", chunks))  # another source
    assert len(set(ids)) == len(ids)  # repeated identical chunks still get their own ids


def test_an_edit_changes_only_the_ids_of_the_chunks_it_touches() -> None:
    chunker = Chunker(5, 0)  # one paragraph (4 tokens) a chunk
    before = "Alpha beta gamma.\n\nDelta epsilon zeta.\n\nEta theta iota.\n"
    after = before.replace("Delta epsilon zeta.", "Delta epsilon CHANGED.")
    old = chunk_ids("s", chunker.split(before))
    new = chunk_ids("s", chunker.split(after))
    assert len(old) == len(new) == 3
    assert (old[0], old[2]) == (new[0], new[2]) and old[1] != new[1]


def test_walk_skips_hidden_unsupported_and_linked_folders(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.md").write_text("a")
    (tmp_path / "docs" / "sub" / "b.py").write_text("b")
    (tmp_path / "docs" / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "docs" / ".git").mkdir()
    (tmp_path / "docs" / ".git" / "config.md").write_text("hidden")
    (tmp_path / "docs" / "loop").symlink_to(tmp_path / "docs")  # a cycle, not followed
    found = walk(tmp_path / "docs")
    assert [p.relative_to(tmp_path / "docs").as_posix() for p in found] == ["a.md", "sub/b.py"]


def test_plan_indexes_files_and_removes_what_left_an_indexed_folder(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kept.md").write_text("kept")
    known = [str(folder / "kept.md"), str(folder / "gone.md"), str(tmp_path / "other" / "x.md")]
    plan = plan_paths([folder], known)
    assert plan == [
        ("index", str(folder / "kept.md"), str(folder / "kept.md")),
        ("remove", str(folder / "gone.md"), None),  # outside the folder: not touched
    ]
    # A file named alone is indexed; nothing is removed for it.
    assert plan_paths([folder / "kept.md"], known) == [
        ("index", str(folder / "kept.md"), str(folder / "kept.md"))
    ]


@pytest.mark.parametrize(
    ("routing", "query", "alias"),
    [
        ("auto", "How do I reverse a list in Python?", "code-7b"),
        ("auto", "def f(x): return x  -- why is this slow?", "code-7b"),
        ("auto", "Who kept the lighthouse?", "chat-7b"),
        ("auto", "이 함수는 무엇을 하나요?", "code-7b"),
        ("chat", "How do I reverse a list in Python?", "chat-7b"),
        ("code", "Who kept the lighthouse?", "code-7b"),
    ],
)
def test_the_alias_that_answers(routing: str, query: str, alias: str) -> None:
    settings = Settings(_env_file=None, rag_model_routing=routing)
    answerer = Answerer(settings, None, None, None, None, None)  # type: ignore[arg-type]
    assert answerer.alias_for(Question(query, "docs", 4)) == alias
    assert answerer.alias_for(Question(query, "docs", 4, model="chat")) == "chat"
