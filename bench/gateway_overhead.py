"""Gateway overhead, side by side in one run.

Against the same backend, in the same run, with requests in interleaved rounds (so that
drift on a shared machine hits every target alike):

  direct        the backend itself
  gateway       localsuite's api-gateway in front of it (one process, one worker)
  proxy         the smallest aiohttp forwarding proxy (`bench/forward_proxy.py`): the
                floor any Python proxy on this stack pays
  litellm       LiteLLM's proxy in front of it (if bench/.venv-litellm exists)

Backends: a minimal OpenAI-shaped stub (what the gateway itself costs) and a real
llama-server with the bundled model (`max_tokens: 1`). Measured, five rounds each, with
min / median / max over rounds of what the gateway adds:

- plain requests: p50 and p99 latency;
- streams: time to first token (the first content event) and to the end;
- throughput at concurrency 1 / 16 / 64 (stub);
- with `--profile`: where the gateway's CPU goes at concurrency 16 (py-spy), by part of
  the stack: HTTP server, HTTP client, framework, our engine, SSE relay, metrics.

Prints tables; raw figures go to bench/results/gateway_overhead.json.

    .venv/bin/python bench/gateway_overhead.py [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from localsuite.inference.binary import find_llama_server
from localsuite.inference.registry import bundled_model
from localsuite.testing.servers import free_port, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
LITELLM = ROOT / "bench" / ".venv-litellm" / "bin" / "litellm"
BENCH_KEY = "sk-bench-local"  # LiteLLM refuses to start without one; the others ignore it
HEADERS = {"Authorization": f"Bearer {BENCH_KEY}"}
PATH = "/v1/chat/completions"
BODY = {"model": "chat-7b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
STREAM_BODY = {**BODY, "max_tokens": 8, "stream": True}
ROUNDS = 5


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
        stop_process(proc)


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
        "LOCALSUITE_API_KEY": "",
        "GATEWAY_CONFIG": "",
    }
    return [sys.executable, "-m", "localsuite", "serve", "api-gateway"], env


def proxy(port: int, backend: str) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "forward_proxy.py"), "aiohttp", str(port),
            backend]  # fmt: skip


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


# --- measuring ------------------------------------------------------------------------


async def plain_run(url: str, count: int, concurrency: int) -> tuple[list[float], float]:
    """Per-request latency in ms and throughput (req/s) for `count` plain requests."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def one() -> float:
            started = time.perf_counter()
            async with session.post(url, json=BODY) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}")
            return (time.perf_counter() - started) * 1000

        for _ in range(min(30, count)):  # warm-up, not counted
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


