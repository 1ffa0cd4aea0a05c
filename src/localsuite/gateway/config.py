"""The routing table: aliases → deployments on servers, in priority groups, and the policy.

A *server* is one OpenAI-compatible endpoint (`api_base` + key): one llama-server, one
vLLM, one router-mode llama-server serving many models. A *deployment* is a model on a
server, with its own limits: the unit that is tried, balanced and broken. An alias lists
deployments with a priority: deployments of equal priority share the load, the next
priority is failover.

Three sources, one result (`RoutingConfig`):

- the env defaults: `API_GATEWAY_CHAT_MODEL` (chat-7b, also `chat`) → inference-chat (and
  its `CHAT_REPLICAS`), then inference-code; `API_GATEWAY_CODE_MODEL` (code-7b, also
  `code`) → inference-code, then inference-chat;
- a LiteLLM-style YAML (`GATEWAY_CONFIG`): `model_list` entries (`model_name`,
  `litellm_params.model` with its provider prefix stripped, `api_base`, `api_key`,
  `order`/`priority`, `weight`, `max_parallel_requests`, `timeout`, `stream_timeout`),
  `router_settings`/`router`/`litellm_settings` (`num_retries`, `timeout`,
  `retry_on_status_codes`, `fallbacks`, `context_window_fallbacks`, `allowed_fails`,
  `cooldown_time`, `model_group_alias`, and this gateway's own `alias_settings`) and
  `general_settings.master_key`;
- the original suite's `config.p2.yaml` (the same keys, with `priority` per entry and a
  top-level `router:` block).

`model_info.id` names an entry's server (first entry wins); else the server is named
after its host and port. Keys the gateway does not use are listed in `ignored_keys`,
reported once at start.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings

DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_ENV_REF = re.compile(r"^os\.environ/(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


# --- the result ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One server that speaks the OpenAI API (and maybe Anthropic's and Responses)."""

    name: str
    api_base: str
    api_key: str | None = None

    @property
    def root(self) -> str:
        """llama-server (and vLLM) answer `/health` at the root, beside `/v1`."""
        base = self.api_base.rstrip("/")
        return base.removesuffix("/v1") or base

    @property
    def health_url(self) -> str:
        return f"{self.root}/health"


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """A model on a server, with its own limits."""

    server: str
    model: str | None = None  # None: the client's model field is sent unchanged
    timeout: float | None = None  # caps one attempt
    stream_timeout: float | None = None  # first-byte timeout on this deployment
    max_parallel: int | None = None  # None: the server's slot count, if it says

    @property
    def id(self) -> str:
        return self.server if self.model is None else f"{self.server}/{self.model}"


@dataclass(frozen=True, slots=True)
class Route:
    """One deployment of an alias: lower `priority` first; equal priorities share load."""

    deployment: str
    priority: float = 0.0
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class AliasPolicy:
    queue_size: int = 64  # requests that may wait for a free deployment of the alias
    spill: bool = False  # a full queue spills to the next priority instead of a 429


