"""Real `llama-server` processes with the bundled model, for integration and chaos tests."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from localsuite.core.readiness import free_port
from localsuite.core.settings import Settings
from localsuite.inference.command import inference_plan
from localsuite.inference.registry import ModelRegistry
from localsuite.inference.server import LlamaServer


class LlamaProcess(LlamaServer):
    """One llama-server on a loopback port, on one thread with a small context: start,
    wait until it can generate, hurt it."""

    def __init__(
        self, service: str, log_dir: Path, port: int | None = None, ctx_size: int = 2048
    ) -> None:
        port = port or free_port()
        settings = Settings(
            _env_file=None,
            llama_threads=1,
            llama_ctx_size=ctx_size,
            llama_parallel=4,
            llama_cache_ram_mb=0,
        )
        registry = ModelRegistry(log_dir / "no-models")  # the bundled model only
        plan = inference_plan(service, settings, registry, port=port)
        super().__init__(plan, log_dir / f"{service}-{port}.log")

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
