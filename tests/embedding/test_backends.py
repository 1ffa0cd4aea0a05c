"""Choosing a backend: a configuration that cannot work is refused at start-up, clearly."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from localsuite.core.bundled import unpacked_model
from localsuite.core.errors import ConfigError
from localsuite.embedding.backends import create_backend
from localsuite.embedding.backends.fastembed import FastEmbedBackend
from localsuite.embedding.backends.openai import OpenAIBackend, spread
from localsuite.embedding.backends.sentence_transformers import SentenceTransformersBackend


def onnx_dir(tmp_path: Path) -> Path:
    """A directory shaped like fastembed's bge-small files (contents are not read here)."""
    for name in ("model_optimized.onnx", "tokenizer.json", "config.json"):
        (tmp_path / name).write_text("{}")
    return tmp_path


def test_the_default_is_the_bundled_model(make_settings: Any) -> None:
    backend = create_backend(make_settings())
    assert isinstance(backend, SentenceTransformersBackend)
    assert backend.model == "all-MiniLM-L6-v2"
    assert backend.dim is None  # nothing is loaded before the app starts
    assert "bundled" in backend.describe()["source"]


def test_a_local_model_directory(make_settings: Any, model_cache: Path) -> None:
    path = unpacked_model(model_cache)
    assert path is not None
    named_by_folder = create_backend(make_settings(embedding_model_path=path))
    assert named_by_folder.model == path.name
    named = create_backend(make_settings(embedding_model_path=path, embedding_model="my-minilm"))
    assert named.model == "my-minilm"


@pytest.mark.parametrize(("overrides", "says"), [
    ({"embedding_model": "BAAI/bge-small-en-v1.5"}, "EMBEDDING_MODEL_PATH"),
    ({"embedding_model_path": "/nonexistent/model"}, "not a sentence-transformers model"),
    ({"embedding_backend": "fastembed"}, "EMBEDDING_MODEL_PATH"),
    ({"embedding_backend": "fastembed"}, "qdrant/bge-small-en-v1.5-onnx-q"),
    ({"embedding_backend": "fastembed", "embedding_model_path": "/nonexistent"}, "not a directory"),
    ({"embedding_backend": "openai"}, "EMBEDDING_REMOTE_URL"),
])  # fmt: skip
def test_impossible_configurations(
    make_settings: Any, overrides: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        create_backend(make_settings(**overrides))


def test_fastembed_names_the_files_it_lacks(make_settings: Any, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"lacks \*\.onnx, tokenizer\.json"):
        create_backend(make_settings(embedding_backend="fastembed", embedding_model_path=tmp_path))


def test_fastembed_without_its_package_says_what_to_install(
    make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules is how Python spells "not installed", whatever this venv holds.
    monkeypatch.setitem(sys.modules, "fastembed", None)
    settings = make_settings(embedding_backend="fastembed", embedding_model_path=onnx_dir(tmp_path))
    with pytest.raises(ConfigError, match=r"pip install 'localsuite\[fastembed\]'"):
        create_backend(settings)


def test_fastembed_defaults_to_bge_small(
    make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Building checks that fastembed is installed but does not import it: a stand-in will do.
    stand_in = types.ModuleType("fastembed")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("fastembed", None)
    monkeypatch.setitem(sys.modules, "fastembed", stand_in)
    settings = make_settings(embedding_backend="fastembed", embedding_model_path=onnx_dir(tmp_path))
    backend = create_backend(settings)
    assert isinstance(backend, FastEmbedBackend)
    assert backend.model == "BAAI/bge-small-en-v1.5"


def test_sentence_transformers_without_its_package(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ConfigError, match=r"localsuite\[embedding\]"):
        create_backend(make_settings())


def test_the_openai_backend_takes_the_base_url(make_settings: Any) -> None:
    backend = create_backend(
        make_settings(embedding_backend="openai", embedding_remote_url="http://remote:1/v1/")
    )
    assert isinstance(backend, OpenAIBackend)
    assert backend.describe() == {"remote": "http://remote:1/v1"}
    assert backend.concurrency > 1


@pytest.mark.parametrize(("total", "texts", "shares"), [
    (10, ["only"], [10]),
    (10, ["aaaa", "a"], [8, 2]),
    (7, ["ab", "ab", "ab"], [2, 2, 3]),
    (0, ["x", "y"], [0, 0]),
    (5, ["", ""], [0, 5]),
])  # fmt: skip
def test_a_remote_token_total_is_shared_by_length(
    total: int, texts: list[str], shares: list[int]
) -> None:
    assert spread(total, texts) == shares
    assert sum(spread(total, texts)) == total


def test_serve_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "EMBEDDING_BACKEND": "fastembed", "EMBEDDING_MODEL_PATH": "",
           "EMBEDDING_PORT": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "localsuite", "serve", "embedding"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "EMBEDDING_MODEL_PATH" in done.stderr
    assert "Traceback" not in done.stderr
