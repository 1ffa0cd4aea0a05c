"""Index jobs and the document ledger, in SQLite under DATA_DIR: accepted work is written
here before it is acknowledged, so a crash or an outage never loses it.

    jobs        one row per accepted job: collection, state, counters, error
    job_files   the job's work list, one row per file to index or source to remove,
                each pending → done | failed
    documents   the ledger: per (collection, source) the file's hash, the ids of its
                chunks in order, as written to Qdrant, and the pipeline that made them
                (`Chunker.signature`; NULL before rag recorded it) — what makes
                re-indexing an unchanged file a no-op and a changed one a diff

Job states: queued → running ⇄ waiting (a dependency is down) → done | failed | cancelled.
A job in running or waiting when the service stopped is resumed at start-up where it
left off: files already done are not done again.

All calls are synchronous and short; the service runs them on one worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ACTIVE_STATES = ("queued", "running", "waiting")
FINAL_STATES = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    waiting_for TEXT,
    error TEXT,
    chunks_added INTEGER NOT NULL DEFAULT 0,
    chunks_removed INTEGER NOT NULL DEFAULT 0,
    chunks_unchanged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS job_files (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,          -- index | remove
    source TEXT NOT NULL,
    path TEXT,                     -- where to read it (index)
    state TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,       -- JSON list, in chunk order
    updated_at REAL NOT NULL,
    PRIMARY KEY (collection, source)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, created_at);
"""


