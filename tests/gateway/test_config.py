"""Routing table loading: env defaults, LiteLLM-style YAML, the original config.p2.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings, environment
from localsuite.gateway.config import (
    DeploymentSpec,
    RoutingConfig,
    default_routing,
    load_routing,
    parse_litellm_config,
)

SETTINGS = Settings(_env_file=None)


def deployments(routing: RoutingConfig, alias: str) -> list[DeploymentSpec]:
    """The alias's deployments, in priority order."""
    return [routing.deployments[r.deployment] for r in routing.routes[alias]]


def servers(routing: RoutingConfig, alias: str) -> list[str]:
    return [d.server for d in deployments(routing, alias)]


LITELLM = """
model_list:
  - model_name: chat-7b
    litellm_params:
      model: openai/qwen2.5-3b-instruct
      api_base: http://inference-chat:8001/v1
      api_key: os.environ/CHAT_KEY
      order: 1
      timeout: 45
      stream_timeout: 12
  - model_name: chat-7b
    litellm_params:
      {model: openai/qwen2.5-coder-7b, api_base: "http://inference-code:8004/v1", order: 2}
  - model_name: code-7b
    litellm_params: {model: openai/qwen2.5-coder-7b, api_base: "http://inference-code:8004/v1"}
router_settings:
  num_retries: 2
  timeout: 90
  allowed_fails: 4
  cooldown_time: 15
  routing_strategy: simple-shuffle
  fallbacks: [{"chat-7b": ["code-7b"]}]
  context_window_fallbacks: [{"code-7b": ["chat-7b"]}]
  model_group_alias: {"gpt-4o": "chat-7b"}
litellm_settings:
  drop_params: true
general_settings:
  master_key: sk-local
"""

# The original suite's config.p2.yaml: priority per entry (listed out of order here),
# a top-level `router:` block.
P2 = """
model_list:
  - model_name: chat-7b
    litellm_params:
      {model: openai/chat-7b, api_base: "http://inference-code:8004/v1", api_key: dummy}
    priority: 2
  - model_name: chat-7b
    litellm_params:
      {model: openai/chat-7b, api_base: "http://inference-chat:8001/v1", api_key: dummy}
    priority: 1
router:
  num_retries: 2
  retry_on_status_codes: [500, 502, 503, 504]
  timeout: 60
  retry_strategy: sequence
"""


def test_env_defaults_back_each_other_up() -> None:
    routing = default_routing(SETTINGS)
    assert servers(routing, "chat-7b") == ["inference-chat", "inference-code"]
    assert servers(routing, "code-7b") == ["inference-code", "inference-chat"]
    assert routing.resolve("chat") == "chat-7b" and routing.resolve("code") == "code-7b"
    assert routing.servers["inference-chat"].api_base == "http://127.0.0.1:8001/v1"
    assert routing.servers["inference-chat"].health_url == "http://127.0.0.1:8001/health"


def test_litellm_yaml_loads_as_is() -> None:
    routing = parse_litellm_config(yaml.safe_load(LITELLM), SETTINGS, {"CHAT_KEY": "k1"})
    chat = deployments(routing, "chat-7b")
    assert [routing.servers[d.server].api_base for d in chat] == [
        "http://inference-chat:8001/v1",
        "http://inference-code:8004/v1",
    ]
    assert chat[0].model == "qwen2.5-3b-instruct"  # provider prefix stripped
    assert (chat[0].timeout, chat[0].stream_timeout) == (45.0, 12.0)
    assert routing.servers[chat[0].server].api_key == "k1"
    # one server (one probe), one deployment (one breaker), whichever alias uses it
    assert chat[1].server == deployments(routing, "code-7b")[0].server
    assert routing.routes["chat-7b"][1].deployment == routing.routes["code-7b"][0].deployment
    policy = routing.policy
    assert (policy.num_retries, policy.timeout, policy.allowed_fails, policy.cooldown) == (
        2,
        90,
        4,
        15,
    )
    assert policy.fallbacks == {"chat-7b": ("code-7b",)}
    assert policy.context_window_fallbacks == {"code-7b": ("chat-7b",)}
    assert routing.master_key == "sk-local"
    assert routing.resolve("gpt-4o") == "chat-7b" and routing.resolve("chat") == "chat-7b"
    assert set(routing.ignored_keys) == {
        "router_settings.routing_strategy",
        "litellm_settings.drop_params",
    }


def test_routing_secrets_are_found_in_dot_env_and_the_process_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dot_env = tmp_path / ".env"
    dot_env.write_text('CHAT_KEY=from-dot-env\nLOCALSUITE_TEST_ONLY="quoted"\n')
    monkeypatch.delenv("CHAT_KEY", raising=False)
    routing = parse_litellm_config(yaml.safe_load(LITELLM), SETTINGS, environment(dot_env))
    chat = routing.servers[deployments(routing, "chat-7b")[0].server]
    assert chat.api_key == "from-dot-env"
    monkeypatch.setenv("CHAT_KEY", "from-the-process")
    routing = parse_litellm_config(yaml.safe_load(LITELLM), SETTINGS, environment(dot_env))
    assert routing.servers[deployments(routing, "chat-7b")[0].server].api_key == "from-the-process"
    assert environment(dot_env)["LOCALSUITE_TEST_ONLY"] == "quoted"
    assert environment(tmp_path / "missing.env") == dict(os.environ)


def test_original_p2_config_honours_priority(tmp_path: Path) -> None:
    path = tmp_path / "config.p2.yaml"
    path.write_text(P2)
    routing = load_routing(Settings(_env_file=None, gateway_config=path), {})
    bases = [routing.servers[d.server].api_base for d in deployments(routing, "chat-7b")]
    assert bases == ["http://inference-chat:8001/v1", "http://inference-code:8004/v1"]
    assert routing.policy.retry_on_status == frozenset({500, 502, 503, 504})
    assert routing.policy.num_retries == 2 and routing.policy.timeout == 60
    assert "router.retry_strategy" in routing.ignored_keys


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "mapping at the top level"),
        ("model_list: []", "non-empty list"),
        ("model_list: [{litellm_params: {api_base: 'http://x:1'}}]", "model_name"),
        ("model_list: [{model_name: a, litellm_params: {model: m}}]", "api_base"),
        (
            "model_list: [{model_name: a, litellm_params: {api_base: 'http://x:1'}}]\n"
            "router_settings: {fallbacks: [{a: [ghost]}]}",
            "unknown model_name",
        ),
        (
            "model_list: [{model_name: a, litellm_params: {api_base: 'http://x:1', "
            "api_key: os.environ/UNSET_KEY}}]",
            "UNSET_KEY",
        ),
        (
            "model_list: [{model_name: a, litellm_params: {api_base: 'http://x:1', order: x}}]",
            "number",
        ),
        (
            "model_list: [{model_name: a, litellm_params: {api_base: 'http://x:1', timeout: -1}}]",
            "positive",
        ),
        (
            "model_list: [{model_name: a, litellm_params: {api_base: 'http://x:1'}}]\n"
            "router: {num_retries: -1}",
            "non-negative",
        ),
    ],
)
def test_bad_routing_files_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_litellm_config(yaml.safe_load(text), SETTINGS, {})


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot read"), (":\n  - [", "not valid YAML")]
)
def test_unreadable_or_invalid_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "routing.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_routing(Settings(_env_file=None, gateway_config=path), {})