@dataclass(frozen=True, slots=True)
class RouterPolicy:
    num_retries: int = 1  # same-deployment retries of a transient error answer
    retry_on_status: frozenset[int] = DEFAULT_RETRY_STATUSES
    allowed_fails: int = 3
    cooldown: float = 5.0
    timeout: float | None = None  # the request deadline; None: LLM_REQUEST_TIMEOUT
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_window_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_alias: AliasPolicy = field(default_factory=AliasPolicy)
    aliases: Mapping[str, AliasPolicy] = field(default_factory=dict)

    def alias(self, name: str) -> AliasPolicy:
        return self.aliases.get(name, self.default_alias)


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    servers: Mapping[str, ServerSpec]
    deployments: Mapping[str, DeploymentSpec]
    routes: Mapping[str, tuple[Route, ...]]  # alias → its deployments, by priority
    synonyms: Mapping[str, str]  # other model name (or glob pattern) → alias
    policy: RouterPolicy
    master_key: str | None = None
    ignored_keys: tuple[str, ...] = ()
    source: str = "env"

    def resolve(self, name: str) -> str | None:
        """The alias a requested model name means, or None if unknown."""
        if name in self.routes:
            return name
        exact = self.synonyms.get(name)
        if exact is not None:
            return exact
        for pattern, alias in self.synonyms.items():
            if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern):
                return alias
        return None

    @property
    def model_names(self) -> list[str]:
        plain = [n for n in self.synonyms if not any(c in n for c in "*?[")]
        return [*self.routes, *plain]

    def groups(self, alias: str) -> list[list[Route]]:
        """The alias's routes as priority groups, lowest priority first."""
        groups: dict[float, list[Route]] = {}
        for route in self.routes.get(alias, ()):
            groups.setdefault(route.priority, []).append(route)
        return [groups[p] for p in sorted(groups)]


# --- the env defaults ------------------------------------------------------------------


def _policy_from_settings(settings: Settings) -> RouterPolicy:
    return RouterPolicy(
        num_retries=settings.gateway_same_backend_retries,
        allowed_fails=settings.gateway_breaker_failures,
        cooldown=settings.gateway_breaker_cooldown,
        default_alias=AliasPolicy(
            queue_size=settings.gateway_queue_size, spill=settings.gateway_queue_spill
        ),
    )


def default_routing(settings: Settings) -> RoutingConfig:
    key = settings.api_key  # the suite's llama-servers demand its key too
    chat = [ServerSpec(name, url, key) for name, url in settings.chat_backends]
    code = ServerSpec("inference-code", settings.code_backend_url, key)
    servers = {s.name: s for s in [*chat, code]}
    deployments = {s.name: DeploymentSpec(s.name) for s in servers.values()}
    chat_alias, code_alias = settings.api_gateway_chat_model, settings.api_gateway_code_model
    routes = {
        chat_alias: (*(Route(s.name, 1) for s in chat), Route(code.name, 2)),
        code_alias: (Route(code.name, 1), *(Route(s.name, 2) for s in chat)),
    }
    return RoutingConfig(
        servers=servers,
        deployments=deployments,
        routes=routes,
        synonyms=_synonyms(routes, settings, {}),
        policy=_policy_from_settings(settings),
    )


def _synonyms(
    routes: Mapping[str, Any], settings: Settings, given: Mapping[str, str]
) -> dict[str, str]:
    """`chat`/`code` for the configured chat and code aliases, then the routing file's
    `model_group_alias`, then `GATEWAY_MODEL_ALIASES` (which wins)."""
    synonyms: dict[str, str] = {}
    for short, alias in (
        ("chat", settings.api_gateway_chat_model),
        ("code", settings.api_gateway_code_model),
    ):
        if alias in routes and short not in routes:
            synonyms[short] = alias
    synonyms.update(given)
    for item in settings.gateway_model_aliases.split(","):
        name, sep, alias = item.partition("=")
        if not item.strip():
            continue
        if not sep or alias.strip() not in routes:
            raise ConfigError(
                f"GATEWAY_MODEL_ALIASES: {item.strip()!r} must be NAME=ALIAS with ALIAS one of "
                f"{', '.join(routes)}"
            )
        synonyms[name.strip()] = alias.strip()
    return synonyms


# --- LiteLLM-style files ----------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def unused(self, prefix: str) -> list[str]:
        return [f"{prefix}{key}" for key in self.model_extra or {}]


def _positive_seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("must be a positive number of seconds")
    return float(value)


