"""Property-based bad input against the rag service's OpenAPI: nothing may answer 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from localsuite.core.settings import Settings
from localsuite.gateway.app import create_gateway_app
from localsuite.rag.app import create_rag_app
from localsuite.testing.documents import write_mixed_corpus
from localsuite.testing.fake_upstream import FakeUpstream
from localsuite.testing.gateway_stack import make_settings
from localsuite.testing.servers import assert_no_server_error, serve_in_thread

_served: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def rag(embedding_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    data = tmp_path_factory.mktemp("rag-data")
    write_mixed_corpus(data / "documents")
    with serve_in_thread(FakeUpstream("llm").app()) as upstream:
        gateway = create_gateway_app(make_settings(upstream, upstream))
        with serve_in_thread(gateway) as gateway_url:
            settings = Settings(
                _env_file=None, data_dir=data, embedding_url=embedding_url,
                api_gateway_url=gateway_url, rag_index_sync_wait=5,
            )  # fmt: skip
            with serve_in_thread(create_rag_app(settings)) as url:
                _served["url"] = url
                yield


schema = schemathesis.openapi.from_dict(
    create_rag_app(Settings(_env_file=None, data_dir=Path("unused"))).openapi()  # type: ignore[call-arg]
)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_errors(case: Any) -> None:
    response = case.call(base_url=_served["url"], timeout=60)
    # Every dependency is up: a 5xx here is the rag service's own failure.
    assert_no_server_error(case, response)
