"""RAG throughput and latency, measured on real processes in one run.

Starts the embedding service (bundled all-MiniLM-L6-v2), a gateway over a stub LLM
(generation is not measured here), and the rag service with embedded Qdrant, then:

  indexing     source bytes/s and chunks/s of an index job over a generated corpus at the
               default chunk size: a few thousand chunks (`--quick`: a few
               hundred), and the same corpus re-indexed unchanged
  query        latency of `POST /query` with `generate: false` (embed the question +
               search) against a collection of 10,000 chunks (`--quick`: 2,000), p50/p99
               over sequential queries, and the rag service's own embedding and search times
  memory       RSS of the embedding, rag and gateway processes at the end

Prints a table and writes bench/results/rag.json.

    .venv/bin/python bench/rag.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from localsuite.testing.documents import write_generated_corpus
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.processes import ServiceProcess
from localsuite.testing.servers import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "Where does the sailor keep the copper lantern?",
    "What did the builder say about the granite bridge?",
    "Which market sells the falcon?",
    "Why was the winter harbour closed?",
    "Who repaired the furnace in the north tower?",
]


def rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def run_job(client: httpx.Client, collection: str, paths: list[str]) -> dict[str, Any]:
    accepted = client.post(
        "/index",
        params={"collection": collection},
        json={"paths": paths},
        headers={"Prefer": "respond-async"},
    )
    accepted.raise_for_status()
    job_id = accepted.json()["job"]["id"]
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            if job["state"] != "done":
                raise RuntimeError(f"index job ended {job['state']}: {job['error']}")
            return job
        if sys.stdout.isatty():
            print(f"\r  {collection}: {job['files_done']}/{job['files_total']} files, "
                  f"{job['chunks_added']} chunks", end="", flush=True)  # fmt: skip
        time.sleep(0.5)


def seconds_of(job: dict[str, Any]) -> float:
    return float(job["finished_at"] - job["created_at"])


def query_latencies(client: httpx.Client, collection: str, count: int) -> dict[str, float]:
    wall: list[float] = []
    reported: dict[str, list[float]] = {}
    for i in range(count + 10):
        body = {
            "query": QUESTIONS[i % len(QUESTIONS)],
            "collection": collection,
            "generate": False,
            "cache": False,  # the questions repeat: measure retrieval, not the query cache
        }
        started = time.perf_counter()
        answer = client.post("/query", json=body)
        elapsed = (time.perf_counter() - started) * 1000
        answer.raise_for_status()
        if i >= 10:  # warm-up not counted
            wall.append(elapsed)
            for name, value in answer.json()["timings"].items():
                reported.setdefault(name, []).append(value)
    wall.sort()
    return {
        "p50_ms": statistics.median(wall),
        "p99_ms": wall[min(len(wall) - 1, int(len(wall) * 0.99))],
        "mean_ms": statistics.fmean(wall),
        **{f"service_{name}_p50": statistics.median(v) for name, v in reported.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller corpora, fewer queries")
    args = parser.parse_args()
    # ~4.5 chunks of 512 tokens (the old default) or ~20 of 128 per indexed file; ~45 chunks
    # of 48 tokens per big file
    index_files, big_files, queries = (30, 45, 50) if args.quick else (650, 222, 300)

    out: dict[str, Any] = {"quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench-rag-") as tmp:
        work = Path(tmp)
        documents = work / "data" / "documents"
        write_generated_corpus(documents / "index", files=index_files, paragraphs=40)
        write_generated_corpus(documents / "big", files=big_files, paragraphs=40, seed=11)
        logs = work / "logs"
        env = {"EMBEDDING_CACHE_DIR": str(work / "cache"), "LOG_LEVEL": "WARNING"}
        embedding = ServiceProcess("embedding", logs, env).start()
        with serve_in_thread(FakeUpstream("stub").app()) as llm:
            gateway = ServiceProcess(
                "api-gateway",
                logs,
                {"INFERENCE_CHAT_URL": f"{llm}/v1", "INFERENCE_CODE_URL": f"{llm}/v1", **env},
            ).start()
            rag_env = {
                **env,
                "DATA_DIR": str(work / "data"),
                "EMBEDDING_URL": embedding.url,
                "API_GATEWAY_URL": gateway.url,
            }
            small_chunks = {**rag_env, "RAG_CHUNK_SIZE": "48", "RAG_CHUNK_OVERLAP": "8"}
            rag = ServiceProcess("rag", logs, rag_env)
            rag_small = ServiceProcess(
                "rag", logs, {**small_chunks, "DATA_DIR": str(work / "data2")}
            )
            try:
                embedding.wait_ready()
                gateway.wait_ready()
                rag.start().wait_ready()
                with httpx.Client(base_url=rag.url, timeout=120) as client:
                    job = run_job(client, "bench", [str(documents / "index")])
                    again = run_job(client, "bench", [str(documents / "index")])
                print()
                source_bytes = sum(f.stat().st_size for f in (documents / "index").rglob("*"))
                out["indexing"] = {
                    "files": job["files_total"],
                    "source_bytes": source_bytes,
                    "source_bytes_per_s": source_bytes / seconds_of(job),
                    "chunks": job["chunks_added"],
                    "seconds": seconds_of(job),
                    "chunks_per_s": job["chunks_added"] / seconds_of(job),
                    "unchanged_reindex_seconds": seconds_of(again),
                    "unchanged_reindex_writes": again["chunks_added"] + again["chunks_removed"],
                }
                rag.stop()

                # 10k chunks of 48 tokens: the size a query searches, reached in seconds.
                (work / "data2").mkdir()
                (work / "data2" / "documents").symlink_to(documents)
                rag_small.start().wait_ready()
                with httpx.Client(base_url=rag_small.url, timeout=120) as client:
                    target = 2_000 if args.quick else 10_000
                    filled = run_job(client, "big", [str(documents / "big")])
                    print()
                    out["query"] = {"chunks": filled["chunks_added"], "target_chunks": target}
                    out["query"] |= query_latencies(client, "big", queries)
                    out["small_chunk_indexing_chunks_per_s"] = filled["chunks_added"] / seconds_of(
                        filled
                    )
                out["rss_mb"] = {
                    "embedding": rss_mb(embedding.proc.pid),  # type: ignore[union-attr]
                    "rag": rss_mb(rag_small.proc.pid),  # type: ignore[union-attr]
                    "api-gateway": rss_mb(gateway.proc.pid),  # type: ignore[union-attr]
                }
            finally:
                for service in (rag_small, rag, gateway, embedding):
                    service.stop()
    report(out)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "rag.json").write_text(json.dumps(out, indent=2))


def report(out: dict[str, Any]) -> None:
    index, query = out["indexing"], out["query"]
    print(f"\nindexing (default chunk size): {index['chunks']} chunks from "
          f"{index['files']} files in {index['seconds']:.1f} s = {index['chunks_per_s']:.1f} "
          f"chunks/s, {index['source_bytes_per_s'] / 1024:.1f} KiB/s of source")  # fmt: skip
    print(f"  re-index unchanged: {index['unchanged_reindex_seconds']:.2f} s, "
          f"{index['unchanged_reindex_writes']} chunks written")  # fmt: skip
    print(f"  (48-token chunks: {out['small_chunk_indexing_chunks_per_s']:.1f} chunks/s)")
    print(f"query, generate=false, {query['chunks']} chunks: p50 {query['p50_ms']:.1f} ms, "
          f"p99 {query['p99_ms']:.1f} ms, mean {query['mean_ms']:.1f} ms "
          f"(in the service, p50: embedding {query['service_embedding_ms_p50']:.1f} ms, "
          f"search {query['service_search_ms_p50']:.1f} ms)")  # fmt: skip
    print("RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in out["rss_mb"].items()))


if __name__ == "__main__":
    sys.exit(main())
