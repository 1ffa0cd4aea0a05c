"""Replicas behind one alias: capacity, prompt-cache hits and balance, side by side.

Arms, in one run, each with fresh llama-servers (the bundled model, `--threads 1`, the
same `--parallel` everywhere) so that no arm inherits another's caches:

  single       one llama-server, called directly
  round-robin  N servers behind a plain round-robin proxy (`bench/balancer_proxy.py`)
  least        N servers behind the gateway, least outstanding, affinity off
               (GATEWAY_AFFINITY_ENTRIES=0)
  ours         N servers behind the gateway, least outstanding with affinity

Workload: 8 concurrent multi-turn conversations sharing a long system prompt, streamed,
`temperature: 0`. Figures: prompt-cache hit rate (`timings.cache_n / (cache_n +
prompt_n)` summed over every turn after the first), requests/s, p50/p99 time to first
token, each replica's share. How the cores are shared: each llama-server runs one
thread; the gateway (one process) and the client (this process, threads) take the rest.

    .venv/bin/python bench/replicas.py [--quick] [--replicas 2,3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from localsuite.core.settings import Settings
from localsuite.inference.command import inference_plan
from localsuite.inference.registry import ModelRegistry
from localsuite.testing.servers import free_port, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = (
    "You are the help desk of a lighthouse museum. Answer briefly and kindly. "
    "The museum opens at nine, closes at five, and is closed on Mondays. Tickets cost "
    "eight euros, children under twelve enter free, and guided tours start every hour. "
) * 3
TOPICS = ["the lens", "the keeper's log", "storms", "the foghorn", "ships", "the stairs",
          "the lamp oil", "the island"]  # fmt: skip


def opening(index: int) -> str:
    """A visitor's own long first message: most of each conversation's prompt is its own,
    so a turn that lands on a replica that never saw it must compute it again."""
    topic = TOPICS[index % len(TOPICS)]
    facts = " ".join(f"Fact {n} I read about {topic}: it changed in year {1800 + index * 7 + n}."
                     for n in range(25))  # fmt: skip
    return f"Visitor {index} here, curious about {topic}. {facts} What should I see first?"


CONVERSATIONS = 8
PARALLEL = 4


@contextmanager
def started(argv: list[str], health: str, env: dict[str, str] | None = None) -> Any:
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_healthy(health, proc, 120)
        yield proc
    finally:
        stop_process(proc)


def llama(stack: ExitStack, tmp: Path) -> str:
    port = free_port()
    settings = Settings(_env_file=None, llama_threads=1, llama_parallel=PARALLEL,
                        llama_ctx_size=4096 * 2)  # fmt: skip
    plan = inference_plan("inference-chat", settings, ModelRegistry(tmp / "none"), port=port)
    stack.enter_context(started(plan.argv, f"http://127.0.0.1:{port}/health"))
    return f"http://127.0.0.1:{port}"


def gateway(stack: ExitStack, tmp: Path, backends: list[str], affinity: bool) -> str:
    port = free_port()
    config = tmp / f"routing-{port}.json"
    entries = [
        {"model_name": "chat-7b", "litellm_params": {"api_base": f"{base}/v1", "order": 1},
         "model_info": {"id": f"replica-{number}"}}
        for number, base in enumerate(backends, start=1)
    ]  # fmt: skip
    config.write_text(json.dumps({"model_list": entries}))
    env = {"API_GATEWAY_PORT": str(port), "GATEWAY_CONFIG": str(config), "LOG_LEVEL": "WARNING",
           "LOCALSUITE_API_KEY": "", "GATEWAY_AFFINITY_ENTRIES": "10000" if affinity else "0",
           "LLM_REQUEST_TIMEOUT": "300", "LLM_FIRST_BYTE_TIMEOUT": "120"}  # fmt: skip
    argv = [sys.executable, "-m", "localsuite", "serve", "api-gateway"]
    stack.enter_context(started(argv, f"http://127.0.0.1:{port}/health", env))
    return f"http://127.0.0.1:{port}"


def round_robin(stack: ExitStack, backends: list[str]) -> str:
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "balancer_proxy.py"), "rr", str(port),
            ",".join(backends)]  # fmt: skip
    stack.enter_context(started(argv, f"http://127.0.0.1:{port}/health"))
    return f"http://127.0.0.1:{port}"


@dataclass
class Results:
    ttft: list[float] = field(default_factory=list)
    cached: int = 0
    prompted: int = 0
    shares: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def conversation(url: str, index: int, turns: int, results: Results) -> None:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": opening(index)}]  # fmt: skip
    # No keep-alive: llama-server closes a connection after a streamed answer.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(timeout=300, limits=limits) as client:
        for number in range(turns):
            body = {"model": "chat-7b", "messages": messages, "max_tokens": 12,
                    "temperature": 0, "stream": True}  # fmt: skip
            started_at = time.perf_counter()
            first = None
            text, timings = "", None
            try:
                with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                    backend = response.headers.get("x-localsuite-backend", url)
                    for line in response.iter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = orjson.loads(line[6:])
                        for choice in chunk.get("choices") or ():
                            piece = (choice.get("delta") or {}).get("content") or ""
                            if piece and first is None:
                                first = time.perf_counter()
                            text += piece
                        timings = chunk.get("timings") or timings
            except httpx.HTTPError as exc:
                with results.lock:
                    results.failures.append(str(exc))
                return
            with results.lock:
                results.requests += 1
                results.shares[backend] += 1
                results.ttft.append(((first or time.perf_counter()) - started_at) * 1000)
                if number > 0 and timings:
                    results.cached += int(timings.get("cache_n", 0))
                    results.prompted += int(timings.get("prompt_n", 0))
            messages += [{"role": "assistant", "content": text},
                         {"role": "user", "content": f"And question {number + 2}?"}]  # fmt: skip


def run_arm(url: str, turns: int) -> dict[str, Any]:
    results = Results()
    started_at = time.perf_counter()
    threads = [threading.Thread(target=conversation, args=(url, i, turns, results))
               for i in range(CONVERSATIONS)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started_at
    ordered = sorted(results.ttft)
    total = results.cached + results.prompted
    return {
        "hit_rate": results.cached / total if total else 0.0,
        "requests_per_s": results.requests / elapsed,
        "ttft_p50_ms": statistics.median(ordered) if ordered else None,
        "ttft_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        if ordered
        else None,
        "shares": dict(results.shares),
        "requests": results.requests,
        "failures": results.failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--replicas", default="2,3")
    args = parser.parse_args()
    turns = 3 if args.quick else 6
    out: dict[str, Any] = {"cpu": os.cpu_count(), "conversations": CONVERSATIONS,
                           "turns": turns, "parallel": PARALLEL, "arms": {}}  # fmt: skip
    tmp = ROOT / "bench" / "results" / "replicas"
    tmp.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        out["arms"]["single"] = run_arm(llama(stack, tmp), turns)
    for count in (int(n) for n in args.replicas.split(",")):
        for arm in ("round-robin", "least", "ours"):
            with ExitStack() as stack:
                backends = [llama(stack, tmp) for _ in range(count)]
                if arm == "round-robin":
                    url = round_robin(stack, backends)
                else:
                    url = gateway(stack, tmp, backends, affinity=arm == "ours")
                out["arms"][f"{arm} x{count}"] = run_arm(url, turns)
    report(out)
    (ROOT / "bench" / "results" / "replicas.json").write_text(json.dumps(out, indent=2))


def report(out: dict[str, Any]) -> None:
    single = out["arms"]["single"]
    print(f"\n{out['conversations']} conversations x {out['turns']} turns, --parallel "
          f"{out['parallel']}, --threads 1 per llama-server")  # fmt: skip
    print(f"  {'arm':16} {'hit rate':>9} {'vs single':>9} {'req/s':>7} {'vs single':>9} "
          f"{'ttft p50':>9} {'p99':>8}  shares")  # fmt: skip
    for name, arm in out["arms"].items():
        hit = arm["hit_rate"] / single["hit_rate"] if single["hit_rate"] else 0.0
        rps = arm["requests_per_s"] / single["requests_per_s"]
        shares = " ".join(f"{v}" for v in sorted(arm["shares"].values(), reverse=True))
        print(f"  {name:16} {arm['hit_rate']:9.3f} {hit:8.2f}x {arm['requests_per_s']:7.2f} "
              f"{rps:8.2f}x {arm['ttft_p50_ms']:8.1f} {arm['ttft_p99_ms']:8.1f}  {shares}"
              + (f"  FAILURES {len(arm['failures'])}" if arm["failures"] else ""))  # fmt: skip


if __name__ == "__main__":
    main()
