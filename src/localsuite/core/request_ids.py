"""Request ids: the client's `x-request-id` (or a new one) on every answer, error or not.

Every service's app (`core.app.ServiceApp`) keeps the id in the ASGI scope's state and
sends it back; the gateway sends it to the backend with each attempt and writes it in
every log line about the request, so that one id follows a request across services.
"""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request

HEADER = b"x-request-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_from(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The client's id if it is well formed (printable, at most 128 characters), else a
    new one: an id is echoed in headers and logs, so it is never taken as given."""
    for name, value in headers:
        if name == HEADER:
            return value if _VALID.match(value) else new_request_id().encode()
    return new_request_id().encode()


def request_id_of(request: Request) -> str:
    state = request.scope.get("state") or {}
    value = state.get("request_id")
    return value if isinstance(value, str) else new_request_id()
