"""Gateway overhead, side by side in one run.

Measures, against the same backend in the same run:

  direct        the backend itself
  gateway       localsuite's api-gateway in front of it
  litellm       LiteLLM's proxy in front of it (if bench/.venv-litellm exists)

for (a) a minimal OpenAI-shaped stub (what the gateway itself costs) and (b) a real
llama-server with the bundled model and `max_tokens: 1`; then throughput at concurrency
1/16/64 against the stub, and the gateway's RSS before and after the load. Prints a
table and writes bench/results/gateway_overhead.json.

    .venv/bin/python bench/gateway_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import psutil

from localsuite.inference.binary import find_llama_server
from localsuite.inference.registry import bundled_model
from localsuite.testing.servers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
LITELLM = ROOT / "bench" / ".venv-litellm" / "bin" / "litellm"
BENCH_KEY = "sk-bench-local"  # LiteLLM refuses to start without one; the others ignore it
HEADERS = {"Authorization": f"Bearer {BENCH_KEY}"}
BODY = {"model": "chat-7b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


@contextmanager
def process(argv: list[str], health: str, env: dict[str, str] | None = None) -> Iterator[int]:
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_healthy(health, proc, 120)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def stub(port: int) -> list[str]:
    code = (
        "import uvicorn; from localsuite.testing.fake_upstream import FakeUpstream; "
        f"uvicorn.run(FakeUpstream(burst=True).app(), host='127.0.0.1', port={port}, "
        "log_level='warning', loop='uvloop', http='httptools', access_log=False)"
    )
    return [sys.executable, "-c", code]


def gateway(port: int, backend: str) -> tuple[list[str], dict[str, str]]:
    env = {
        "API_GATEWAY_PORT": str(port),
        "INFERENCE_CHAT_URL": f"{backend}/v1",
        "INFERENCE_CODE_URL": f"{backend}/v1",
        "LOG_LEVEL": "WARNING",
    }
    return [sys.executable, "-m", "localsuite", "serve", "api-gateway"], env


def litellm(port: int, backend: str, workdir: Path) -> list[str] | None:
    if not LITELLM.exists():
        return None
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: chat-7b\n    litellm_params:\n"
        f"      model: openai/chat-7b\n      api_base: {backend}/v1\n      api_key: none\n"
        f"general_settings:\n  master_key: {BENCH_KEY}\n"
    )
    return [str(LITELLM), "--config", str(config), "--port", str(port), "--num_workers", "1"]


async def latencies(url: str, count: int, concurrency: int) -> tuple[list[float], float]:
    """Per-request latency in ms and throughput (req/s) for `count` requests."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def one() -> float:
            started = time.perf_counter()
            async with session.post(url, json=BODY) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}")
            return (time.perf_counter() - started) * 1000

        for _ in range(min(50, count)):  # warm-up, not counted
            await one()
        results: list[float] = []
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                results.append(await one())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return results, count / elapsed


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "mean": statistics.fmean(ordered),
    }


