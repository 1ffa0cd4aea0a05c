"""One table from a dependency's failure to the error a service answers with.

When a call to another service fails for good (its retries, if any, are spent), the
caller answers its own client with:

    what happened                           answer
    nobody answered (refused, timeout, cut)  503 + Retry-After  `<dependency>_unavailable`
    408, 502, 503, 504                       503 + Retry-After  `<dependency>_unavailable`
    429                                      429 + the dependency's Retry-After
    another 4xx                              the same status, the dependency's reason (`Refused`)
    500 or another 5xx, or a 2xx that is     502 `bad_upstream_response`
    not what the protocol promises

Services add what only they know (rag: a missing collection is a 404) before falling
back to `dependency_error`; the gateway's failover has its own, richer verdicts for the
inference backends (`gateway.engine`), but its other calls use this table too.
"""

from __future__ import annotations

from localsuite.core.errors import (
    LocalSuiteError,
    RateLimited,
    Refused,
    ServiceUnavailable,
    UpstreamError,
)
from localsuite.core.http import BadAnswer, ErrorAnswer, NoAnswer

UNAVAILABLE_STATUSES = frozenset({408, 502, 503, 504})


def dependency_error(
    name: str,
    failure: BaseException,
    *,
    retry_after: float = 1.0,
    hint: str = "",
    code: str | None = None,
) -> LocalSuiteError:
    """The error to answer with when `name` failed with `failure`.

    `hint` is appended to the message of an unavailable dependency (how to start it);
    `code` names its unavailability (default: `<name>_unavailable`)."""
    if isinstance(failure, LocalSuiteError):
        return failure
    code = code or f"{name.replace('-', '_').replace(' ', '_')}_unavailable"
    suffix = f"; {hint}" if hint else ""
    if isinstance(failure, NoAnswer):
        return ServiceUnavailable(
            f"{name} is not answering ({failure}){suffix}", retry_after=retry_after, code=code
        )
    if isinstance(failure, ErrorAnswer):
        status, reason = failure.status, failure.message()
        if status == 429:
            return RateLimited(
                f"{name} is busy: {reason}", retry_after=failure.retry_after or retry_after
            )
        if status in UNAVAILABLE_STATUSES:
            return ServiceUnavailable(
                f"{name} is unavailable (HTTP {status}: {reason}){suffix}",
                retry_after=failure.retry_after or retry_after,
                code=code,
            )
        if 400 <= status < 500:
            return Refused(status, f"{name} refused the request: {reason}")
        return UpstreamError(f"{name} failed (HTTP {status}: {reason})")
    if isinstance(failure, BadAnswer):
        return UpstreamError(f"{name} answered badly: {failure}")
    return UpstreamError(f"{name} failed: {type(failure).__name__}: {failure}")
