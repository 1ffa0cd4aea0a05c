"""Start order, presets and the restart backoff schedule."""

from __future__ import annotations

import pytest

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.supervisor.launcher import Backoff
from localsuite.supervisor.services import PRESETS, build_services, start_order


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


def test_a_cycle_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="a -> b -> c -> a"):
        start_order({"a": ["b"], "b": ["c"], "c": ["a"]})


def test_an_unknown_dependency_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown 'ghost'"):
        start_order({"a": ["ghost"]})


def test_presets_follow_the_spec() -> None:
    assert set(PRESETS["p1"]) == {"inference-chat", "api-gateway"}
    assert set(PRESETS["p2"]) == set(PRESETS["p1"]) | {"inference-code", "embedding", "rag"}
    assert set(PRESETS["p3"]) == set(PRESETS["p2"]) | {"mcp-server"}


def test_p2_starts_both_backends_before_the_gateway() -> None:
    specs, skipped = build_services(Settings(_env_file=None), "p2")
    assert [s.name for s in specs] == ["inference-chat", "inference-code", "api-gateway"]
    assert specs[-1].depends_on == ("inference-chat", "inference-code")
    assert skipped == ["embedding", "rag"]
    assert specs[0].port == 8001 and specs[1].port == 8004 and specs[2].port == 8000


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        build_services(Settings(_env_file=None), "p9")


@pytest.mark.parametrize(
    ("crashes", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (8, 30.0), (20, 30.0)]
)
def test_backoff_doubles_up_to_a_cap(crashes: int, delay: float) -> None:
    assert Backoff().delay(crashes) == delay


def test_gateway_needs_one_ready_backend_and_load_time_is_configurable() -> None:
    specs, _ = build_services(Settings(_env_file=None, inference_start_period=300), "p2")
    by_name = {s.name: s for s in specs}
    assert by_name["api-gateway"].any_dependency
    assert by_name["inference-chat"].start_period == 300