def measure_latency(targets: dict[str, str], count: int) -> dict[str, dict[str, float]]:
    # Interleave rounds so drift on a shared machine hits every target alike.
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(4):
        for name, url in targets.items():
            samples[name] += asyncio.run(latencies(url, count // 4, 1))[0]
    return {name: summary(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 400 if args.quick else 2000
    out: dict[str, object] = {"cpu": os.cpu_count(), "quick": args.quick}
    workdir = ROOT / "bench" / "results"
    workdir.mkdir(parents=True, exist_ok=True)

    s_port, g_port, l_port = free_port(), free_port(), free_port()
    backend = f"http://127.0.0.1:{s_port}"
    path = "/v1/chat/completions"
    g_argv, g_env = gateway(g_port, backend)
    with (
        process(stub(s_port), f"{backend}/health"),
        process(g_argv, f"http://127.0.0.1:{g_port}/health", g_env) as g_pid,
    ):
        targets = {"direct": backend + path, "gateway": f"http://127.0.0.1:{g_port}{path}"}
        # The same minimal proxy with each client: what the client choice alone costs.
        proxies = []
        for client in ("aiohttp", "httpx"):
            p_port = free_port()
            argv = [sys.executable, str(ROOT / "bench" / "forward_proxy.py"), client, str(p_port),
                    backend]  # fmt: skip
            proxies.append(process(argv, f"http://127.0.0.1:{p_port}/health"))
            proxies[-1].__enter__()
            targets[f"proxy-{client}"] = f"http://127.0.0.1:{p_port}{path}"
        l_argv = litellm(l_port, backend, workdir)
        litellm_ctx = (
            process(l_argv, f"http://127.0.0.1:{l_port}/health/liveliness") if l_argv else None
        )
        try:
            if litellm_ctx is not None:
                litellm_ctx.__enter__()
                targets["litellm"] = f"http://127.0.0.1:{l_port}{path}"
        except (RuntimeError, TimeoutError) as exc:
            print(f"litellm comparator unavailable: {exc}")
            litellm_ctx = None
        try:
            rss_before = psutil.Process(g_pid).memory_info().rss
            out["stub_latency_ms"] = measure_latency(targets, count)
            throughput: dict[str, dict[int, float]] = {name: {} for name in targets}
            for concurrency in (1, 16, 64):
                for name, url in targets.items():
                    n = count if concurrency > 1 else count // 2
                    throughput[name][concurrency] = asyncio.run(latencies(url, n, concurrency))[1]
            out["stub_throughput_rps"] = throughput
            out["gateway_rss_mb"] = {
                "before": rss_before / 2**20,
                "after": psutil.Process(g_pid).memory_info().rss / 2**20,
            }
        finally:
            if litellm_ctx is not None:
                litellm_ctx.__exit__(None, None, None)
            for proxy in proxies:
                proxy.__exit__(None, None, None)

    model = bundled_model()
    if model is not None:
        ll_port, g2_port = free_port(), free_port()
        llama = f"http://127.0.0.1:{ll_port}"
        argv = [str(find_llama_server()), "--model", str(model.path), "--port", str(ll_port)]
        argv += ["--threads", "1", "--parallel", "1", "--ctx-size", "1024", "--no-webui"]
        g2_argv, g2_env = gateway(g2_port, llama)
        with (
            process(argv, f"{llama}/health"),
            process(g2_argv, f"http://127.0.0.1:{g2_port}/health", g2_env),
        ):
            real = {"direct": llama + path, "gateway": f"http://127.0.0.1:{g2_port}{path}"}
            out["llama_latency_ms"] = measure_latency(real, count // 4)

    report(out)
    (workdir / "gateway_overhead.json").write_text(json.dumps(out, indent=2))


def report(out: dict[str, object]) -> None:
    for key in ("stub_latency_ms", "llama_latency_ms"):
        table = out.get(key)
        if not isinstance(table, dict):
            continue
        print(f"\n{key}: target p50 p99 mean (added vs direct)")
        direct = table["direct"]
        for name, row in table.items():
            added = {k: row[k] - direct[k] for k in ("p50", "p99")}
            print(f"  {name:14} {row['p50']:7.3f} {row['p99']:7.3f} {row['mean']:7.3f}"
                  f"   (+{added['p50']:.3f} p50, +{added['p99']:.3f} p99)")  # fmt: skip
    throughput = out.get("stub_throughput_rps")
    if isinstance(throughput, dict):
        print("\nstub throughput, requests/s at concurrency 1 / 16 / 64")
        for name, row in throughput.items():
            print(f"  {name:14} " + " / ".join(f"{row[c]:7.0f}" for c in (1, 16, 64)))
    print(f"\ngateway RSS (MiB): {out.get('gateway_rss_mb')}")


if __name__ == "__main__":
    main()
