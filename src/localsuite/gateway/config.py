"""The routing table: aliases → ordered deployments on backends, and the router policy.

Three sources, one result (`RoutingConfig`):

- the env defaults: `chat-7b` (also `chat`) → inference-chat, then inference-code;
  `code-7b` (also `code`) → inference-code, then inference-chat;
- a LiteLLM-style YAML (`GATEWAY_CONFIG`): `model_list` entries (`model_name`,
  `litellm_params.model` with its provider prefix stripped, `api_base`, `api_key`,
  `order`/`priority`, `timeout`, `stream_timeout`), `router_settings`/`router`/
  `litellm_settings` (`num_retries`, `timeout`, `retry_on_status_codes`, `fallbacks`,
  `context_window_fallbacks`, `allowed_fails`, `cooldown_time`, `model_group_alias`) and
  `general_settings.master_key`;
- the original suite's `config.p2.yaml` (the same keys, with `priority` per entry and a
  top-level `router:` block).

`priority`/`order` are honoured as the failover order (lower first, file order on ties).
A backend is one server: deployments that share `api_base` and key share its breaker and
probe. Keys the gateway does not use are listed in `ignored_keys`, reported once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_USED_ROUTER_KEYS = {
    "num_retries",
    "timeout",
    "request_timeout",
    "retry_on_status_codes",
    "fallbacks",
    "context_window_fallbacks",
    "allowed_fails",
    "cooldown_time",
    "model_group_alias",
}
_USED_PARAMS = {"model", "api_base", "api_key", "order", "priority", "timeout", "stream_timeout"}
_USED_ENTRY_KEYS = {"model_name", "litellm_params", "priority", "order", "model_info"}
_ENV_REF = re.compile(r"^os\.environ/(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One server that speaks the OpenAI API."""

    name: str
    api_base: str
    api_key: str | None = None

    @property
    def health_url(self) -> str:
        """llama-server (and vLLM) answer `/health` at the root, beside `/v1`."""
        base = self.api_base.rstrip("/")
        return (base.removesuffix("/v1") or base) + "/health"


@dataclass(frozen=True, slots=True)
class Deployment:
    """An alias served by a backend, with that backend's upstream model name."""

    backend: str
    model: str | None = None  # None: the client's model field is sent unchanged
    timeout: float | None = None  # caps this attempt
    stream_timeout: float | None = None  # first-byte timeout for streams on this backend


@dataclass(frozen=True, slots=True)
class RouterPolicy:
    num_retries: int = 1  # same-backend retries of a transient error answer
    retry_on_status: frozenset[int] = DEFAULT_RETRY_STATUSES
    allowed_fails: int = 3
    cooldown: float = 5.0
    timeout: float | None = None  # the request deadline; None: LLM_REQUEST_TIMEOUT
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_window_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    backends: Mapping[str, BackendSpec]
    routes: Mapping[str, tuple[Deployment, ...]]
    aliases: Mapping[str, str]  # synonym → alias
    policy: RouterPolicy
    master_key: str | None = None
    ignored_keys: tuple[str, ...] = ()
    source: str = "env"

    def resolve(self, name: str) -> str | None:
        """The alias a requested model name means, or None if unknown."""
        if name in self.routes:
            return name
        return self.aliases.get(name)

    @property
    def model_names(self) -> list[str]:
        return [*self.routes, *self.aliases]


def _policy_from_settings(settings: Settings) -> RouterPolicy:
    return RouterPolicy(
        num_retries=settings.gateway_same_backend_retries,
        allowed_fails=settings.gateway_breaker_failures,
        cooldown=settings.gateway_breaker_cooldown,
    )


def default_routing(settings: Settings) -> RoutingConfig:
    chat = BackendSpec("inference-chat", settings.chat_backend_url)
    code = BackendSpec("inference-code", settings.code_backend_url)
    chat_alias, code_alias = settings.api_gateway_chat_model, settings.api_gateway_code_model
    routes = {
        chat_alias: (Deployment(chat.name), Deployment(code.name)),
        code_alias: (Deployment(code.name), Deployment(chat.name)),
    }
    return RoutingConfig(
        backends={chat.name: chat, code.name: code},
        routes=routes,
        aliases={"chat": chat_alias, "code": code_alias}
        if {chat_alias, code_alias}.isdisjoint({"chat", "code"})
        else {},
        policy=_policy_from_settings(settings),
    )