async def stream_run(url: str, count: int) -> tuple[list[float], list[float]]:
    """Time to the first content event and to the end of the stream, in ms.

    A new connection per stream: llama-server closes one after a streamed answer."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:
        first: list[float] = []
        whole: list[float] = []
        for index in range(count + 10):
            started = time.perf_counter()
            seen = None
            async with session.post(url, json=STREAM_BODY) as response:
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}")
                async for line in response.content:
                    if seen is None and b'"content":"' in line:
                        seen = time.perf_counter()
            if index >= 10:  # warm-up, not counted
                first.append(((seen or time.perf_counter()) - started) * 1000)
                whole.append((time.perf_counter() - started) * 1000)
    return first, whole


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def rounds(targets: dict[str, str], count: int, stream: bool) -> dict[str, Any]:
    """ROUNDS interleaved rounds; per target the per-round figures, and for each one
    but `direct` what it adds over direct in the same round (min/median/max)."""
    per: dict[str, dict[str, list[float]]] = {n: collections.defaultdict(list) for n in targets}
    for _ in range(ROUNDS):
        for name, url in targets.items():
            if stream:
                first, whole = asyncio.run(stream_run(url, count))
                per[name]["ttft_p50"].append(statistics.median(first))
                per[name]["ttft_p99"].append(percentile(first, 0.99))
                per[name]["end_p50"].append(statistics.median(whole))
            else:
                samples, _ = asyncio.run(plain_run(url, count, 1))
                per[name]["p50"].append(statistics.median(samples))
                per[name]["p99"].append(percentile(samples, 0.99))
    out: dict[str, Any] = {}
    for name, figures in per.items():
        out[name] = {key: spread(vals) for key, vals in figures.items()}
        if name != "direct":
            out[name]["added"] = {
                key: spread([v - d for v, d in zip(vals, per["direct"][key], strict=True)])
                for key, vals in figures.items()
            }
    return out


def throughput(targets: dict[str, str], count: int) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, list[float]]] = {n: collections.defaultdict(list) for n in targets}
    for concurrency in (1, 16, 64):
        for _ in range(3):
            for name, url in targets.items():
                out[name][concurrency].append(asyncio.run(plain_run(url, count, concurrency))[1])
    return {n: {c: spread(v) for c, v in row.items()} for n, row in out.items()}


# --- where the CPU goes ---------------------------------------------------------------

PARTS = [  # (part, what a frame's file path contains); the innermost match names a sample
    ("metrics (prometheus-client)", "prometheus_client"),
    ("SSE relay and JSON (sse.py, protocols)", "localsuite/gateway/sse.py"),
    ("SSE relay and JSON (sse.py, protocols)", "localsuite/gateway/protocols"),
    ("framework (FastAPI, Starlette)", "fastapi/"),
    ("framework (FastAPI, Starlette)", "starlette/"),
    ("HTTP client (aiohttp)", "aiohttp/"),
    ("HTTP server (uvicorn)", "uvicorn/"),
    ("engine, admission, routing (localsuite)", "localsuite/"),
    ("event loop (asyncio)", "asyncio/"),
]


def profile(gateway_pid: int, url: str, seconds: int) -> dict[str, float] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not installed (pip install py-spy): no profile")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "raw.txt"
        spying = subprocess.Popen(
            [spy, "record", "-p", str(gateway_pid), "-d", str(seconds), "-r", "250", "-f",
             "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            asyncio.run(plain_run(url, 400, 16))
        spying.wait(60)
        counts: collections.Counter[str] = collections.Counter()
        for line in out.read_text().splitlines():
            stack, _, number = line.rpartition(" ")
            frames = stack.split(";")
            part = "other"
            for frame in reversed(frames):
                found = next((p for p, needle in PARTS if needle in frame), None)
                if found is not None:
                    part = found
                    break
            counts[part] += int(number)
    total = sum(counts.values()) or 1
    return {part: 100 * n / total for part, n in counts.most_common()}


# --- the run --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    count = 200 if args.quick else 1000
    out: dict[str, Any] = {"cpu": os.cpu_count(), "quick": args.quick, "rounds": ROUNDS}
    workdir = ROOT / "bench" / "results"
    workdir.mkdir(parents=True, exist_ok=True)

    s_port, g_port, p_port, l_port = (free_port() for _ in range(4))
    backend = f"http://127.0.0.1:{s_port}"
    g_argv, g_env = gateway(g_port, backend)
    with ExitStack() as stack:
        stack.enter_context(process(stub(s_port), f"{backend}/health"))
        g_pid = stack.enter_context(process(g_argv, f"http://127.0.0.1:{g_port}/health", g_env))
        stack.enter_context(process(proxy(p_port, backend), f"http://127.0.0.1:{p_port}/health"))
        targets = {"direct": backend + PATH, "gateway": f"http://127.0.0.1:{g_port}{PATH}",
                   "proxy": f"http://127.0.0.1:{p_port}{PATH}"}  # fmt: skip
        l_argv = litellm(l_port, backend, workdir)
        if l_argv is not None:
            try:
                stack.enter_context(process(l_argv, f"http://127.0.0.1:{l_port}/health/liveliness"))
                targets["litellm"] = f"http://127.0.0.1:{l_port}{PATH}"
            except (RuntimeError, TimeoutError) as exc:
                print(f"litellm comparator unavailable: {exc}")
        rss_before = psutil.Process(g_pid).memory_info().rss
        out["stub_plain_ms"] = rounds(targets, count, stream=False)
        stream_targets = {k: v for k, v in targets.items() if k != "proxy"}  # it buffers
        out["stub_stream_ms"] = rounds(stream_targets, count // 4, stream=True)
        out["stub_throughput_rps"] = throughput(targets, count)
        rss_after = psutil.Process(g_pid).memory_info().rss
        out["gateway_rss_mb"] = {"before": rss_before / 2**20, "after": rss_after / 2**20}
        if args.profile:
            out["gateway_cpu_percent"] = profile(g_pid, targets["gateway"], 10)

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
            real = {"direct": llama + PATH, "gateway": f"http://127.0.0.1:{g2_port}{PATH}"}
            out["llama_plain_ms"] = rounds(real, max(20, count // 10), stream=False)
            out["llama_stream_ms"] = rounds(real, max(10, count // 20), stream=True)

    report(out)
    (workdir / "gateway_overhead.json").write_text(json.dumps(out, indent=2))


def report(out: dict[str, Any]) -> None:
    def cell(s: dict[str, float]) -> str:
        return f"{s['median']:7.3f} [{s['min']:.3f}..{s['max']:.3f}]"

    for key in ("stub_plain_ms", "stub_stream_ms", "llama_plain_ms", "llama_stream_ms"):
        table = out.get(key)
        if not isinstance(table, dict):
            continue
        print(f"\n{key}: median over {ROUNDS} rounds [min..max]; added = vs direct, same round")
        for name, row in table.items():
            figures = "  ".join(f"{k} {cell(v)}" for k, v in row.items() if k != "added")
            print(f"  {name:8} {figures}")
            for k, v in row.get("added", {}).items():
                print(f"  {'':8}   added {k}: {cell(v)}")
    rps = out.get("stub_throughput_rps")
    if isinstance(rps, dict):
        print("\nstub throughput, requests/s at concurrency 1 / 16 / 64 (median of 3)")
        for name, row in rps.items():
            print(f"  {name:8} " + " / ".join(f"{row[c]['median']:7.0f}" for c in (1, 16, 64)))
    print(f"\ngateway RSS (MiB): {out.get('gateway_rss_mb')}")
    cpu = out.get("gateway_cpu_percent")
    if isinstance(cpu, dict):
        print("\nwhere the gateway's CPU goes at concurrency 16 (py-spy, % of samples)")
        for part, share in cpu.items():
            print(f"  {share:5.1f}%  {part}")


if __name__ == "__main__":
    main()
