"""Fixtures: a gateway in front of two fault-injecting upstreams, on loopback sockets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from localsuite.core.retry import no_backoff
from localsuite.core.tracing import Tracing
from localsuite.gateway.app import create_gateway_app
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import Stack, make_settings
from localsuite.testing.servers import serve_in_thread


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with no_backoff():
        yield


@pytest.fixture
def stack_factory() -> Iterator[Any]:
    opened: list[Any] = []

    def build(tracing: Tracing | None = None, **overrides: Any) -> Stack:
        primary, secondary = FakeUpstream("primary"), FakeUpstream("secondary")
        ctx_p = serve_in_thread(primary.app())
        ctx_s = serve_in_thread(secondary.app())
        p_url, s_url = ctx_p.__enter__(), ctx_s.__enter__()
        app = create_gateway_app(make_settings(p_url, s_url, **overrides), tracing=tracing)
        ctx_g = serve_in_thread(app)
        url = ctx_g.__enter__()
        opened.extend([ctx_g, ctx_s, ctx_p])
        return Stack(url, primary, secondary, app.state.gateway, p_url, s_url)

    yield build
    for ctx in opened:
        ctx.__exit__(None, None, None)


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    result: Stack = stack_factory()
    return result
