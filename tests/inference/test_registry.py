"""The model registry and the llama-server command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from localsuite.core.errors import NotFound
from localsuite.core.settings import Settings
from localsuite.inference.command import inference_plan
from localsuite.inference.registry import ModelRegistry

BUNDLED = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    (tmp_path / "qwen2.5-coder-7b-instruct-q4_k_m.gguf").write_bytes(b"GGUF")
    (tmp_path / "notes.txt").write_text("not a model")
    return ModelRegistry(tmp_path)


def test_lists_bundled_and_models_dir(registry: ModelRegistry) -> None:
    names = {m.name: m.source for m in registry.models()}
    assert names == {BUNDLED: "bundled", "qwen2.5-coder-7b-instruct-q4_k_m.gguf": "models_dir"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", BUNDLED),
        ("bundled", BUNDLED),
        (BUNDLED, BUNDLED),
        ("SmolLM2-135M-Instruct.Q4_1", BUNDLED),
        ("qwen2.5-coder-7b-instruct-q4_k_m", "qwen2.5-coder-7b-instruct-q4_k_m.gguf"),
    ],
)
def test_resolve_by_name(registry: ModelRegistry, name: str, expected: str) -> None:
    assert registry.resolve(name).name == expected


@pytest.mark.parametrize("name", ["llama-70b.gguf", "../secret.gguf", "/etc/passwd", "notes.txt"])
def test_anything_else_is_refused_with_the_valid_names(registry: ModelRegistry, name: str) -> None:
    with pytest.raises(NotFound) as raised:
        registry.resolve(name)
    assert BUNDLED in raised.value.message and "qwen2.5-coder" in raised.value.message


def test_command_line_follows_settings(registry: ModelRegistry) -> None:
    settings = Settings(
        _env_file=None, code_model="qwen2.5-coder-7b-instruct-q4_k_m", code_n_gpu_layers=33,
        chat_n_gpu_layers=7, llama_parallel=3, llama_temp=0.2, llama_threads=2,
    )  # fmt: skip
    plan = inference_plan("inference-code", settings, registry, binary=Path("/bin/true"))
    argv = plan.argv
    flag = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("--")}
    assert argv[0] == "/bin/true"
    assert flag["--model"].endswith("qwen2.5-coder-7b-instruct-q4_k_m.gguf")
    assert flag["--port"] == "8004" and flag["--n-gpu-layers"] == "33"
    assert flag["--parallel"] == "3" and flag["--temp"] == "0.2" and flag["--threads"] == "2"
    assert flag["--alias"] == "qwen2.5-coder-7b-instruct-q4_k_m"
    chat = inference_plan("inference-chat", settings, registry, binary=Path("/bin/true"))
    assert "7" in chat.argv and chat.port == 8001 and chat.model.name == BUNDLED


def test_unknown_service_is_refused(registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="unknown inference service"):
        inference_plan(
            "inference-poetry", Settings(_env_file=None), registry, binary=Path("/bin/true")
        )
