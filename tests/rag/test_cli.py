"""`localsuite index` and `localsuite ask` against a real rag service."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from localsuite.testing.documents import write_mixed_corpus
from localsuite.testing.rag import Rag

pytestmark = pytest.mark.llama


def cli(rag: Rag, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_URL": rag.url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "localsuite", *args],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_index_then_ask_prints_the_answer_and_its_sources(rag: Rag) -> None:
    corpus = write_mixed_corpus(rag.documents / "corpus")
    indexed = cli(rag, "index", str(rag.documents / "corpus"), "--collection", "cli")
    assert indexed.returncode == 0, indexed.stderr
    assert "indexed into 'cli': 5 files" in indexed.stdout
    assert sorted(rag.ledger("cli")) == sorted(str(p) for p in corpus.values())

    again = cli(rag, "index", str(rag.documents / "corpus"), "-c", "cli")
    assert "0 chunks added, 0 removed" in again.stdout

    asked = cli(rag, "ask", "Who kept the ledger of lost ships?", "-c", "cli", "--topk", "2")
    assert asked.returncode == 0, asked.stderr
    answer, sources = asked.stdout.split("Sources")
    assert answer.strip()
    assert "[1] corpus/lighthouse.md · chunk" in sources


def test_files_outside_the_allowed_folders_are_uploaded(rag: Rag, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.md").write_text("The harbour master keeps the tide tables.\n")
    indexed = cli(rag, "index", str(elsewhere), "-c", "up")
    assert indexed.returncode == 0, indexed.stderr
    assert "uploading the files instead" in indexed.stdout
    assert rag.ledger("up") and list(rag.ledger("up")) == ["upload:notes.md"]


def test_errors_say_what_to_do(rag: Rag, tmp_path: Path) -> None:
    missing = cli(rag, "index", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    unknown = cli(rag, "ask", "anything", "-c", "never-indexed")
    assert unknown.returncode == 1 and "404" in unknown.stderr
    down = subprocess.run(
        [sys.executable, "-m", "localsuite", "ask", "hello"],
        env={**os.environ, "RAG_URL": "http://127.0.0.1:9"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert down.returncode == 1 and "rag is not answering" in down.stderr
