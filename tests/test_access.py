"""Who may call what, as one grid: every route of every service by the key sent (none,
wrong, the API key, the admin key) by where the caller is (this machine or another) by
whether keys are set; and the services' refusal to listen beyond loopback with none."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from localsuite.core.auth import refuse_exposure
from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.embedding.app import create_embedding_app
from localsuite.gateway.app import create_gateway_app
from localsuite.gateway.config import parse_litellm_config
from localsuite.mcp_server.app import create_mcp_app
from localsuite.rag.app import create_rag_app
from localsuite.supervisor.control import create_control_app
from localsuite.supervisor.supervisor import Supervisor

API_KEY = "use-key-5c1f"
ADMIN_KEY = "admin-key-9e7a"
ROUTING_SECRET = "routing-secret-4d2b"  # an api_key in a routing file
SENT = {
    "none": {},
    "wrong": {"Authorization": "Bearer nope"},
    "api": {"Authorization": f"Bearer {API_KEY}"},
    "api-x": {"x-api-key": API_KEY},  # Anthropic's clients send the key this way
    "admin": {"Authorization": f"Bearer {ADMIN_KEY}"},
}
CALLERS = {"loopback": "127.0.0.1", "remote": "192.0.2.50"}
OPEN = {"/health", "/health/live", "/metrics"}
ADMIN = {  # service → (method, path) → whether it changes the service
    "api-gateway": lambda m, p: m != "GET" and p.startswith("/admin/"),
    "supervisor": lambda m, p: m != "GET",
    "rag": lambda m, p: m == "DELETE",
    "embedding": lambda m, p: False,
    "mcp-server": lambda m, p: False,
}


def settings_for(tmp: Path, keyed: bool) -> Settings:
    keys = {"localsuite_api_key": API_KEY, "localsuite_admin_key": ADMIN_KEY} if keyed else {}
    return Settings(_env_file=None, data_dir=tmp / "data", models_dir=tmp / "models",
                    **keys)  # type: ignore[arg-type]  # fmt: skip


def apps(settings: Settings) -> dict[str, FastAPI]:
    text = (
        "model_list: [{model_name: chat-7b, litellm_params: "
        f"{{api_base: 'http://127.0.0.1:9/v1', api_key: {ROUTING_SECRET}}}}}]"
    )
    routing = parse_litellm_config(yaml.safe_load(text), settings, {})
    sup = Supervisor(settings, [], environ={})
    return {
        "api-gateway": create_gateway_app(settings, routing),
        "embedding": create_embedding_app(settings),
        "rag": create_rag_app(settings),
        "mcp-server": create_mcp_app(settings),
        "supervisor": create_control_app(sup),
    }


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, path parameters filled in."""
    seen = set()
    for route in app.routes:
        if isinstance(route, Mount):
            yield "POST", route.path.rstrip("/") + "/"
            continue
        if not isinstance(route, APIRoute | Route) or route.path.startswith(("/docs", "/redoc")):
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(route.methods or ()):
            if method != "HEAD" and (method, path) not in seen:
                seen.add((method, path))
                yield method, path


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    path: str
    sent: str
    caller: str
    keyed: bool

    def expected(self) -> int | None:
        """401, 403, or None (allowed: whatever the route itself then answers)."""
        admin = ADMIN[self.service](self.method, self.path)
        if self.path in OPEN or (self.path == "/openapi.json" and not self.keyed):
            return None
        if not self.keyed:
            return 403 if admin and self.caller == "remote" else None
        if admin:
            return None if self.sent == "admin" else 403 if self.sent.startswith("api") else 401
        return None if self.sent in ("api", "api-x", "admin") else 401


@pytest.fixture(scope="module", params=[True, False], ids=["keys-set", "no-key"])
def services(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[bool, dict[str, FastAPI]]:  # fmt: skip
    keyed = request.param
    return keyed, apps(settings_for(tmp_path_factory.mktemp("access"), keyed))


def calls(keyed: bool, built: dict[str, FastAPI]) -> Iterator[Call]:
    for service, app in built.items():
        for method, path in routes(app):
            for sent in SENT:
                for caller in CALLERS:
                    yield Call(service, method, path, sent, caller, keyed)


async def test_every_route_answers_who_may_call_it(
    services: tuple[bool, dict[str, FastAPI]], caplog: Any
) -> None:
    keyed, built = services
    checked = 0
    caplog.set_level(logging.DEBUG)
    for call in calls(keyed, built):
        app = built[call.service]
        # The apps are not started: an allowed call may fail further on, which is not this
        # test's business (and must not raise here).
        transport = httpx.ASGITransport(
            app=app, client=(CALLERS[call.caller], 40000), raise_app_exceptions=False
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            answer = await client.request(call.method, call.path, headers=SENT[call.sent],
                                          json={} if call.method != "GET" else None)  # fmt: skip
        expected = call.expected()
        if expected is None:
            assert answer.status_code not in (401, 403), (call, answer.text)
        else:
            assert answer.status_code == expected, (call, answer.text)
            body = answer.json()
            if call.path.startswith("/v1/messages"):
                assert body["type"] == "error" and body["error"]["type"] in (
                    "authentication_error", "permission_error")  # fmt: skip
            else:
                assert body["error"]["type"] in ("authentication_error", "permission_error")
        for secret in (API_KEY, ADMIN_KEY, ROUTING_SECRET):
            assert secret not in answer.text, call
        checked += 1
    assert checked > 200  # every service's routes were walked
    for secret in (API_KEY, ADMIN_KEY, ROUTING_SECRET):
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("host", "keyed", "allow", "starts"),
    [
        ("127.0.0.1", False, False, True),
        ("::1", False, False, True),
        ("localhost", False, False, True),
        ("0.0.0.0", False, False, False),
        ("192.0.2.2", False, False, False),
        ("", False, False, False),
        ("0.0.0.0", True, False, True),
        ("0.0.0.0", False, True, True),
    ],
)
def test_no_service_listens_beyond_loopback_without_a_key(
    tmp_path: Path, host: str, keyed: bool, allow: bool, starts: bool, caplog: Any
) -> None:
    settings = settings_for(tmp_path, keyed).model_copy(
        update={"host": host, "localsuite_allow_no_auth": allow}
    )
    if starts:
        refuse_exposure(settings, "api-gateway")
        if allow:
            assert "LOCALSUITE_ALLOW_NO_AUTH=1" in caplog.text  # the risk, said at every start
        return
    with pytest.raises(ConfigError) as refused:
        refuse_exposure(settings, "api-gateway")
    message = str(refused.value)
    assert "LOCALSUITE_API_KEY" in message and "LOCALSUITE_ALLOW_NO_AUTH=1" in message
    assert "\n" not in message  # one line that names the fix


def test_the_supervisor_and_serve_refuse_before_anything_starts(tmp_path: Path) -> None:
    import subprocess
    import sys

    from localsuite.supervisor.services import build_services

    exposed = settings_for(tmp_path, keyed=False).model_copy(update={"host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="LOCALSUITE_API_KEY"):
        build_services(exposed, "p1")
    env = {"HOST": "0.0.0.0", "LOCALSUITE_API_KEY": "", "PATH": "/usr/bin:/bin"}
    served = subprocess.run(
        [sys.executable, "-m", "localsuite", "serve", "api-gateway"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert served.returncode != 0
    assert "LOCALSUITE_API_KEY" in served.stderr and "ALLOW_NO_AUTH" in served.stderr
