"""Property-based bad input against the gateway's OpenAPI: nothing may answer 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from localsuite.core.settings import Settings
from localsuite.gateway.app import create_gateway_app
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.servers import assert_no_server_error, serve_in_thread

_served: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def gateway() -> Iterator[None]:
    with (
        serve_in_thread(FakeUpstream("primary").app()) as primary,
        serve_in_thread(FakeUpstream("secondary").app()) as secondary,
    ):
        app = create_gateway_app(make_settings(primary, secondary, embedding_url=primary))
        with serve_in_thread(app) as url:
            _served["url"] = url
            yield


# The schema is the app's own; building the app starts nothing.
schema = schemathesis.openapi.from_dict(
    create_gateway_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_errors(case: Any) -> None:
    response = case.call(base_url=_served["url"], timeout=30)
    # The fake upstream is healthy: a 5xx here is the gateway's own failure.
    assert_no_server_error(case, response)
