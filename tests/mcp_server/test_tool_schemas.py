"""What clients see before calling anything: six tools, each input typed, bounded and
described, defaults from the settings, and an output schema."""

from __future__ import annotations

from typing import Any

from mcp_types import Tool

from .conftest import Connect


async def listed(connect: Connect, **overrides: Any) -> dict[str, Tool]:
    async with connect(**overrides) as mcp:
        return {tool.name: tool for tool in (await mcp.client.list_tools()).tools}


async def test_six_tools_with_described_inputs_and_output_schemas(connect: Connect) -> None:
    tools = await listed(connect)
    assert sorted(tools) == sorted(
        ["chat", "rag_search", "index_documents", "list_models", "switch_model", "stack_status"]
    )
    for tool in tools.values():
        assert tool.description and tool.title, tool.name
        assert tool.output_schema is not None, tool.name
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description"), f"{tool.name}.{name}"
    assert tools["list_models"].annotations is not None
    assert tools["list_models"].annotations.read_only_hint is True


async def test_ranges_enums_and_defaults_come_from_the_settings(connect: Connect) -> None:
    tools = await listed(connect, rag_topk=7, rag_collection="notes", mcp_index_wait_max=30)
    search = tools["rag_search"].input_schema
    assert search["required"] == ["query"]
    topk = search["properties"]["topk"]
    assert (topk["type"], topk["minimum"], topk["maximum"], topk["default"]) == (
        "integer", 1, 100, 7,
    )  # fmt: skip
    assert search["properties"]["collection"]["default"] == "notes"
    assert search["properties"]["generate"] == {
        "type": "boolean", "default": False, "title": "Generate",
        "description": search["properties"]["generate"]["description"],
    }  # fmt: skip

    switch = tools["switch_model"].input_schema
    assert sorted(switch["required"]) == ["model", "service"]
    assert switch["properties"]["service"]["enum"] == ["inference-chat", "inference-code"]
    assert "never a path" in switch["properties"]["model"]["description"]

    index = tools["index_documents"].input_schema
    assert index["properties"]["wait_seconds"]["maximum"] == 30
    assert index["properties"]["path"]["default"] == "."
    assert "ctx" not in index["properties"]

    chat = tools["chat"].input_schema
    assert chat["properties"]["model"]["default"] == "auto"
    assert "code-7b" in chat["properties"]["model"]["description"]
