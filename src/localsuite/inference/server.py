"""One `llama-server` run outside the supervisor: started on a plan's command line,
waited for until it can generate, stopped. The installer's check runs one on the bundled
model (`bundled_plan`); the tests' `testing.llama.LlamaProcess` is one with ways to hurt it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from localsuite.core.readiness import free_port, stop_process, wait_healthy
from localsuite.core.settings import Settings
from localsuite.inference.command import InferencePlan, inference_plan
from localsuite.inference.registry import ModelRegistry

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL


def bundled_plan(
    service: str, workdir: Path, *, port: int | None = None, ctx_size: int = 2048
) -> InferencePlan:
    """`service`'s llama-server on the bundled model, whatever the user's settings say:
    one thread, four slots of a small context, no prompt cache, a free loopback port."""
    settings = Settings(
        _env_file=None,
        llama_threads=1,
        llama_ctx_size=ctx_size,
        llama_parallel=4,
        llama_cache_ram_mb=0,
    )
    registry = ModelRegistry(workdir / "no-models")  # the bundled model only
    return inference_plan(service, settings, registry, port=port or free_port())


class LlamaServer:
    def __init__(self, plan: InferencePlan, log_path: Path) -> None:
        self.plan = plan
        self.port = plan.port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("llama-server was not started")
        return self.proc.pid

    def start(self) -> LlamaServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.plan.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, within: float = 60.0) -> LlamaServer:
        """Wait until `/health` answers 200: llama-server has loaded and can generate
        (RuntimeError when it exits first, TimeoutError after `within` seconds)."""
        if self.proc is None:
            raise RuntimeError("llama-server was not started")
        wait_healthy(f"{self.url}/health", self.proc, within, self.log_tail)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        stop_process(self.proc, STOP_GRACE)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
