"""rag's traces: an index job and a query (plain and streamed), each one trace whose
children are the calls it made — embedding, Qdrant, the lexical index, generation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from localsuite.core.tracing import Tracing
from localsuite.testing.rag import Rag
from localsuite.testing.servers import wait_until

pytestmark = pytest.mark.llama

NOTE = b"The lighthouse keeper's cat is called Biscuit.\n"


def under(root: ReadableSpan, spans: list[ReadableSpan]) -> list[str]:
    """Names of the spans below `root` (children, grandchildren, ...), sorted."""
    below, frontier = [], {root.context.span_id}
    while True:
        found = [s for s in spans if s.parent is not None and s.parent.span_id in frontier
                 and s.name not in below]  # fmt: skip
        if not found:
            return sorted(below)
        below.extend(s.name for s in found)
        frontier = {s.context.span_id for s in found}


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


def test_an_index_job_and_queries_are_traced(rag_factory: Callable[..., Rag]) -> None:
    exporter = InMemorySpanExporter()
    rag = rag_factory(tracing=Tracing.to(exporter, "rag"))
    (rag.documents / "cat.md").write_bytes(NOTE)
    assert rag.index("traced")["state"] == "done"

    wait_until(lambda: any(s.name == "rag.index_job" for s in exporter.get_finished_spans()),
               what="the job's span")  # fmt: skip
    spans = list(exporter.get_finished_spans())
    job = one(spans, "rag.index_job")
    assert job.attributes is not None and job.attributes["localsuite.state"] == "done"
    assert {"rag.embedding", "rag.qdrant.upsert"} <= set(under(job, spans))
    exporter.clear()

    asked = rag.client.post("/query", json={"query": "What is the cat called?",
                                            "collection": "traced", "cache": False})  # fmt: skip
    assert asked.status_code == 200, asked.text
    spans = list(exporter.get_finished_spans())
    query = one(spans, "rag.query")
    assert under(query, spans) == ["rag.embedding", "rag.generation", "rag.lexical",
                                   "rag.qdrant.search"]  # fmt: skip
    assert {s.context.trace_id for s in spans} == {query.context.trace_id}
    exporter.clear()

    with rag.client.stream(
        "POST",
        "/query",
        json={"query": "What is the cat called?", "collection": "traced", "stream": True},
    ) as r:
        assert r.status_code == 200
        assert [line for line in r.iter_lines() if line][-1] == "data: [DONE]"
    wait_until(lambda: any(s.name == "rag.generation" for s in exporter.get_finished_spans()),
               what="the streamed generation's span")  # fmt: skip
    spans = list(exporter.get_finished_spans())
    query = one(spans, "rag.query")
    generation = one(spans, "rag.generation")
    assert generation.parent is not None and generation.parent.span_id == query.context.span_id
    assert generation.attributes is not None
    assert generation.attributes["localsuite.outcome"] == "ok"
