"""A rag service under test: its URL, its in-process object, and the steps tests repeat."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from localsuite.rag.service import RagService
from localsuite.testing.servers import wait_until

ASYNC = {"Prefer": "respond-async"}  # the job at once, not the result


@dataclass
class Rag:
    url: str
    service: RagService
    documents: Path
    client: httpx.Client

    def index(self, collection: str, *paths: Path | str, within: float = 120) -> dict[str, Any]:
        body = {"paths": [str(p) for p in paths]} if paths else None
        accepted = self.client.post(
            "/index", params={"collection": collection}, json=body, headers=ASYNC
        )
        assert accepted.status_code == 202, accepted.text
        return self.wait_job(accepted.json()["job"]["id"], within)

    def wait_job(self, job_id: str, within: float = 120) -> dict[str, Any]:
        job: dict[str, Any] = {}

        def finished() -> bool:
            nonlocal job
            job = self.client.get(f"/jobs/{job_id}").json()
            return job["state"] in ("done", "failed", "cancelled")

        wait_until(finished, within, f"index job {job_id}")
        return job

    def ledger(self, collection: str) -> dict[str, list[str]]:
        """Per source, the ids of its chunks as the service's ledger holds them."""
        jobs = self.service.jobs
        entries = {source: jobs.ledger(collection, source) for source in jobs.sources(collection)}
        return {source: entry.chunk_ids for source, entry in entries.items() if entry}

    def points(self, collection: str) -> int:
        for item in self.client.get("/collections").json()["collections"]:
            if item["name"] == collection:
                return int(item["points"])
        return 0
