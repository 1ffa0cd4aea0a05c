"""Retrieval quality of rag against two baselines, on real documentation corpora, in one run.

Question sets (`bench/questions/*.json`, each written and committed before any tuning,
each question with the one page that answers it), over what Debian packages ship:

  git_doc     72 questions over git's manual (`apt-get install git-doc`: 242 HTML
              pages under /usr/share/doc/git-doc, 8.8 MiB; man pages and guides)
  flask_doc   64 questions over Flask's manual (`apt-get install python-flask-doc`:
              77 Sphinx HTML pages, 4 MiB; prose, API reference, code)

Every set runs by default, one after the other; `--questions FILE` runs one.

Pipelines, all with the same bundled all-MiniLM-L6-v2 served by the embedding service
and the same text (rag's HTML loader, `rag.loaders.load`):

  rag         the rag service itself (real processes, embedded Qdrant): the pages indexed
              by `POST /index`, each question asked by `POST /query` with
              `generate: false, topk: 4`
  langchain   what a user builds in ten lines: LangChain's default splitter (1,000
              characters, 200 overlap; `bench/rag_baselines.py`), the same embeddings,
              cosine similarity, top 4
  bm25        Okapi BM25 alone over the same 1,000-character chunks, top 4

Per pipeline: recall@4 (the answering page is the source of one of the 4 chunks), MRR
(1 / rank of the first of the 4 chunks from the answering page, 0 if none), query
latency (rag: wall time of `POST /query` seen by this client), indexing throughput in
source bytes/s (HTML bytes of the pages / time to make them searchable: chunk counts
differ between pipelines, bytes do not).

Prints a table and writes bench/results/rag_quality.json.

    .venv/bin/python bench/rag_quality.py [--only rag] [--questions F] [--set NAME=VALUE]

`rag (dense)` and `rag (lexical)` are the same index asked with one ranking alone, `rag
(any per page)` without the default limit of one chunk per document in the top 4.
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
import numpy as np

from localsuite.rag.loaders import load
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.processes import ServiceProcess
from localsuite.testing.servers import serve_in_thread
from rag_baselines import Bm25, recursive_split

ROOT = Path(__file__).resolve().parent.parent
QUESTION_SETS = sorted((ROOT / "bench" / "questions").glob("*.json"))
TOPK = 4
EMBED_BATCH = 64


def load_questions(path: Path) -> tuple[Path, list[str], list[dict[str, str]]]:
    spec = json.loads(path.read_text())
    root = Path(spec["corpus"]["root"])
    if not root.is_dir():
        package = spec["corpus"]["debian_package"]
        sys.exit(f"{root} is missing: install the corpus with `apt-get install {package}`")
    files = sorted(str(p) for p in root.glob(spec["corpus"]["pattern"]) if p.is_file())
    return root, files, spec["questions"]


def score(ranked_docs: list[list[str]], questions: list[dict[str, str]]) -> dict[str, Any]:
    hits, reciprocal, misses = 0, 0.0, []
    for docs, question in zip(ranked_docs, questions, strict=True):
        if question["doc"] in docs[:TOPK]:
            hits += 1
            reciprocal += 1 / (docs.index(question["doc"]) + 1)
        else:
            misses.append({"q": question["q"], "doc": question["doc"], "got": docs[:TOPK]})
    n = len(questions)
    return {"recall_at_4": hits / n, "mrr": reciprocal / n, "misses": misses}


def latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


COLLECTION = "bench"


def ask_all(
    client: httpx.Client, root: Path, questions: list[dict[str, str]], extra: dict[str, Any]
) -> tuple[list[list[str]], list[float], list[float]]:
    ranked, wall, service = [], [], []
    for question in questions:
        body: dict[str, Any] = {"query": question["q"], "collection": COLLECTION,
                                "topk": TOPK, "generate": False, **extra}  # fmt: skip
        began = time.perf_counter()
        answer = client.post("/query", json=body)
        wall.append((time.perf_counter() - began) * 1000)
        answer.raise_for_status()
        data = answer.json()
        service.append(data["retrieval_ms"])
        ranked.append([str(Path(c["source"]).relative_to(root)) for c in data["context"]])
    return ranked, wall, service


def run_rag(
    url: str, root: Path, files: list[str], questions: list[dict[str, str]], old_api: bool
) -> dict[str, Any]:
    """rag's figures; today's rag also by one ranking alone (`retrieval`), uncached."""
    with httpx.Client(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        accepted = client.post(
            "/index",
            params={"collection": COLLECTION},
            json={"paths": files},
            headers={"Prefer": "respond-async"},
        )
        if accepted.status_code not in (200, 202):
            sys.exit(f"POST /index answered {accepted.status_code}: {accepted.text}")
        job = accepted.json()["job"]
        while job["state"] not in ("done", "failed", "cancelled"):
            time.sleep(0.25)
            job = client.get(f"/jobs/{job['id']}").json()
        seconds = time.perf_counter() - started
        if job["state"] != "done" or job["files_failed"]:
            sys.exit(f"index job ended {job['state']}: {job['error']} {job['failures']}")
        for warm in questions[:5]:
            client.post("/query", json={"query": warm["q"], "collection": COLLECTION,
                                        "topk": 1, "generate": False})  # fmt: skip

        uncached = {} if old_api else {"cache": False}
        ranked, wall, service = ask_all(client, root, questions, uncached)
        out = {
            "rag": {
                "chunks": job["chunks_added"],
                "index_seconds": seconds,
                "query": latency(wall),
                "query_in_service_p50_ms": statistics.median(service),
                "ranked": ranked,
            }
        }
        variants = {f"rag ({mode})": {"retrieval": mode} for mode in ("dense", "lexical")}
        variants["rag (any per page)"] = {"per_source": 0}
        for name, asked in () if old_api else variants.items():
            ranked, wall, service = ask_all(client, root, questions, {**uncached, **asked})
            out[name] = {
                **out["rag"], "query": latency(wall), "ranked": ranked,
                "query_in_service_p50_ms": statistics.median(service),
            }  # fmt: skip
    return out


def embed(client: httpx.Client, texts: list[str]) -> np.ndarray:
    vectors = []
    for start in range(0, len(texts), EMBED_BATCH):
        answer = client.post("/embed", json={"texts": texts[start : start + EMBED_BATCH]})
        answer.raise_for_status()
        vectors.extend(answer.json()["embeddings"])
    matrix = np.asarray(vectors, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def run_baselines(
    embedding_url: str, root: Path, files: list[str], questions: list[dict[str, str]]
) -> dict[str, Any]:
    started = time.perf_counter()
    chunks: list[str] = []
    owners: list[str] = []
    for file in files:
        for piece in recursive_split(load(Path(file)).text):
            chunks.append(piece)
            owners.append(str(Path(file).relative_to(root)))
    split_seconds = time.perf_counter() - started
    bm25 = Bm25(chunks)
    bm25_seconds = time.perf_counter() - started
    out: dict[str, Any] = {}
    with httpx.Client(base_url=embedding_url, timeout=600) as client:
        matrix = embed(client, chunks)
        dense_seconds = time.perf_counter() - started - (bm25_seconds - split_seconds)
        ranked, wall = [], []
        for question in questions:
            began = time.perf_counter()
            vector = embed(client, [question["q"]])[0]
            best = np.argsort(-(matrix @ vector))[:TOPK]
            wall.append((time.perf_counter() - began) * 1000)
            ranked.append([owners[i] for i in best])
        out["langchain"] = {"chunks": len(chunks), "index_seconds": dense_seconds,
                            "query": latency(wall), "ranked": ranked}  # fmt: skip
    ranked, wall = [], []
    for question in questions:
        began = time.perf_counter()
        best = bm25.top(question["q"], TOPK)
        wall.append((time.perf_counter() - began) * 1000)
        ranked.append([owners[i] for i in best])
    out["bm25"] = {"chunks": len(chunks), "index_seconds": bm25_seconds,
                   "query": latency(wall), "ranked": ranked}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["rag", "baselines"], help="run one side only")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a setting for rag"
    )
    parser.add_argument(
        "--questions", type=Path, action="append", help="one question set (default: all)"
    )
    parser.add_argument(
        "--old-api", action="store_true", help="rag before `retrieval` and `cache` existed"
    )
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    sets = {path.stem: run_set(path, args.only, overrides, args.old_api)
            for path in args.questions or QUESTION_SETS}  # fmt: skip
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "rag_quality.json").write_text(json.dumps(sets, indent=2))


def run_set(path: Path, only: str | None, overrides: dict[str, str], old_api: bool) -> Any:
    """Every pipeline over one question set, with fresh services; printed and returned."""
    root, files, questions = load_questions(path)
    source_bytes = sum(Path(f).stat().st_size for f in files)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rag-quality-") as tmp:
        work = Path(tmp)
        logs = work / "logs"
        env = {"EMBEDDING_CACHE_DIR": str(work / "cache"), "LOG_LEVEL": "WARNING"}
        embedding = ServiceProcess("embedding", logs, env).start()
        with serve_in_thread(FakeUpstream("stub").app()) as llm:
            gateway = ServiceProcess(
                "api-gateway", logs,
                {"INFERENCE_CHAT_URL": f"{llm}/v1", "INFERENCE_CODE_URL": f"{llm}/v1", **env},
            )  # fmt: skip
            rag = ServiceProcess(
                "rag", logs,
                {**env, "DATA_DIR": str(work / "data"), "EMBEDDING_URL": embedding.url,
                 "API_GATEWAY_URL": gateway.url, "RAG_INDEX_ROOTS": str(root), **overrides},
            )  # fmt: skip
            try:
                embedding.wait_ready()
                if only != "baselines":
                    gateway.start().wait_ready()
                    rag.start().wait_ready()
                    results |= run_rag(rag.url, root, files, questions, old_api)
                    rag.stop()
                if only != "rag":
                    results |= run_baselines(embedding.url, root, files, questions)
            finally:
                for service in (rag, gateway, embedding):
                    service.stop()
    out: dict[str, Any] = {
        "set": path.stem,
        "corpus": {"files": len(files), "source_bytes": source_bytes},
        "questions": len(questions),
        "settings": overrides,
        "pipelines": {},
    }
    for name, result in results.items():
        ranked = result.pop("ranked")
        result["source_bytes_per_s"] = source_bytes / result["index_seconds"]
        out["pipelines"][name] = {**score(ranked, questions), **result}
    report(out)
    return out


def report(out: dict[str, Any]) -> None:
    corpus = out["corpus"]
    settings = out["settings"] or "default"
    print(f"\n{out['set']}: {out['questions']} questions over {corpus['files']} pages "
          f"({corpus['source_bytes'] / 2**20:.1f} MiB); settings {settings}")  # fmt: skip
    print(f"{'pipeline':<20} {'recall@4':>8} {'MRR':>6} {'chunks':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'index KiB/s':>11}")  # fmt: skip
    for name, p in out["pipelines"].items():
        print(f"{name:<20} {p['recall_at_4']:>8.3f} {p['mrr']:>6.3f} {p['chunks']:>7} "
              f"{p['query']['p50_ms']:>7.1f} {p['query']['p99_ms']:>7.1f} "
              f"{p['source_bytes_per_s'] / 1024:>11.1f}")  # fmt: skip
    for name, p in out["pipelines"].items():
        for miss in p["misses"]:
            print(f"  {name} missed {miss['doc']}: {miss['q'][:70]} -> {miss['got']}")


if __name__ == "__main__":
    sys.exit(main())