@dataclass(frozen=True, slots=True)
class WorkItem:
    seq: int
    action: str
    source: str
    path: str | None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    sha256: str
    chunk_ids: list[str]
    pipeline: str | None = None


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(documents)")}
        if "pipeline" not in columns:  # a ledger written before pipelines were recorded
            self._db.execute("ALTER TABLE documents ADD COLUMN pipeline TEXT")
        self._lock = threading.Lock()

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

    # --- jobs ----------------------------------------------------------------------------
    def create(
        self, collection: str, work: list[tuple[str, str, str | None]], job_id: str | None = None
    ) -> str:
        """Persist a job and its work list (action, source, path) in one transaction."""
        job_id = job_id or uuid.uuid4().hex
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, collection, state, created_at, updated_at)"
                " VALUES (?, ?, 'queued', ?, ?)",
                (job_id, collection, now, now),
            )
            db.executemany(
                "INSERT INTO job_files (job_id, seq, action, source, path) VALUES (?, ?, ?, ?, ?)",
                [(job_id, seq, a, s, p) for seq, (a, s, p) in enumerate(work)],
            )
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            return self._describe(row)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
            return [self._describe(row) for row in rows]

    def _describe(self, row: sqlite3.Row) -> dict[str, Any]:
        counts = dict(
            self._db.execute(
                "SELECT state, COUNT(*) FROM job_files WHERE job_id = ? GROUP BY state",
                (row["id"],),
            ).fetchall()
        )
        errors = self._db.execute(
            "SELECT source, error FROM job_files WHERE job_id = ? AND state = 'failed'"
            " ORDER BY seq LIMIT 20",
            (row["id"],),
        ).fetchall()
        total = sum(counts.values())
        return {
            "id": row["id"],
            "collection": row["collection"],
            "state": row["state"],
            "files_total": total,
            "files_done": counts.get("done", 0) + counts.get("failed", 0),
            "files_failed": counts.get("failed", 0),
            "chunks_added": row["chunks_added"],
            "chunks_removed": row["chunks_removed"],
            "chunks_unchanged": row["chunks_unchanged"],
            "waiting_for": row["waiting_for"],
            "error": row["error"],
            "failures": [{"source": e["source"], "error": e["error"]} for e in errors],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "finished_at": row["finished_at"],
        }

    def next_active(self) -> str | None:
        """The oldest job that is not finished (resumed jobs first, then queued ones)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM jobs WHERE state IN ('running', 'waiting', 'queued')"
                " ORDER BY state = 'queued', created_at LIMIT 1"
            ).fetchone()
            return None if row is None else str(row["id"])

    def active_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE state IN ('queued','running','waiting')"
                " GROUP BY state"
            ).fetchall()
        return {state: 0 for state in ACTIVE_STATES} | dict(rows)

    def set_state(
        self, job_id: str, state: str, *, waiting_for: str | None = None, error: str | None = None
    ) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = ?, waiting_for = ?, error = COALESCE(?, error),"
                " updated_at = ?, finished_at = CASE WHEN ? IN ('done','failed','cancelled')"
                " THEN ? ELSE finished_at END WHERE id = ?",
                (state, waiting_for, error, now, state, now, job_id),
            )

    def state_of(self, job_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else str(row["state"])

    def collection_of(self, job_id: str) -> str:
        with self._lock:
            row = self._db.execute("SELECT collection FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return str(row["collection"])

    def cancel_collection(self, collection: str) -> list[str]:
        """Cancel the unfinished jobs of `collection`; their ids."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE collection = ?"
                " AND state IN ('queued','running','waiting')",
                (collection,),
            ).fetchall()
            db.execute(
                "UPDATE jobs SET state = 'cancelled', error = 'the collection was deleted',"
                " updated_at = ?, finished_at = ? WHERE collection = ?"
                " AND state IN ('queued','running','waiting')",
                (now, now, collection),
            )
        return [str(row["id"]) for row in rows]

    # --- the work list -------------------------------------------------------------------
    def pending(self, job_id: str) -> list[WorkItem]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, action, source, path FROM job_files"
                " WHERE job_id = ? AND state = 'pending' ORDER BY seq",
                (job_id,),
            ).fetchall()
        return [WorkItem(r["seq"], r["action"], r["source"], r["path"]) for r in rows]

    def file_failed(self, job_id: str, seq: int, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE job_files SET state = 'failed', error = ? WHERE job_id = ? AND seq = ?",
                (error, job_id, seq),
            )
            db.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (time.time(), job_id))

    # --- the ledger ----------------------------------------------------------------------
    def ledger(self, collection: str, source: str) -> LedgerEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, chunk_ids, pipeline FROM documents"
                " WHERE collection = ? AND source = ?",
                (collection, source),
            ).fetchone()
        if row is None:
            return None
        return LedgerEntry(row["sha256"], list(orjson.loads(row["chunk_ids"])), row["pipeline"])

    def sources(self, collection: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source FROM documents WHERE collection = ? ORDER BY source", (collection,)
            ).fetchall()
        return [str(r["source"]) for r in rows]

    def file_done(
        self,
        job_id: str,
        seq: int,
        collection: str,
        source: str,
        entry: LedgerEntry | None,
        *,
        added: int = 0,
        removed: int = 0,
        unchanged: int = 0,
    ) -> None:
        """One file finished: its ledger entry (None: forgotten), its counters, its state,
        in one transaction."""
        now = time.time()
        with self._tx() as db:
            if entry is None:
                db.execute(
                    "DELETE FROM documents WHERE collection = ? AND source = ?",
                    (collection, source),
                )
            else:
                db.execute(
                    "INSERT INTO documents"
                    " (collection, source, sha256, chunk_ids, pipeline, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (collection, source) DO UPDATE SET"
                    " sha256 = excluded.sha256, chunk_ids = excluded.chunk_ids,"
                    " pipeline = excluded.pipeline, updated_at = excluded.updated_at",
                    (
                        collection,
                        source,
                        entry.sha256,
                        orjson.dumps(entry.chunk_ids),
                        entry.pipeline,
                        now,
                    ),
                )
            db.execute(
                "UPDATE job_files SET state = 'done' WHERE job_id = ? AND seq = ?", (job_id, seq)
            )
            db.execute(
                "UPDATE jobs SET chunks_added = chunks_added + ?,"
                " chunks_removed = chunks_removed + ?, chunks_unchanged = chunks_unchanged + ?,"
                " updated_at = ? WHERE id = ?",
                (added, removed, unchanged, now, job_id),
            )

    def forget_collection(self, collection: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM documents WHERE collection = ?", (collection,)).rowcount

    def document_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT collection, COUNT(*) FROM documents GROUP BY collection"
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}
