"""The suite's errors, and their rendering on the wire in each protocol's shape.

    LocalSuiteError              status  type
    ├── InvalidRequest           400     invalid_request_error
    │   ├── Unprocessable        422     invalid_request_error
    │   ├── NotFound             404     not_found_error
    │   ├── Forbidden            403     permission_error
    │   ├── Conflict             409     conflict_error      busy, or it would break a rule
    │   ├── PayloadTooLarge      413     invalid_request_error
    │   ├── MethodNotAllowed     405     invalid_request_error
    │   └── Refused              4xx     invalid_request_error  a dependency's own 4xx, its
    │                                                          status and reason kept
    ├── Unauthorized             401     authentication_error
    ├── RateLimited              429     rate_limit_error      (Retry-After)
    ├── UpstreamError            502     upstream_error        an answer that is garbage
    ├── ServiceUnavailable       503     service_unavailable   (Retry-After) nobody could answer
    └── DeadlineExceeded         504     timeout_error         the request's deadline passed

The `type` tells a client whether retrying can help: `rate_limit_error`,
`service_unavailable` and `timeout_error` can pass; the others will not.

An error is built once, with everything it says, and never changed afterwards. It
reaches the wire in one place per service (`core.app`'s handlers), in the shape of the
protocol the client speaks (`ErrorShape`):

- `OPENAI`: `{"error": {"message", "type", "code"[, "param"]}}` — every service's default;
- `ANTHROPIC`: `{"type": "error", "error": {"type", "message"}}` with Anthropic's types, and
  "no backend can take it now" (503) as its own `529 overloaded_error`, which its SDK
  retries.

`Retry-After` goes with every error that has one. A client error is never a 500: a 500
is a bug, rendered as `internal_error` (`api_error` for Anthropic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson


class LocalSuiteError(Exception):
    status: int = 500
    type: ClassVar[str] = "internal_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.retry_after = retry_after
        self.param = param

    def body(self) -> dict[str, Any]:
        """The OpenAI-shaped body (see `ErrorShape` for the others)."""
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

    def render(self) -> bytes:
        return orjson.dumps(self.body())

    @property
    def outcome(self) -> str:
        """How a request that ended in this error is counted: `client_error` (the client's
        to fix), or `failed` (5xx and 429: ours, or passing)."""
        return "client_error" if self.status < 500 and self.status != 429 else "failed"


class InvalidRequest(LocalSuiteError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


class Unprocessable(InvalidRequest):
    status = 422
    default_code = "invalid_value"


class NotFound(InvalidRequest):
    status = 404
    type = "not_found_error"
    default_code = "not_found"


class Forbidden(InvalidRequest):
    status = 403
    type = "permission_error"
    default_code = "forbidden"


class Conflict(InvalidRequest):
    status = 409
    type = "conflict_error"
    default_code = "conflict"


class PayloadTooLarge(InvalidRequest):
    status = 413
    default_code = "payload_too_large"


class MethodNotAllowed(InvalidRequest):
    status = 405
    default_code = "method_not_allowed"


class Refused(InvalidRequest):
    """A dependency refused the request with a 4xx: the client sees its status and reason."""

    default_code = "refused"

    def __init__(self, status: int, message: str, **kw: Any) -> None:
        if not 400 <= status < 500:
            raise ValueError(f"a refusal is a 4xx, not {status}")
        super().__init__(message, **kw)
        self.status = status


class Unauthorized(LocalSuiteError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class RateLimited(LocalSuiteError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"


class UpstreamError(LocalSuiteError):
    status = 502
    type = "upstream_error"
    default_code = "bad_upstream_response"


class ServiceUnavailable(LocalSuiteError):
    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = 1.0, **kw: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kw)


class DeadlineExceeded(LocalSuiteError):
    status = 504
    type = "timeout_error"
    default_code = "deadline_exceeded"


class ConfigError(Exception):
    """Configuration that cannot work; raised at start-up, never rendered on the wire."""


# --- shapes on the wire ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    status: int
    body: bytes
    headers: dict[str, str]


class ErrorShape:
    """OpenAI's error shape; every service's default."""

    name: ClassVar[str] = "openai"

    def status(self, error: LocalSuiteError) -> int:
        return error.status

    def body(self, error: LocalSuiteError) -> dict[str, Any]:
        return error.body()

    def render(self, error: LocalSuiteError) -> Rendered:
        return Rendered(self.status(error), orjson.dumps(self.body(error)), error.headers())


class AnthropicShape(ErrorShape):
    """Anthropic's Messages API: `{"type": "error", "error": {"type", "message"}}`."""

    name = "anthropic"
    _TYPES: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        504: "timeout_error",
        529: "overloaded_error",
    }

    def status(self, error: LocalSuiteError) -> int:
        return 529 if error.status == 503 else error.status

    def body(self, error: LocalSuiteError) -> dict[str, Any]:
        status = self.status(error)
        kind = self._TYPES.get(status)
        if kind is None:
            kind = "invalid_request_error" if status < 500 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": error.message}}


OPENAI = ErrorShape()
ANTHROPIC = AnthropicShape()
