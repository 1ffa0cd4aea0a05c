"""Property-based bad input against the embedding service's OpenAPI: nothing may answer 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from localsuite.core.settings import Settings
from localsuite.embedding.app import create_embedding_app
from localsuite.testing.servers import assert_no_server_error, serve_in_thread, wait_until

_served: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def service(make_settings: Any, real_backend: Any) -> Iterator[None]:
    import httpx

    # Small limits, so that generated lists and strings reach them.
    app = create_embedding_app(
        make_settings(embedding_max_texts=8, embedding_max_chars=64), backend=real_backend
    )
    with serve_in_thread(app) as url:
        wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200,
                   what="the embedding service")  # fmt: skip
        _served["url"] = url
        yield


# The schema is the app's own; building the app loads nothing.
schema = schemathesis.openapi.from_dict(create_embedding_app(Settings(_env_file=None)).openapi())


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_errors(case: Any) -> None:
    response = case.call(base_url=_served["url"], timeout=30)
    # The model is loaded and local: a 5xx here is the service's own failure.
    assert_no_server_error(case, response)
