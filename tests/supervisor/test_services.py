"""Service specs, presets and start/stop order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.supervisor.services import (
    PRESETS,
    build_services,
    start_order,
    stop_waves,
    waves,
)


@pytest.mark.parametrize(
    ("graph", "order"),
    [
        ({"a": [], "b": ["a"]}, ["a", "b"]),
        ({"gw": ["chat", "code"], "chat": [], "code": []}, ["chat", "code", "gw"]),
        (
            {"rag": ["emb", "gw"], "gw": ["chat"], "emb": [], "chat": []},
            ["emb", "chat", "gw", "rag"],
        ),
    ],
)
def test_dependencies_start_first(graph: dict[str, list[str]], order: list[str]) -> None:
    assert start_order(graph) == order


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, "a -> b -> c -> a"),
        ({"a": ["a"]}, "a -> a"),
        ({"x": [], "rag": ["mcp"], "mcp": ["rag"]}, "rag -> mcp -> rag"),
    ],
)
def test_a_cycle_is_refused_by_name(graph: dict[str, list[str]], cycle: str) -> None:
    with pytest.raises(ConfigError, match=f"cycle: {cycle}"):
        start_order(graph)


def test_an_unknown_dependency_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown 'ghost'"):
        start_order({"a": ["ghost"]})


def test_presets_follow_the_spec() -> None:
    assert set(PRESETS["p1"]) == {"inference-chat", "api-gateway"}
    assert set(PRESETS["p2"]) == set(PRESETS["p1"]) | {"inference-code", "embedding", "rag"}
    assert set(PRESETS["p3"]) == set(PRESETS["p2"]) | {"mcp-server"}


def test_p3_has_the_compose_graph() -> None:
    specs = build_services(Settings(_env_file=None), "p3")
    by_name = {s.name: s for s in specs}
    assert [s.name for s in specs] == [
        "inference-chat", "inference-code", "embedding", "api-gateway", "rag", "mcp-server",
    ]  # fmt: skip
    assert {n: s.port for n, s in by_name.items()} == {
        "inference-chat": 8001, "inference-code": 8004, "api-gateway": 8000,
        "embedding": 8003, "rag": 8002, "mcp-server": 8020,
    }  # fmt: skip
    assert by_name["api-gateway"].depends_on == ("inference-chat", "inference-code")
    assert by_name["api-gateway"].any_dependency
    assert by_name["rag"].depends_on == ("embedding", "api-gateway")
    assert by_name["mcp-server"].depends_on == ("api-gateway", "rag")
    assert by_name["embedding"].depends_on == ()
    assert by_name["embedding"].argv[-3:] == ["localsuite", "serve", "embedding"]
    assert by_name["rag"].health.url == "http://127.0.0.1:8002/health"
    assert by_name["rag"].health.live_url == "http://127.0.0.1:8002/health/live"
    assert by_name["api-gateway"].health.url == "http://127.0.0.1:8000/health/live"
    assert by_name["inference-chat"].health.url == "http://127.0.0.1:8001/health"
    assert by_name["inference-chat"].model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert stop_waves(specs) == [["mcp-server"], ["rag"], ["api-gateway"],
                                 ["inference-chat", "inference-code", "embedding"]]  # fmt: skip


def test_p1_has_one_backend_before_the_gateway() -> None:
    specs = build_services(Settings(_env_file=None), "p1")
    assert [s.name for s in specs] == ["inference-chat", "api-gateway"]
    assert specs[1].depends_on == ("inference-chat",)


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'p9'; choose one of p1, p2, p3"):
        build_services(Settings(_env_file=None), "p9")


def test_health_timings_and_start_periods_come_from_settings() -> None:
    settings = Settings(
        _env_file=None,
        inference_start_period=300,
        supervisor_start_period=40,
        embedding_start_period=200,
        supervisor_health_interval=7,
        supervisor_health_timeout=3,
        supervisor_health_retries=4,
        supervisor_start_interval=0.5,
    )
    specs = build_services(settings, "p3")
    periods = {s.name: s.health.start_period for s in specs}
    assert periods == {
        "inference-chat": 300, "inference-code": 300, "api-gateway": 40,
        "embedding": 200, "rag": 40, "mcp-server": 40,
    }  # fmt: skip
    for spec in specs:
        check = spec.health
        assert (check.interval, check.timeout, check.retries, check.start_interval) == (
            7,
            3,
            4,
            0.5,
        )


def test_replicas_stop_in_the_wave_of_their_service() -> None:
    specs = build_services(Settings(_env_file=None), "p1")
    chat, gateway = specs
    second = replace(chat, name="inference-chat-2", group="inference-chat")
    assert chat.group == "inference-chat" and second.is_inference
    assert stop_waves([chat, second, gateway]) == [
        ["api-gateway"], ["inference-chat", "inference-chat-2"],
    ]  # fmt: skip
    assert waves({"b": ["a"], "a": [], "c": ["b"]}) == [["c"], ["b"], ["a"]]


def test_chat_replicas_are_processes_of_one_service_on_ports_no_service_has(
    tmp_path: Path,
) -> None:
    settings = Settings(_env_file=None, chat_replicas=3, chat_replica_ports="9101,9102",
                        models_dir=tmp_path)  # fmt: skip
    specs = {s.name: s for s in build_services(settings, "p2")}
    chat = [s for s in specs.values() if s.group == "inference-chat"]
    assert [(s.name, s.port) for s in chat] == [
        ("inference-chat", 8001), ("inference-chat-2", 9101), ("inference-chat-3", 9102),
    ]  # fmt: skip
    assert all(s.is_inference and "--port" in s.argv for s in chat)
    # the gateway's default routing names the same servers, at the same addresses
    assert [name for name, _ in settings.chat_backends] == [s.name for s in chat]
    assert settings.chat_backends[2][1] == "http://127.0.0.1:9102/v1"
    assert specs["api-gateway"].depends_on == ("inference-chat", "inference-code")


@pytest.mark.parametrize(
    ("ports", "message"),
    [("8002", "rag's"), ("8101", "needs a port"), ("8000-8001", "api-gateway's")],
)
def test_replica_ports_are_checked(tmp_path: Path, ports: str, message: str) -> None:
    replicas = 2 if message != "needs a port" else 3
    settings = Settings(_env_file=None, chat_replicas=replicas, chat_replica_ports=ports,
                        models_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        build_services(settings, "p1")
