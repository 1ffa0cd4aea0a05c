"""Check that this machine's `llama-server` can generate: start it on the bundled model,
ask for one token, stop it. Run by `scripts/install.sh` (`python -m localsuite.inference.check`,
whose output is the CLI's: `cli/programs.py`).

A binary that starts but dies on its first batch (a wheel built for another CPU, say)
passes `--version`; only a real generation shows it.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from localsuite.inference.command import InferencePlan
from localsuite.inference.server import LlamaServer, bundled_plan

CHECK_CTX_SIZE = 512  # tokens: one short prompt
LOAD_WITHIN = 120.0  # seconds for the bundled model to load
ANSWER_WITHIN = 60.0  # seconds for one token


class CannotGenerate(Exception):
    """llama-server started but did not generate (or did not start)."""


def check_generation(workdir: Path) -> InferencePlan:
    """Start llama-server on the bundled model under `workdir`, ask for one token, stop
    it; returns what ran. `ConfigError` when there is no binary or model to run,
    `CannotGenerate` when it runs but cannot answer."""
    plan = bundled_plan("inference-chat", workdir, ctx_size=CHECK_CTX_SIZE)
    server = LlamaServer(plan, workdir / "llama-server.log")
    try:
        server.start().wait_ready(within=LOAD_WITHIN)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=ANSWER_WITHIN)
        answer.raise_for_status()
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        raise CannotGenerate(f"llama-server cannot generate: {exc}") from exc
    finally:
        server.stop()
    return plan


if __name__ == "__main__":  # the program's dependency on the CLI, not this module's
    from localsuite.cli.programs import check_main

    raise SystemExit(check_main())
