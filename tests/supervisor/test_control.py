"""The control API's argument validation, in-process: every refusal is a 4xx in the
spec's error shape, decided before anything is touched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localsuite.core.settings import Settings
from localsuite.supervisor.control import create_control_app
from localsuite.supervisor.services import PRESETS, build_services
from localsuite.supervisor.supervisor import Supervisor

BUNDLED = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "other.gguf").write_bytes(b"GGUF")
    settings = Settings(_env_file=None, data_dir=tmp_path, models_dir=tmp_path / "models")
    specs = build_services(settings, "p2")
    return Supervisor(settings, specs, environ={}, preset="p2")  # never run: no process


@pytest.fixture
async def client(supervisor: Supervisor) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_control_app(supervisor))
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
        yield client


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    assert {"message", "type", "code"} <= set(body)
    return body


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "says"),
    [
        ("/services/nope/model", {"model": "bundled"}, 404, "service_not_found", "api-gateway"),
        ("/services/rag/model", {"model": "bundled"}, 400, "not_an_inference_service",
         "inference-chat, inference-code"),
        ("/services/api-gateway/model", {"model": "bundled"}, 400, "not_an_inference_service",
         "inference-chat, inference-code"),
        ("/services/inference-chat/model", {"model": "/etc/passwd"}, 422, "invalid_model_name",
         "never given as paths"),
        ("/services/inference-chat/model", {"model": "../other.gguf"}, 422, "invalid_model_name",
         "other.gguf"),
        ("/services/inference-chat/model", {"model": "qwen.gguf"}, 404, "model_not_found",
         f"valid models: {BUNDLED}, other.gguf"),
        ("/services/inference-chat/model", {}, 422, "invalid_value", "model"),
        ("/services/inference-chat/model", {"model": ""}, 422, "invalid_value", "model"),
        ("/services/inference-chat/model", {"model": 3}, 422, "invalid_value", "model"),
        ("/services/inference-chat/model", {"model": "x", "extra": 1}, 422, "invalid_value",
         "extra"),
        ("/services/nope/restart", None, 404, "service_not_found", "inference-chat"),
    ],
)  # fmt: skip
async def test_refusals(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    code: str,
    says: str,
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    assert error(response)["code"] == code
    assert says in error(response)["message"]


async def test_a_body_that_is_not_json_is_a_4xx(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/services/inference-chat/model",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422 and error(response)["code"] == "invalid_value"


@pytest.mark.parametrize(
    "path", ["/services/inference-chat/model", "/services/api-gateway/restart"]
)
async def test_a_second_operation_on_a_busy_service_is_409(
    client: httpx.AsyncClient, supervisor: Supervisor, path: str
) -> None:
    name = path.split("/")[2]
    supervisor.services[name].operation = "switching to other.gguf"
    response = await client.post(path, json={"model": "other"})
    assert response.status_code == 409
    assert error(response)["code"] == "operation_in_progress"
    assert "busy (switching to other.gguf)" in error(response)["message"]


async def test_status_models_and_metrics(client: httpx.AsyncClient) -> None:
    status = (await client.get("/status")).json()
    assert status["preset"] == "p2"
    assert set(status["services"]) == set(PRESETS["p2"])
    chat = status["services"]["inference-chat"]
    assert chat["state"] == "stopped" and chat["model"] == BUNDLED and chat["health"] is None
    assert status["services"]["api-gateway"]["waiting_for"] == ["inference-chat", "inference-code"]

    models = (await client.get("/models")).json()
    assert [m["name"] for m in models["models"]] == [BUNDLED, "other.gguf"]
    assert models["services"]["inference-code"] == {
        "model": BUNDLED, "state": "stopped", "operation": None,
    }  # fmt: skip

    health = await client.get("/health")
    assert health.status_code == 503 and health.json()["checks"]["inference-chat"]["ok"] is False
    metrics = (await client.get("/metrics")).text
    assert (
        'localsuite_supervisor_service_state{service="api-gateway",state="stopped"} 1.0' in metrics
    )
    for service in PRESETS["p2"]:  # at 0 before the first restart, for rate() to count it
        assert f'localsuite_supervisor_restarts_total{{reason="crash",service="{service}"}} 0.0' \
            in metrics  # fmt: skip


async def test_the_api_key_guards_the_control_api(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, localsuite_api_key="k")
    sup = Supervisor(settings, build_services(settings, "p1"), environ={})
    transport = httpx.ASGITransport(app=create_control_app(sup))
    async with httpx.AsyncClient(transport=transport, base_url="http://control") as client:
        assert (await client.get("/status")).status_code == 401
        assert (await client.get("/health/live")).status_code == 200
        authed = await client.get("/status", headers={"Authorization": "Bearer k"})
        assert authed.status_code == 200
