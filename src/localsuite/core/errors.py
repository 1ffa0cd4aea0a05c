"""The suite's errors, and their one rendering on the wire.

    LocalSuiteError              status  type
    ├── InvalidRequest           400     invalid_request_error
    │   ├── Unprocessable        422     invalid_request_error
    │   ├── NotFound             404     not_found_error
    │   ├── Forbidden            403     permission_error
    │   ├── Conflict             409     conflict_error      busy, or it would break a rule
    │   └── PayloadTooLarge      413     invalid_request_error
    ├── Unauthorized             401     authentication_error
    ├── RateLimited              429     rate_limit_error      (Retry-After)
    ├── UpstreamError            502     upstream_error        an answer that is garbage
    ├── ServiceUnavailable       503     service_unavailable   (Retry-After) nobody could answer
    └── DeadlineExceeded         504     timeout_error         the request's deadline passed

The `type` tells a client whether retrying can help: `rate_limit_error`,
`service_unavailable` and `timeout_error` can pass; the others will not.

Every service renders these in one place (`core.app`), in OpenAI's shape:
`{"error": {"message", "type", "code"}}`, with `Retry-After` where it applies.
A client error is never a 500: a 500 is a bug, rendered as `internal_error`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import orjson


class LocalSuiteError(Exception):
    status: ClassVar[int] = 500
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
