"""Who may call what: keys for use and for administration, and no exposure without one.

    route                      no key set              LOCALSUITE_API_KEY set
    /health/live, /health,     open                    open (they say nothing secret)
    /metrics
    use (generate, embed,      open                    the API key or the admin key
    index, query, status ...)
    admin (drain, reload,      loopback callers only   the admin key (LOCALSUITE_ADMIN_KEY,
    restart, switch, delete)   (403 for the others)    which defaults to the API key)

A key is sent as `Authorization: Bearer <key>` or `x-api-key: <key>` (Anthropic's
clients send that one) and compared in constant time. A wrong or missing key is 401; the
API key on an admin route, where an admin key of its own is set, is 403. Keys never
appear in answers or logs.

A service asked to listen beyond loopback with no key refuses to start
(`refuse_exposure`), unless `LOCALSUITE_ALLOW_NO_AUTH=1` accepts the risk, which is then
logged as a warning at every start. The supervisor checks this before it starts anything.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable

from localsuite.core.errors import ConfigError, Forbidden, LocalSuiteError, Unauthorized
from localsuite.core.settings import Settings

log = logging.getLogger("localsuite")

OPEN_PATHS = frozenset({"/health/live", "/health", "/metrics"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

AdminRoutes = Callable[[str, str], bool]  # (method, path) → whether it changes the service


def admin_under_slash_admin(method: str, path: str) -> bool:
    """The default: what changes state under `/admin/` (the gateway's drain and reload)."""
    return method not in SAFE_METHODS and path.startswith("/admin/")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; not "" or 0.0.0.0 (every address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Access:
    def __init__(
        self,
        api_key: str | None,
        admin_key: str | None = None,
        admin_routes: AdminRoutes = admin_under_slash_admin,
    ) -> None:
        admin_key = admin_key or api_key
        self._use = [_Key(k) for k in {api_key, admin_key} if k]
        self._admin = _Key(admin_key) if admin_key else None
        self._separate_admin = bool(admin_key and admin_key != api_key)
        self.admin_routes = admin_routes

    @property
    def keyed(self) -> bool:
        return bool(self._use)

    def refusal(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], client: str | None
    ) -> LocalSuiteError | None:
        """Why this call may not go on (401/403), or None."""
        if path in OPEN_PATHS:
            return None
        if self.admin_routes(method, path):
            return self._admin_refusal(headers, client)
        if not self._use or any(k.given(headers) for k in self._use):
            return None
        return _missing_key()

    def _admin_refusal(
        self, headers: list[tuple[bytes, bytes]], client: str | None
    ) -> LocalSuiteError | None:
        if self._admin is None:
            if client is not None and is_loopback(client):
                return None
            return Forbidden(
                "this route changes the service: with no key set it answers callers on this "
                "machine only; set LOCALSUITE_ADMIN_KEY (or LOCALSUITE_API_KEY) to allow others",
                code="admin_loopback_only",
            )
        if self._admin.given(headers):
            return None
        if self._separate_admin and any(k.given(headers) for k in self._use):
            return Forbidden(
                "this route changes the service: it needs the admin key (LOCALSUITE_ADMIN_KEY), "
                "not the API key",
                code="admin_key_required",
            )
        return _missing_key()


class _Key:
    def __init__(self, key: str) -> None:
        self._bearer = f"Bearer {key}".encode()
        self._key = key.encode()

    def given(self, headers: list[tuple[bytes, bytes]]) -> bool:
        ok = False
        for name, value in headers:
            if name == b"authorization":
                ok |= hmac.compare_digest(value, self._bearer)
            elif name == b"x-api-key":
                ok |= hmac.compare_digest(value, self._key)
        return ok


def _missing_key() -> Unauthorized:
    return Unauthorized(
        "missing or wrong API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
    )


def refuse_exposure(settings: Settings, what: str) -> None:
    """Refuse to listen beyond loopback with no key (see the module); warn when allowed."""
    if is_loopback(settings.host) or settings.api_key:
        return
    if settings.localsuite_allow_no_auth:
        log.warning(
            "%s listens on %s with no key (LOCALSUITE_ALLOW_NO_AUTH=1): anyone who can reach "
            "it can use the models and the documents", what, settings.host,
        )  # fmt: skip
        return
    raise ConfigError(
        f"{what} would listen on {settings.host or 'every address'} with no key: set "
        "LOCALSUITE_API_KEY (or LOCALSUITE_ALLOW_NO_AUTH=1 to accept the risk)"
    )
