"""A synchronous client of a running supervisor, for the CLI, tests and benchmarks.

It finds the stack through the state file (the supervisor's pid and the address its
control API is bound to), so it works from any terminal; every failure is a
`ControlError` with the supervisor's own message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from localsuite.core.settings import Settings
from localsuite.supervisor.state import pid_alive, read_state


class ControlError(Exception):
    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class NoStack(ControlError):
    """No supervisor is running for this DATA_DIR."""


def running_state(settings: Settings) -> dict[str, Any] | None:
    """The state file of a stack whose supervisor is alive, else None."""
    state = read_state(settings)
    if state and pid_alive(state.get("supervisor_pid")):
        return state
    return None


class ControlClient:
    def __init__(self, settings: Settings, base_url: str | None = None) -> None:
        if base_url is None:
            state = running_state(settings)
            if state is None:
                raise NoStack("no stack is running; `localsuite up --detach` starts one")
            base_url = state.get("control_url") or settings.supervisor_service_url
        self.base_url = base_url.rstrip("/")
        key = settings.api_key
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, wait: float = 30.0
    ) -> dict[str, Any]:
        """One call; `wait` bounds the answer (a model switch waits for a model load)."""
        url = f"{self.base_url}{path}"
        try:
            response = httpx.request(
                method, url, json=body, headers=self.headers,
                timeout=httpx.Timeout(10.0, read=wait),
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise ControlError(f"the supervisor at {self.base_url} did not answer: {exc}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            message = error.get("message") or f"HTTP {response.status_code}"
            raise ControlError(message, response.status_code, error.get("code"))
        if not isinstance(data, dict):
            raise ControlError(f"the supervisor answered {path} with something that is not JSON")
        return data

    def status(self) -> dict[str, Any]:
        return self.call("GET", "/status")

    def models(self) -> dict[str, Any]:
        return self.call("GET", "/models")

    def restart(self, service: str, wait: float) -> dict[str, Any]:
        return self.call("POST", f"/services/{quote(service, safe='')}/restart", wait=wait)

    def switch_model(self, service: str, model: str, wait: float) -> dict[str, Any]:
        return self.call(
            "POST", f"/services/{quote(service, safe='')}/model", {"model": model}, wait=wait
        )
