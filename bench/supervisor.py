"""The supervisor's figures, from real stacks started by `localsuite up --detach`.

  up            seconds from `up --detach` to the command's return (every service
                healthy), for p1 and for what exists of p3
  recovery      after SIGKILL of inference-chat: seconds until the supervisor reports it
                ready again, and until a request through the gateway is served by it again
                (a request every 50 ms on `chat-7b`, whose first backend it is); each kill
                comes after a stable run, so it is a first crash (first restart delay)
  at rest       the supervisor process's CPU (percent of one core) and RSS over a quiet
                window, with the p3 stack up

Printed, never asserted. Writes bench/results/supervisor.json.

    .venv/bin/python bench/supervisor.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from localsuite.testing.detached import DetachedStack

ROOT = Path(__file__).resolve().parent.parent
# A run this long forgets earlier crashes (the default is 60 s): each kill of the recovery
# figure is then measured as a first crash, with the first restart delay (0.25 s), instead
# of walking up the backoff towards `failed`.
STABLE_AFTER = 3
BODY = {"model": "chat-7b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


def time_up(preset: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-supervisor-") as tmp:
            stack = DetachedStack.create(Path(tmp))
            started = time.perf_counter()
            result = stack.up(preset)
            took = time.perf_counter() - started
            stack.down()
            if result.returncode != 0:
                raise RuntimeError(f"up --preset {preset} failed: {result.stderr}")
            times.append(took)
    return times


def recovery(stack: DetachedStack, kills: int) -> list[dict[str, float]]:
    """SIGKILL inference-chat `kills` times; how long until it is ready and serving again."""
    results = []
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        for _ in range(kills):
            if client.post("/v1/chat/completions", json=BODY).status_code != 200:
                raise RuntimeError("the stack does not serve before the kill")
            old = stack.service("inference-chat")["pid"]
            os.kill(old, signal.SIGKILL)
            killed = time.perf_counter()
            ready = served = None
            failed = 0
            while (ready is None or served is None) and time.perf_counter() - killed < 120:
                info = stack.service("inference-chat")
                if ready is None and info["state"] == "ready" and info["pid"] != old:
                    ready = time.perf_counter() - killed
                answer = client.post("/v1/chat/completions", json=BODY)
                if answer.status_code != 200:
                    failed += 1
                elif served is None and answer.headers.get("x-localsuite-backend") == (
                    "inference-chat"
                ):
                    served = time.perf_counter() - killed
                time.sleep(0.05)
            if ready is None or served is None:
                raise RuntimeError("inference-chat did not come back within 120 s")
            results.append({"ready_s": ready, "serving_s": served, "failed_requests": failed})
            time.sleep(STABLE_AFTER + 1)  # each kill is then a first crash, not a crash loop
    return results


def at_rest(stack: DetachedStack, window: float) -> dict[str, float]:
    supervisor = psutil.Process(stack.state()["supervisor_pid"])
    before = supervisor.cpu_times()
    time.sleep(window)
    after = supervisor.cpu_times()
    busy = (after.user - before.user) + (after.system - before.system)
    return {
        "cpu_percent": 100 * busy / window,
        "rss_mib": supervisor.memory_info().rss / 2**20,
        "window_s": window,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter windows")
    args = parser.parse_args()
    runs, kills, window = (1, 2, 10.0) if args.quick else (3, 5, 30.0)

    figures: dict[str, Any] = {"up_s": {}}
    for preset in ("p1", "p3"):
        figures["up_s"][preset] = time_up(preset, runs)
        print(f"up --detach {preset}: " + ", ".join(f"{t:.2f}s" for t in figures["up_s"][preset]))

    with tempfile.TemporaryDirectory(prefix="bench-supervisor-") as tmp:
        stack = DetachedStack.create(Path(tmp), SUPERVISOR_STABLE_AFTER=str(STABLE_AFTER))
        try:
            if stack.up("p3").returncode != 0:
                raise RuntimeError("up --preset p3 failed")
            figures["services"] = sorted(stack.state()["services"])
            figures["at_rest"] = at_rest(stack, window)
            figures["recovery"] = recovery(stack, kills)
        finally:
            stack.down()

    print()
    print(f"services in p3 (this build): {', '.join(figures['services'])}")
    print(f"{'figure':<44}{'median':>10}{'min':>10}{'max':>10}")
    rows = [(f"up --detach to all healthy, {p} (s)", figures["up_s"][p]) for p in ("p1", "p3")]
    for key, label in (("ready_s", "SIGKILL to supervisor: ready (s)"),
                       ("serving_s", "SIGKILL to serving via gateway (s)")):  # fmt: skip
        rows.append((label, [r[key] for r in figures["recovery"]]))
    for label, values in rows:
        print(f"{label:<44}{statistics.median(values):>10.2f}{min(values):>10.2f}"
              f"{max(values):>10.2f}")  # fmt: skip
    failed = sum(r["failed_requests"] for r in figures["recovery"])
    print(f"{'failed requests during the recoveries':<44}{failed:>10}")
    rest = figures["at_rest"]
    print(f"supervisor at rest over {rest['window_s']:.0f}s: {rest['cpu_percent']:.2f}% of one "
          f"core, RSS {rest['rss_mib']:.1f} MiB")  # fmt: skip

    out = ROOT / "bench" / "results" / "supervisor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"\nraw figures: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
