"""Real `llama-server` processes with the bundled model, for integration and chaos tests."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from localsuite.inference.server import LlamaServer, bundled_plan


class LlamaProcess(LlamaServer):
    """One llama-server on the bundled model and a loopback port: start, wait until it
    can generate, hurt it."""

    def __init__(
        self, service: str, log_dir: Path, port: int | None = None, ctx_size: int = 2048
    ) -> None:
        plan = bundled_plan(service, log_dir, port=port, ctx_size=ctx_size)
        super().__init__(plan, log_dir / f"{service}-{plan.port}.log")

    def start(self) -> LlamaProcess:
        super().start()
        return self

    def wait_ready(self, within: float = 60.0) -> LlamaProcess:
        super().wait_ready(within)
        return self

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)
        if sig is signal.SIGKILL and self.proc is not None:
            self.proc.wait(timeout=10)
