"""The app factory: errors in one shape, auth, health and metrics."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Request

from localsuite.core.app import create_service_app, parse_json_object, read_body
from localsuite.core.errors import (
    DeadlineExceeded,
    LocalSuiteError,
    NotFound,
    RateLimited,
    ServiceUnavailable,
)
from localsuite.core.health import Check, HealthReport
from localsuite.core.metrics import new_registry

HEALTHY = True


async def health() -> HealthReport:
    return HealthReport("test", (Check("dep", HEALTHY, 1.0),), retry_after=3)


def make_app(api_key: str | None = None):  # type: ignore[no-untyped-def]
    app = create_service_app(
        service="test", health=health, registry=new_registry(), api_key=api_key
    )

    @app.get("/raise/{kind}")
    async def raiser(kind: str) -> dict[str, str]:
        errors = {
            "missing": NotFound("no such thing"),
            "busy": RateLimited("slow down", retry_after=2.5),
            "down": ServiceUnavailable("qdrant is down", retry_after=0.2),
            "late": DeadlineExceeded("too slow"),
        }
        if kind in errors:
            raise errors[kind]
        raise RuntimeError("a bug")

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, object]:
        return parse_json_object(await read_body(request, 64))

    return app


def client(app) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, raise_app_exceptions=False), base_url="http://t"
    )


@pytest.mark.parametrize(
    ("kind", "status", "type_", "retry_after"),
    [
        ("missing", 404, "not_found_error", None),
        ("busy", 429, "rate_limit_error", "3"),
        ("down", 503, "service_unavailable", "1"),
        ("late", 504, "timeout_error", None),
        ("bug", 500, "internal_error", None),
    ],
)
async def test_errors_leave_in_one_shape(
    kind: str, status: int, type_: str, retry_after: str | None
) -> None:
    async with client(make_app()) as c:
        r = await c.get(f"/raise/{kind}")
    assert r.status_code == status
    assert set(r.json()["error"]) >= {"message", "type", "code"}
    assert r.json()["error"]["type"] == type_
    assert r.headers.get("retry-after") == retry_after


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/nowhere", None, 404, "unknown_path"),
        ("DELETE", "/health", None, 405, "method_not_allowed"),
        ("POST", "/echo", b"{nope", 400, "invalid_json"),
        ("POST", "/echo", b"", 400, "invalid_json"),
        ("POST", "/echo", b'"a string"', 400, "invalid_json"),
        ("POST", "/echo", b'{"x": "' + b"y" * 100 + b'"}', 413, "payload_too_large"),
    ],
)
async def test_bad_requests(
    method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    async with client(make_app()) as c:
        r = await c.request(method, path, content=body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code


async def test_api_key_guards_everything_but_health_and_metrics() -> None:
    async with client(make_app(api_key="k")) as c:
        for open_path in ("/health/live", "/health", "/metrics"):  # orchestrators probe them
            assert (await c.get(open_path)).status_code == 200, open_path
        denied = await c.get("/openapi.json")
        assert (
            denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        )
        wrong = await c.get("/openapi.json", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert (
            await c.get("/openapi.json", headers={"Authorization": "Bearer k"})
        ).status_code == 200
        assert (await c.get("/openapi.json", headers={"x-api-key": "k"})).status_code == 200


async def test_health_is_503_with_retry_after_when_a_hard_dependency_fails() -> None:
    global HEALTHY  # noqa: PLW0603
    async with client(make_app()) as c:
        ok = await c.get("/health")
        HEALTHY = False
        try:
            down = await c.get("/health")
        finally:
            HEALTHY = True
        metrics = await c.get("/metrics")
    assert ok.status_code == 200 and ok.json()["checks"]["dep"]["ok"] is True
    assert down.status_code == 503 and down.headers["retry-after"] == "3"
    assert down.json()["status"] == "unavailable"
    assert "process_cpu_seconds_total" in metrics.text


def test_error_render_rounds_retry_after_up() -> None:
    error = LocalSuiteError("x", retry_after=0.2)
    assert error.headers() == {"Retry-After": "1"}
    assert error.body() == {
        "error": {"message": "x", "type": "internal_error", "code": "internal_error"}
    }
