"""Real `llama-server` processes with the bundled model, for integration and chaos tests."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from localsuite.core.settings import Settings
from localsuite.inference.command import inference_plan
from localsuite.inference.registry import ModelRegistry
from localsuite.testing.servers import free_port, wait_healthy


class LlamaProcess:
    """One llama-server on a loopback port: start, wait until it can generate, hurt it."""

    def __init__(
        self, service: str, log_dir: Path, port: int | None = None, ctx_size: int = 2048
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_dir / f"{service}-{self.port}.log"
        settings = Settings(
            _env_file=None,
            llama_threads=1,
            llama_ctx_size=ctx_size,
            llama_parallel=4,
            llama_cache_ram_mb=0,
        )
        registry = ModelRegistry(log_dir / "no-models")  # the bundled model only
        self.plan = inference_plan(service, settings, registry, port=self.port)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> LlamaProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.plan.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, within: float = 60.0) -> LlamaProcess:
        """Wait until `/health` answers 200: llama-server has loaded and can generate."""
        assert self.proc is not None
        wait_healthy(f"{self.url}/health", self.proc, within, self.log_tail)
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        if sig is signal.SIGKILL:
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
