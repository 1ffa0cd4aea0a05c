"""A Python service of the suite as a real OS process (`python -m localsuite serve NAME`),
for tests that must kill it: start, wait until `/health` answers 200, SIGKILL, restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from localsuite.testing.servers import free_port, wait_healthy

PORT_VARIABLES = {
    "api-gateway": "API_GATEWAY_PORT",
    "embedding": "EMBEDDING_PORT",
    "rag": "RAG_PORT",
    "mcp-server": "MCP_PORT",
}


class ServiceProcess:
    def __init__(
        self,
        service: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.service = service
        self.port = port or free_port()
        self.log_path = log_dir / f"{service}-{self.port}.log"
        self.env = {**os.environ, **(env or {}), PORT_VARIABLES[service]: str(self.port)}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "localsuite", "serve", self.service],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        return self

    def wait_ready(self, within: float = 120.0) -> ServiceProcess:
        """Wait until `/health` answers 200 (a service loading a model answers 503)."""
        assert self.proc is not None
        wait_healthy(f"{self.url}/health", self.proc, within, self.log_tail)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would: no chance to finish anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
