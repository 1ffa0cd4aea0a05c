"""One HTTP-client factory, and the one place aiohttp's exceptions are translated.

Outcomes of a call to another service fall in two families (never mixed):

    NoAnswer                 nobody answered: the request may not even have arrived
    ├── ConnectFailed        refused, unreachable, or connect timeout
    ├── AnswerTimeout        connected, then silence past the first-byte or idle timeout
    └── ConnectionLost       the connection broke while the answer was being read
    ErrorAnswer              an HTTP answer with an error status (and maybe Retry-After)

Callers decide what each means (failover, retry, 503); they never see aiohttp's tree.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson


class NoAnswer(Exception):
    kind = "no_answer"


class ConnectFailed(NoAnswer):
    kind = "connect"


class AnswerTimeout(NoAnswer):
    kind = "timeout"


class ConnectionLost(NoAnswer):
    kind = "connection_lost"


class ErrorAnswer(Exception):
    """The peer answered with an error status."""

    def __init__(self, status: int, body: bytes, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after

    def message(self) -> str:
        """The peer's own reason, from an OpenAI-shaped or llama.cpp-shaped body if it has one."""
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return self.body[:500].decode("utf-8", "replace").strip() or f"HTTP {self.status}"
        if isinstance(data, dict):
            err = data.get("error", data)
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                return str(err["message"])
            if isinstance(err, str):
                return err
            if isinstance(data.get("detail"), str):
                return str(data["detail"])
        return f"HTTP {self.status}"


KEEPALIVE_SECONDS = 4.0


def bearer(key: str | None) -> dict[str, str]:
    """The one place an `Authorization` header is built: empty without a key."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def create_session(*, connect_timeout: float, limit: int = 0) -> aiohttp.ClientSession:
    """A pooled client session; read timeouts are per call, the connect timeout is shared."""
    # Idle connections are dropped before the peers drop them (llama-server's and uvicorn's
    # keep-alive is 5 s): a pooled connection the peer has closed fails the next request.
    connector = aiohttp.TCPConnector(
        limit=limit, keepalive_timeout=KEEPALIVE_SECONDS, enable_cleanup_closed=True
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Translate aiohttp's and asyncio's errors into `NoAnswer` kinds."""
    try:
        yield
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise ConnectFailed(f"{what}: cannot connect ({exc.__class__.__name__})") from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        raise AnswerTimeout(f"{what}: no answer in time") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise ConnectionLost(f"{what}: connection lost ({exc.__class__.__name__})") from exc
    except (aiohttp.ClientOSError, ConnectionError) as exc:
        raise ConnectionLost(f"{what}: connection error ({exc})") from exc
    except aiohttp.ClientError as exc:
        raise ConnectionLost(f"{what}: {exc.__class__.__name__}: {exc}") from exc
    except asyncio.IncompleteReadError as exc:
        raise ConnectionLost(f"{what}: answer cut short") from exc


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class BadAnswer(Exception):
    """A 2xx answer whose body is not the JSON the protocol promises."""


async def call_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    budget: float,
    payload: object = None,
    headers: dict[str, str] | None = None,
    what: str = "",
) -> Any:
    """One JSON call to another service; `budget` bounds the whole call, in seconds
    (the caller cuts its phase timeout to its request's deadline: `Deadline.budget`).

    Returns the decoded body of a 2xx answer. Raises `ErrorAnswer` for an error status,
    a `NoAnswer` kind when nobody answered in time, `BadAnswer` for a 2xx that is not JSON.
    """
    what = what or url
    with translate_errors(what):
        async with (
            asyncio.timeout(budget),
            session.request(
                method,
                url,
                data=None if payload is None else orjson.dumps(payload),
                headers={"Content-Type": "application/json", **(headers or {})},
            ) as response,
        ):
            body = await response.read()
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status >= 400:
        raise ErrorAnswer(status, body, retry_after)
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise BadAnswer(f"{what}: answered HTTP {status} with a body that is not JSON") from exc
