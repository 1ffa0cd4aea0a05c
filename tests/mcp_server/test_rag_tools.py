"""`rag_search` and `index_documents` against the real rag service (real embeddings,
embedded Qdrant, answers from the gateway over fake upstreams), and the paths the MCP
server refuses before rag is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from localsuite.testing.documents import LIGHTHOUSE, SEOUL
from localsuite.testing.rag import Rag

from .conftest import Connect, RagFactory, Services


def write_corpus(documents: Path) -> None:
    (documents / "notes").mkdir(parents=True, exist_ok=True)
    (documents / "notes" / "lighthouse.md").write_text(LIGHTHOUSE)
    (documents / "seoul.txt").write_text(SEOUL)


async def test_index_then_search_with_and_without_an_answer(
    services: Services, rag: Rag, connect: Connect
) -> None:
    services.rag = rag
    write_corpus(rag.documents)
    async with connect() as mcp:
        indexed = await mcp.ok("index_documents", path=".", collection="docs", wait_seconds=60)
        assert indexed["finished"] is True and indexed["path"] == "."
        job = indexed["job"]
        assert (job["state"], job["collection"], job["files_total"]) == ("done", "docs", 2)
        assert job["files_failed"] == 0 and job["chunks_added"] > 2

        found = await mcp.ok("rag_search", query="Who kept a green ledger?", collection="docs",
                             topk=2)  # fmt: skip
        assert found["collection"] == "docs" and found["answer"] is None
        assert len(found["chunks"]) == 2
        best = found["chunks"][0]
        assert best["source"] == "notes/lighthouse.md"
        assert "ledger" in best["text"] and best["score"] >= found["chunks"][1]["score"]

        answered = await mcp.ok("rag_search", query="한강", collection="docs", generate=True)
        assert answered["chunks"][0]["source"] == "seoul.txt"
        assert answered["answer"] and answered["model"]
        assert any(chunk["used"] for chunk in answered["chunks"])


@pytest.mark.llama
async def test_answers_and_chat_from_a_real_llama_server(
    services: Services, make_rag: RagFactory, gateway_url: str, connect: Connect
) -> None:
    """What a real llama-server sends (usage with nested details, its model name) reads
    as well as the fakes' answers do."""
    rag = make_rag(gateway_url)
    services.rag, services.gateway = rag, gateway_url
    write_corpus(rag.documents)
    assert rag.index("documents")["state"] == "done"
    async with connect() as mcp:
        found = await mcp.ok("rag_search", query="Who kept a green ledger?", generate=True)
        chat = await mcp.ok("chat", message="Say hello.", max_tokens=8)
    assert found["chunks"][0]["source"] == "notes/lighthouse.md"
    assert found["answer"] and found["usage"]["completion_tokens"] > 0
    assert chat["answer"] and chat["served_model"] and chat["usage"]["completion_tokens"] > 0


async def test_a_job_is_returned_at_once_and_a_second_index_changes_nothing(
    services: Services, rag: Rag, connect: Connect
) -> None:
    services.rag = rag
    write_corpus(rag.documents)
    async with connect() as mcp:
        started = await mcp.ok("index_documents", path=str(rag.documents / "seoul.txt"))
        assert started["path"] == "seoul.txt"
        assert started["job"]["collection"] == "documents"  # RAG_COLLECTION
        assert started["finished"] == (started["job"]["state"] == "done")
        done = rag.wait_job(started["job"]["id"])
        assert done["state"] == "done" and done["chunks_added"] > 0

        again = await mcp.ok("index_documents", path="seoul.txt", wait_seconds=60)
        assert again["job"]["chunks_added"] == 0
        assert again["job"]["chunks_unchanged"] == done["chunks_added"]


async def test_searching_a_collection_that_does_not_exist_is_rags_refusal(
    services: Services, rag: Rag, connect: Connect
) -> None:
    services.rag = rag
    message = await connect.error("rag_search", query="anything", collection="nothing-here")
    assert "rag refused the request" in message and "nothing-here" in message


async def test_a_missing_file_inside_the_folder_is_rags_refusal(
    services: Services, rag: Rag, connect: Connect
) -> None:
    services.rag = rag
    message = await connect.error("index_documents", path="not-there.md")
    assert "rag refused the request" in message and "no such file" in message


@pytest.mark.parametrize("tool", ["rag_search", "index_documents"])
async def test_rag_down_is_named_with_what_to_do(
    services: Services, connect: Connect, tool: str
) -> None:
    arguments = {"query": "anything"} if tool == "rag_search" else {"path": "."}
    message = await connect.error(tool, **arguments)  # services.rag is None: a closed port
    assert "rag is not reachable" in message and "localsuite up" in message


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("../outside.txt", "`..` is not allowed"),
        ("notes/../../outside.txt", "`..` is not allowed"),
        ("/etc/hostname", "outside the documents folder"),
        ("escape/secret.txt", "outside the documents folder"),  # a symlink out of the folder
        ("outside-link", "outside the documents folder"),
        ("bad\x00name", "NUL"),
        ("", "at least 1 character"),
    ],
)
async def test_paths_outside_the_documents_folder_are_refused_before_rag_is_asked(
    services: Services, rag: Rag, connect: Connect, tmp_path: Path, path: str, says: str
) -> None:
    services.rag = rag
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for indexing")
    (rag.documents / "escape").symlink_to(outside)
    (rag.documents / "outside-link").symlink_to(outside / "secret.txt")
    message = await connect.error("index_documents", path=path)
    assert says in message
    assert rag.service.jobs.recent() == []


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"query": "x", "topk": 0}, "greater than or equal to 1"),
        ({"query": "x", "topk": 101}, "less than or equal to 100"),
        ({"query": ""}, "at least 1 character"),
        ({"query": "x", "collection": "../docs"}, "should match pattern"),
        ({"query": "x", "generate": "perhaps"}, "valid boolean"),
    ],
)
async def test_bad_search_arguments_are_refused(
    services: Services, connect: Connect, arguments: dict[str, object], says: str
) -> None:
    # rag is a closed port: a call would say so
    message = await connect.error("rag_search", **arguments)
    assert says in message and "not reachable" not in message


@pytest.mark.parametrize("wait", [-1, 121])
async def test_the_wait_is_bounded_by_the_settings(
    services: Services, connect: Connect, wait: float
) -> None:
    async with connect(mcp_index_wait_max=120) as mcp:
        message = await mcp.error("index_documents", path=".", wait_seconds=wait)
    assert "wait_seconds" in message and "not reachable" not in message
