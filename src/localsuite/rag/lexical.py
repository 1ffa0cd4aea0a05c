"""The lexical index: Okapi BM25 over the chunks' text (heading included), one per
collection. The text lives in SQLite beside the job store (DATA_DIR/rag/lexical.sqlite,
a table per collection); the inverted index is built from it in memory (NumPy) when a
collection is first searched, and again after it changed.

Why not Qdrant's sparse vectors, or SQLite FTS5's own bm25(): measured with embedded
Qdrant at 10k points, a dense search took 12 ms, a sparse-vector search 168 ms and
Qdrant's RRF query 361 ms (local mode is Python over NumPy); FTS5 ranked an OR of a
question's words over 10k chunks in 40-100 ms (it computes bm25() row by row for every
row that matches any word). Postings in NumPy arrays rank the same 10k chunks in a
millisecond or two. The same index serves a Qdrant server (`QDRANT_URL`): one code path.

Words are runs of letters and digits of any script, lower-cased (no stemming: a light
English stemmer measured worse on bench/rag_quality.py, 0.736 against 0.778 recall@4 for
BM25 alone); BM25 with k1 = 1.5, b = 0.75 and Lucene's idf, so a word most chunks
contain weighs almost nothing. k1 = 1.4-1.6 lifted the fused ranking's MRR on both
question sets of bench/rag_quality.py (git 0.728 -> 0.748, Flask 0.871 -> 0.887) against
Lucene's 1.2, with the same recall; past 1.6 recall began to drop.

A collection changed by an index job is rebuilt at the end of the job (`refresh`), and
while the job runs at a search, at most every `REBUILD_EVERY` seconds (searches meanwhile
use the previous build: during indexing the lexical side may lag the dense side by that
much).
"""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_WORD = re.compile(r"\w+")
K1, B = 1.5, 0.75
REBUILD_EVERY = 5.0  # seconds, while a collection keeps changing


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _table(collection: str) -> str:
    return "lex_" + hashlib.sha256(collection.encode()).hexdigest()[:24]


@dataclass
class _Built:
    points: list[str]
    lengths: np.ndarray  # tokens per chunk
    postings: dict[str, tuple[np.ndarray, np.ndarray]]  # word → (rows, term frequencies)
    average: float
    built_at: float
    version: int

    def search(self, query: str, limit: int) -> list[tuple[str, float]]:
        n = len(self.points)
        scores = np.zeros(n, dtype=np.float32)
        norm = K1 * (1 - B + B * self.lengths / max(self.average, 1e-9))
        for word in set(words(query)):
            found = self.postings.get(word)
            if found is None:
                continue
            rows, tf = found
            idf = math.log(1 + (n - len(rows) + 0.5) / (len(rows) + 0.5))
            scores[rows] += idf * tf * (K1 + 1) / (tf + norm[rows])
        matched = np.flatnonzero(scores)
        if not len(matched):
            return []
        if len(matched) > limit:
            matched = matched[np.argpartition(-scores[matched], limit - 1)[:limit]]
        best = matched[np.argsort(-scores[matched], kind="stable")]
        return [(self.points[i], float(scores[i])) for i in best]


def _build(rows: list[tuple[str, str]], version: int) -> _Built:
    points: list[str] = []
    lengths: list[int] = []
    postings: dict[str, tuple[list[int], list[int]]] = {}
    for row, (point, text) in enumerate(rows):
        counts = Counter(words(text))
        points.append(point)
        lengths.append(sum(counts.values()))
        for word, tf in counts.items():
            entry = postings.setdefault(word, ([], []))
            entry[0].append(row)
            entry[1].append(tf)
    arrays = {
        w: (np.asarray(r, dtype=np.int32), np.asarray(t, dtype=np.float32))
        for w, (r, t) in postings.items()
    }
    length = np.asarray(lengths, dtype=np.float32)
    average = float(length.mean()) if len(length) else 0.0
    return _Built(points, length, arrays, average, time.monotonic(), version)


class LexicalIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # the ledger, not this index, is the record
        self._lock = threading.Lock()
        self._built: dict[str, _Built] = {}
        self._versions: dict[str, int] = {}
        self._building: dict[str, threading.Lock] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _exists(self, collection: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = ?", (_table(collection),)
        ).fetchone()
        return row is not None

    def _changed(self, collection: str) -> None:
        self._versions[collection] = self._versions.get(collection, 0) + 1

    # --- writes (the index worker) -------------------------------------------------------
    def add(self, collection: str, rows: Sequence[tuple[str, str]]) -> None:
        """Index (point id, text) pairs; a point already there gets the new text."""
        if not rows:
            return
        table = _table(collection)
        with self._tx() as db:
            db.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (point TEXT PRIMARY KEY, text TEXT)')
            db.executemany(f'INSERT OR REPLACE INTO "{table}" VALUES (?, ?)', rows)
            self._changed(collection)

    def delete(self, collection: str, points: Sequence[str]) -> None:
        if not points:
            return
        with self._tx() as db:
            if self._exists(collection):
                table = _table(collection)
                db.executemany(f'DELETE FROM "{table}" WHERE point = ?', [(p,) for p in points])
                self._changed(collection)

    def drop(self, collection: str) -> None:
        with self._tx() as db:
            db.execute(f'DROP TABLE IF EXISTS "{_table(collection)}"')
            self._built.pop(collection, None)
            self._changed(collection)

    # --- reads ---------------------------------------------------------------------------
    def count(self, collection: str) -> int:
        with self._lock:
            if not self._exists(collection):
                return 0
            return int(
                self._db.execute(f'SELECT COUNT(*) FROM "{_table(collection)}"').fetchone()[0]
            )

    def points(self, collection: str) -> set[str]:
        with self._lock:
            if not self._exists(collection):
                return set()
            return {
                str(r[0]) for r in self._db.execute(f'SELECT point FROM "{_table(collection)}"')
            }

    def search(self, collection: str, query: str, limit: int) -> list[tuple[str, float]]:
        """The best `limit` chunks for `query` by BM25: (point id, score), best first;
        nothing for a collection with no lexical index (yet)."""
        built = self._current(collection)
        return built.search(query, limit) if built is not None else []

    def refresh(self, collection: str) -> None:
        """Rebuild now if the collection changed (the index worker, at the end of a job)."""
        self._current(collection, force=True)

    def _current(self, collection: str, *, force: bool = False) -> _Built | None:
        version = self._versions.get(collection, 0)
        built = self._built.get(collection)
        if built is not None and (
            built.version == version
            or (not force and time.monotonic() - built.built_at < REBUILD_EVERY)
        ):
            return built
        with self._building.setdefault(collection, threading.Lock()):  # one build at a time
            built = self._built.get(collection)
            if built is not None and built.version == version:
                return built
            with self._lock:
                if not self._exists(collection):
                    return None
                rows = self._db.execute(
                    f'SELECT point, text FROM "{_table(collection)}"'
                ).fetchall()
            fresh = _build([(str(p), str(t)) for p, t in rows], version)
            self._built[collection] = fresh
            return fresh