def _rank(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("`order`/`priority` must be a number")
    return float(value)


class _Params(_Section):
    model: str | None = None
    api_base: str
    api_key: str | None = None
    order: float | None = None
    priority: float | None = None
    weight: float | None = None
    max_parallel_requests: int | None = None
    timeout: float | None = None
    stream_timeout: float | None = None

    @field_validator("api_base")
    @classmethod
    def _url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError("`api_base` must be an http(s) URL")
        return value.rstrip("/")

    _seconds = field_validator("timeout", "stream_timeout", mode="before")(_positive_seconds)
    _ranks = field_validator("order", "priority", mode="before")(_rank)

    @field_validator("weight", mode="before")
    @classmethod
    def _weight(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value <= 0):  # fmt: skip
            raise ValueError("`weight` must be a positive number")
        return value

    @field_validator("max_parallel_requests", mode="before")
    @classmethod
    def _parallel(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):  # fmt: skip
            raise ValueError("`max_parallel_requests` must be a positive integer")
        return value


class _Entry(_Section):
    model_name: str
    litellm_params: _Params
    model_info: dict[str, Any] | None = None
    order: float | None = None
    priority: float | None = None

    _ranks = field_validator("order", "priority", mode="before")(_rank)

    @field_validator("model_name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value:
            raise ValueError("`model_name` is required")
        return value

    @property
    def rank(self) -> float:
        p = self.litellm_params
        for value in (p.order, self.order, p.priority, self.priority):
            if value is not None:
                return value
        return float("inf")


def _non_negative(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


class _AliasSettings(_Section):
    queue_size: int | None = None
    spill: bool | None = None

    _size = field_validator("queue_size", mode="before")(_non_negative)


class _Router(_Section):
    num_retries: int | None = None
    timeout: float | None = None
    request_timeout: float | None = None
    retry_on_status_codes: list[int] | None = None
    fallbacks: Any = None
    context_window_fallbacks: Any = None
    allowed_fails: int | None = None
    cooldown_time: float | None = None
    model_group_alias: dict[str, Any] | None = None
    alias_settings: dict[str, _AliasSettings] | None = None

    _counts = field_validator("num_retries", "allowed_fails", mode="before")(_non_negative)
    _seconds = field_validator("timeout", "request_timeout", "cooldown_time", mode="before")(
        _positive_seconds
    )


class _General(_Section):
    master_key: str | None = None


class _File(_Section):
    model_list: list[_Entry]
    router_settings: _Router | None = None
    router: _Router | None = None
    litellm_settings: _Router | None = None
    general_settings: _General | None = None

    @field_validator("model_list", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError("`model_list` must be a non-empty list")
        return value


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


def _validation_message(source: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return f"{source}: " + "; ".join(parts)


def parse_litellm_config(
    data: Any, settings: Settings, environ: Mapping[str, str], source: str = "yaml"
) -> RoutingConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_message(source, exc)) from exc

    ignored = parsed.unused("")
    servers: dict[str, ServerSpec] = {}
    by_endpoint: dict[tuple[str, str | None], str] = {}
    deployments: dict[str, DeploymentSpec] = {}
    ranked: dict[str, list[tuple[float, int, Route]]] = {}
    for index, entry in enumerate(parsed.model_list):
        where = f"{source}: model_list[{index}]"
        params = entry.litellm_params
        ignored += entry.unused(f"model_list[{index}].")
        ignored += params.unused(f"model_list[{index}].litellm_params.")
        api_key = _resolve_secret(params.api_key, environ, where)
        key = (params.api_base, api_key)
        server = by_endpoint.get(key)
        if server is None:
            server = _server_name(entry, params.api_base, servers)
            servers[server] = ServerSpec(server, params.api_base, api_key)
            by_endpoint[key] = server
        spec = DeploymentSpec(
            server=server,
            model=_upstream_model(params.model),
            timeout=params.timeout,
            stream_timeout=params.stream_timeout,
            max_parallel=params.max_parallel_requests,
        )
        known = deployments.setdefault(spec.id, spec)
        if known != spec:
            raise ConfigError(
                f"{where}: deployment {spec.id!r} is listed twice with different limits "
                "(timeout, stream_timeout, max_parallel_requests): give them once"
            )
        route = Route(spec.id, entry.rank, params.weight or 1.0)
        ranked.setdefault(entry.model_name, []).append((entry.rank, index, route))

    routes = {
        alias: tuple(r for _, _, r in sorted(items, key=lambda t: (t[0], t[1])))
        for alias, items in ranked.items()
    }
    merged: dict[str, Any] = {}
    for name in ("litellm_settings", "router", "router_settings"):  # later blocks win
        section: _Router | None = getattr(parsed, name)
        if section is not None:
            ignored += section.unused(f"{name}.")
            merged.update(section.model_dump(exclude_unset=True, exclude_none=True))
    router = _Router.model_validate({k: v for k, v in merged.items() if k in _Router.model_fields})
    policy = _policy_from_router(router, settings, set(routes), source)

    general = parsed.general_settings or _General()
    ignored += general.unused("general_settings.")
    master_key = _resolve_secret(general.master_key, environ, f"{source}: general_settings")

    given: dict[str, str] = {}
    for short, target in (router.model_group_alias or {}).items():
        target_name = target.get("model") if isinstance(target, dict) else target
        if target_name not in routes:
            raise ConfigError(f"{source}: model_group_alias {short!r} → unknown {target_name!r}")
        given[str(short)] = str(target_name)
    return RoutingConfig(
        servers=servers,
        deployments=deployments,
        routes=routes,
        synonyms=_synonyms(routes, settings, given),
        policy=policy,
        master_key=master_key,
        ignored_keys=tuple(ignored),
        source=source,
    )


def _policy_from_router(
    router: _Router, settings: Settings, aliases: set[str], source: str
) -> RouterPolicy:
    base = _policy_from_settings(settings)
    statuses = router.retry_on_status_codes
    alias_policies: dict[str, AliasPolicy] = {}
    for alias, given in (router.alias_settings or {}).items():
        if alias not in aliases:
            raise ConfigError(f"{source}: `alias_settings` names unknown model_name {alias!r}")
        alias_policies[alias] = AliasPolicy(
            queue_size=base.default_alias.queue_size if given.queue_size is None
            else given.queue_size,
            spill=base.default_alias.spill if given.spill is None else given.spill,
        )  # fmt: skip
    return RouterPolicy(
        num_retries=base.num_retries if router.num_retries is None else router.num_retries,
        retry_on_status=frozenset(statuses) if statuses else base.retry_on_status,
        allowed_fails=max(
            1, base.allowed_fails if router.allowed_fails is None else router.allowed_fails
        ),
        cooldown=router.cooldown_time or base.cooldown,
        timeout=router.timeout or router.request_timeout,
        fallbacks=_fallbacks(router.fallbacks, aliases, "fallbacks", source),
        context_window_fallbacks=_fallbacks(
            router.context_window_fallbacks, aliases, "context_window_fallbacks", source
        ),
        default_alias=base.default_alias,
        aliases=alias_policies,
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


def _server_name(entry: _Entry, api_base: str, taken: Mapping[str, Any]) -> str:
    info = entry.model_info or {}
    if isinstance(info.get("id"), str) and info["id"] and info["id"] not in taken:
        return str(info["id"])
    name = urlsplit(api_base).netloc or api_base
    candidate, suffix = name, 2
    while candidate in taken:
        candidate = f"{name}#{suffix}"
        suffix += 1
    return candidate


def _upstream_model(value: str | None) -> str | None:
    """`openai/qwen2.5` → `qwen2.5`: the provider prefix is LiteLLM's, not the server's."""
    if not value:
        return None
    return value.split("/", 1)[1] if "/" in value else value


def _resolve_secret(value: str | None, environ: Mapping[str, str], where: str) -> str | None:
    if not value:
        return None
    match = _ENV_REF.match(value)
    if match is None:
        return value
    resolved = environ.get(match["name"])
    if not resolved:
        raise ConfigError(f"{where}: {value} names an environment variable that is not set")
    return resolved
