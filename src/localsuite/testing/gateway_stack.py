"""A gateway in front of two fault-injecting upstreams, for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from localsuite.core.settings import Settings
from localsuite.gateway.deployments import Deployment
from localsuite.gateway.gateway import Gateway
from localsuite.gateway.servers import Server
from localsuite.testing.fake_upstream import FakeUpstream

# Short phases so a fault costs fractions of a second; the deadline stays long, so a
# test that finishes proves the short phase bounded it, not the deadline.
FAST = {
    "llm_request_timeout": 30.0,
    "llm_connect_timeout": 1.0,
    "llm_first_byte_timeout": 1.0,
    "llm_stream_idle_timeout": 0.5,
    "gateway_probe_interval": 0.2,
    "gateway_probe_timeout": 0.2,
    "gateway_breaker_failures": 2,
    "gateway_breaker_cooldown": 0.2,
    "gateway_retry_backoff": 0.01,
}


@dataclass
class Stack:
    url: str
    primary: FakeUpstream
    secondary: FakeUpstream
    gateway: Gateway
    primary_url: str = ""
    secondary_url: str = ""

    def server(self, name: str) -> Server:
        return self.gateway.table.servers[name]

    def deployment(self, name: str) -> Deployment:
        return self.gateway.table.deployments[name]

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def chat(self, client: httpx.Client, **body: Any) -> httpx.Response:
        payload = {"model": "chat-7b", "messages": [{"role": "user", "content": "hi"}], **body}
        return client.post("/v1/chat/completions", json=payload)


def make_settings(primary_url: str, secondary_url: str, **overrides: Any) -> Settings:
    values = {**FAST, **overrides}
    return Settings(
        _env_file=None,
        inference_chat_url=f"{primary_url}/v1",
        inference_code_url=f"{secondary_url}/v1",
        **values,
    )