def _default_synonyms(routes: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    synonyms = dict(given)
    for short, full in (("chat", "chat-7b"), ("code", "code-7b")):
        if full in routes and short not in routes and short not in synonyms:
            synonyms[short] = full
    return synonyms


def load_routing(settings: Settings, environ: Mapping[str, str]) -> RoutingConfig:
    """The routing table from `GATEWAY_CONFIG` if set, else the env defaults."""
    if settings.gateway_config is None:
        return default_routing(settings)
    path = settings.gateway_config
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"GATEWAY_CONFIG={path}: cannot read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"GATEWAY_CONFIG={path}: not valid YAML: {exc}") from exc
    return parse_litellm_config(data, settings, environ, source=str(path))


def parse_litellm_config(
    data: Any, settings: Settings, environ: Mapping[str, str], source: str = "yaml"
) -> RoutingConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    ignored: list[str] = [
        k
        for k in data
        if k
        not in {"model_list", "router_settings", "router", "litellm_settings", "general_settings"}
    ]
    entries = data.get("model_list")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: `model_list` must be a non-empty list")

    backends: dict[str, BackendSpec] = {}
    by_endpoint: dict[tuple[str, str | None], str] = {}
    ranked: dict[str, list[tuple[float, int, Deployment]]] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: model_list[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping")
        alias = entry.get("model_name")
        params = entry.get("litellm_params") or {}
        if not isinstance(alias, str) or not alias:
            raise ConfigError(f"{where}: `model_name` is required")
        if not isinstance(params, dict):
            raise ConfigError(f"{where}: `litellm_params` must be a mapping")
        api_base = params.get("api_base")
        if not isinstance(api_base, str) or not urlsplit(api_base).netloc:
            raise ConfigError(f"{where}: `litellm_params.api_base` must be an http(s) URL")
        api_key = _resolve_secret(params.get("api_key"), environ, where)
        ignored += [f"model_list[{index}].{k}" for k in entry if k not in _USED_ENTRY_KEYS]
        ignored += [
            f"model_list[{index}].litellm_params.{k}" for k in params if k not in _USED_PARAMS
        ]

        key = (api_base.rstrip("/"), api_key)
        name = by_endpoint.get(key)
        if name is None:
            name = _backend_name(entry, api_base, backends)
            backends[name] = BackendSpec(name, api_base.rstrip("/"), api_key)
            by_endpoint[key] = name
        rank = _first_number(params.get("order"), entry.get("order"), params.get("priority"),
                             entry.get("priority"), where=where)  # fmt: skip
        deployment = Deployment(
            backend=name,
            model=_upstream_model(params.get("model")),
            timeout=_positive(params.get("timeout"), f"{where}.timeout"),
            stream_timeout=_positive(params.get("stream_timeout"), f"{where}.stream_timeout"),
        )
        ranked.setdefault(alias, []).append((rank, index, deployment))

    routes = {
        alias: tuple(d for _, _, d in sorted(items, key=lambda t: (t[0], t[1])))
        for alias, items in ranked.items()
    }
    router: dict[str, Any] = {}
    for block in ("litellm_settings", "router", "router_settings"):  # later blocks win
        section = data.get(block) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: `{block}` must be a mapping")
        ignored += [f"{block}.{k}" for k in section if k not in _USED_ROUTER_KEYS]
        router.update({k: v for k, v in section.items() if k in _USED_ROUTER_KEYS})

    policy = _policy_from_router(router, settings, set(routes), source)
    general = data.get("general_settings") or {}
    if not isinstance(general, dict):
        raise ConfigError(f"{source}: `general_settings` must be a mapping")
    ignored += [f"general_settings.{k}" for k in general if k != "master_key"]
    master_key = _resolve_secret(general.get("master_key"), environ, f"{source}: general_settings")

    synonyms = router.get("model_group_alias") or {}
    if not isinstance(synonyms, dict):
        raise ConfigError(f"{source}: `model_group_alias` must map names to model_names")
    for short, target in synonyms.items():
        target_name = target.get("model") if isinstance(target, dict) else target
        if target_name not in routes:
            raise ConfigError(f"{source}: model_group_alias {short!r} → unknown {target_name!r}")
    aliases = _default_synonyms(
        routes,
        {str(k): str(v.get("model") if isinstance(v, dict) else v) for k, v in synonyms.items()},
    )
    return RoutingConfig(backends, routes, aliases, policy, master_key, tuple(ignored), source)


def _policy_from_router(
    router: dict[str, Any], settings: Settings, aliases: set[str], source: str
) -> RouterPolicy:
    base = _policy_from_settings(settings)
    statuses = router.get("retry_on_status_codes")
    if statuses is not None and (
        not isinstance(statuses, list) or not all(isinstance(s, int) for s in statuses)
    ):
        raise ConfigError(f"{source}: `retry_on_status_codes` must be a list of status codes")
    timeout = router.get("timeout", router.get("request_timeout"))
    return RouterPolicy(
        num_retries=_non_negative_int(router.get("num_retries"), base.num_retries, source),
        retry_on_status=frozenset(statuses) if statuses else base.retry_on_status,
        allowed_fails=max(
            1, _non_negative_int(router.get("allowed_fails"), base.allowed_fails, source)
        ),
        cooldown=_positive(router.get("cooldown_time"), f"{source}: cooldown_time")
        or base.cooldown,
        timeout=_positive(timeout, f"{source}: timeout"),
        fallbacks=_fallbacks(router.get("fallbacks"), aliases, "fallbacks", source),
        context_window_fallbacks=_fallbacks(
            router.get("context_window_fallbacks"), aliases, "context_window_fallbacks", source
        ),
    )


def _fallbacks(value: Any, aliases: set[str], key: str, source: str) -> dict[str, tuple[str, ...]]:
    """LiteLLM writes fallbacks as a list of one-key mappings: `[{"a": ["b", "c"]}]`."""
    if value is None:
        return {}
    items = value if isinstance(value, list) else [value]
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: `{key}` entries must map an alias to a list of aliases")
        for alias, targets in item.items():
            target_list = [targets] if isinstance(targets, str) else targets
            if not isinstance(target_list, list):
                raise ConfigError(f"{source}: `{key}.{alias}` must be a list of aliases")
            unknown = [t for t in [alias, *target_list] if t not in aliases]
            if unknown:
                raise ConfigError(f"{source}: `{key}` names unknown model_name(s): {unknown}")
            out[str(alias)] = tuple(str(t) for t in target_list)
    return out


def _backend_name(entry: dict[str, Any], api_base: str, taken: Mapping[str, Any]) -> str:
    info = entry.get("model_info")
    if isinstance(info, dict) and isinstance(info.get("id"), str) and info["id"] not in taken:
        return str(info["id"])
    parts = urlsplit(api_base)
    name = parts.netloc or api_base
    suffix = 2
    candidate = name
    while candidate in taken:
        candidate = f"{name}#{suffix}"
        suffix += 1
    return candidate


def _upstream_model(value: Any) -> str | None:
    """`openai/qwen2.5` → `qwen2.5`: the provider prefix is LiteLLM's, not the server's."""
    if not isinstance(value, str) or not value:
        return None
    return value.split("/", 1)[1] if "/" in value else value


def _resolve_secret(value: Any, environ: Mapping[str, str], where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: keys must be strings")
    match = _ENV_REF.match(value)
    if match is None:
        return value
    resolved = environ.get(match["name"])
    if not resolved:
        raise ConfigError(f"{where}: {value} names an environment variable that is not set")
    return resolved


def _first_number(*values: Any, where: str) -> float:
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: `order`/`priority` must be a number")
        return float(value)
    return float("inf")


def _positive(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where} must be a positive number of seconds")
    return float(value)


def _non_negative_int(value: Any, default: int, where: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: expected a non-negative integer, got {value!r}")
    return value
