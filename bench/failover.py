"""Latency around a backend's death: the SPEC's "p99 during the minute around a SIGKILL
at most 2x steady state", measured on a real stack (`localsuite up --detach --preset p1`
would leave no backup, so p2's two llama-servers serve `chat-7b`).

Workers send plain and streamed chat requests through the gateway without pause. After
a steady period, inference-chat (chat-7b's first backend) is killed with SIGKILL; the
supervisor restarts it and the load goes on for as long again. Printed side by side:

  steady        requests that started in the steady period before the kill
  around kill   requests that started in the window centred on the kill
  after         requests that started once the killed backend served again

p50/p99/max of each (plain: the whole answer; streamed: time to the first token),
failures of each kind, and the ratios to steady. Never asserted; writes
bench/results/failover.json.

    .venv/bin/python bench/failover.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from localsuite.testing.detached import DetachedStack

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Name three colours of the sea."}]


class Recorder:
    """Each request: (kind, start time, latency or None if it failed, backend)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rows: list[tuple[str, float, float | None, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def worker(self, stream: bool) -> None:
        body = {"model": "chat-7b", "messages": MESSAGES, "max_tokens": 16, "stream": stream}
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                latency: float | None = None
                backend = ""
                try:
                    latency, backend = self._one(client, body, stream, started)
                except httpx.HTTPError:
                    latency = None
                with self.lock:
                    self.rows.append(("stream" if stream else "plain", started, latency, backend))

    def _one(
        self, client: httpx.Client, body: dict[str, Any], stream: bool, started: float
    ) -> tuple[float | None, str]:
        url = f"{self.url}/v1/chat/completions"
        if not stream:
            answer = client.post(url, json=body)
            ok = answer.status_code == 200
            return (time.monotonic() - started if ok else None), answer.headers.get(
                "x-localsuite-backend", ""
            )
        first: float | None = None
        finished = False
        with client.stream("POST", url, json=body) as answer:
            if answer.status_code != 200:
                return None, ""
            for line in answer.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = orjson.loads(line[6:])
                if "error" in chunk:
                    return None, ""
                if first is None:
                    first = time.monotonic() - started
                if any(c.get("finish_reason") for c in chunk.get("choices", [])):
                    finished = True
            return (first if finished else None), answer.headers.get("x-localsuite-backend", "")


def summary(rows: list[tuple[str, float, float | None, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("plain", "stream"):
        mine = [r for r in rows if r[0] == kind]
        ok = sorted(r[2] for r in mine if r[2] is not None)
        out[kind] = {
            "requests": len(mine),
            "failed": sum(1 for r in mine if r[2] is None),
            "p50_ms": statistics.median(ok) * 1000 if ok else None,
            "p99_ms": ok[min(len(ok) - 1, int(len(ok) * 0.99))] * 1000 if ok else None,
            "max_ms": ok[-1] * 1000 if ok else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steady_s, half_window = (15.0, 10.0) if args.quick else (60.0, 30.0)

    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        stack = DetachedStack.create(Path(tmp))
        try:
            started = stack.up("p2")
            if started.returncode != 0:
                raise SystemExit(f"the stack did not start: {started.stderr}")
            gateway = f"http://127.0.0.1:{stack.env['API_GATEWAY_PORT']}"
            recorder = Recorder(gateway)
            workers = [
                threading.Thread(target=recorder.worker, args=(stream,), daemon=True)
                for stream in (False, False, True)
            ]
            for worker in workers:
                worker.start()
            time.sleep(steady_s)  # the steady period: the load runs, nothing happens
            victim = stack.service("inference-chat")["pid"]
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            back_at = None
            while time.monotonic() < killed_at + half_window * 2:
                info = stack.service("inference-chat")
                if back_at is None and info["state"] == "ready" and info["pid"] != victim:
                    with recorder.lock:
                        served = [r for r in recorder.rows if r[3] == "inference-chat"
                                  and r[1] > killed_at and r[2] is not None]  # fmt: skip
                    if served:
                        back_at = min(r[1] + (r[2] or 0) for r in served)
                time.sleep(0.2)
            recorder.stop.set()
            for worker in workers:
                worker.join(timeout=120)
        finally:
            stack.down()

    rows = recorder.rows
    steady = [r for r in rows if r[1] < killed_at - half_window]
    around = [r for r in rows if killed_at - half_window <= r[1] <= killed_at + half_window]
    after = [r for r in rows if back_at is not None and r[1] >= back_at]
    out = {
        "quick": args.quick,
        "window_s": half_window * 2,
        "back_in_s": None if back_at is None else back_at - killed_at,
        "steady": summary(steady),
        "around_kill": summary(around),
        "after": summary(after),
    }
    report(out)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "failover.json").write_text(json.dumps(out, indent=2))


def report(out: dict[str, Any]) -> None:
    back = out["back_in_s"]
    if back is None:
        print("inference-chat SIGKILLed; it did not serve again within the window")
    else:
        print(f"inference-chat SIGKILLed; served again through the gateway after {back:.2f} s")
    print(f"\n{'':12} {'kind':7} {'requests':>8} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'p99/steady':>10}")  # fmt: skip
    for name in ("steady", "around_kill", "after"):
        for kind in ("plain", "stream"):
            row = out[name][kind]
            base = out["steady"][kind]["p99_ms"]
            ratio = row["p99_ms"] / base if row["p99_ms"] and base else float("nan")
            print(f"{name:12} {kind:7} {row['requests']:8} {row['failed']:6} "
                  f"{row['p50_ms'] or 0:8.1f} {row['p99_ms'] or 0:8.1f} {row['max_ms'] or 0:8.1f} "
                  f"{ratio:10.2f}")  # fmt: skip
    print("\n(stream latency is the time to the first token; plain, the whole answer)")


if __name__ == "__main__":
    main()
