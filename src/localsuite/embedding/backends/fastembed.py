"""fastembed (ONNX runtime) for BAAI/bge-small-en-v1.5, the original suite's default.

Optional: fastembed is the `localsuite[fastembed]` extra, and its model files must already
be on disk in EMBEDDING_MODEL_PATH (nothing is downloaded). Both are checked when the
backend is built, so a stack configured for it fails at start-up with what to do, rather
than serving 503s. bge-small-en-v1.5 reads 512 tokens; fastembed truncates past that.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from localsuite.core.bundled import BUNDLED_NAME
from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.embedding.backends.base import Embedded, LocalModel, as_matrix

log = logging.getLogger("localsuite.embedding")

DEFAULT_MODEL = "BAAI/bge-small-en-v1.5"
# fastembed's copy of bge-small-en-v1.5 lives in this hub repository.
FILES_FROM = "qdrant/bge-small-en-v1.5-onnx-q"
REQUIRED_FILES = ("tokenizer.json", "config.json")


def model_dir(settings: Settings, model: str) -> Path:
    """The local directory holding the ONNX model and its tokenizer (ConfigError if not)."""
    path = settings.embedding_model_path
    hint = (
        f"download the files of {FILES_FROM} (an .onnx model, tokenizer.json, config.json, "
        "special_tokens_map.json, tokenizer_config.json) into a directory and point "
        "EMBEDDING_MODEL_PATH at it"
        if model == DEFAULT_MODEL
        else f"put the ONNX files of {model} in a directory and point EMBEDDING_MODEL_PATH at it"
    )
    if path is None:
        raise ConfigError(
            f"EMBEDDING_BACKEND=fastembed reads {model} from local files only: {hint}"
        )
    if not path.is_dir():
        raise ConfigError(f"EMBEDDING_MODEL_PATH={path} is not a directory: {hint}")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if not any(path.glob("*.onnx")):
        missing.insert(0, "*.onnx")
    if missing:
        raise ConfigError(f"EMBEDDING_MODEL_PATH={path} lacks {', '.join(missing)}: {hint}")
    return path


class FastEmbedBackend(LocalModel):
    kind = "fastembed"

    def __init__(self, settings: Settings) -> None:
        # The default EMBEDDING_MODEL names the bundled torch model; fastembed's is bge.
        self.model = (
            DEFAULT_MODEL if settings.embedding_model == BUNDLED_NAME else settings.embedding_model
        )
        self._path = model_dir(settings, self.model)
        if importlib.util.find_spec("fastembed") is None:
            raise ConfigError(
                "EMBEDDING_BACKEND=fastembed needs the fastembed package: "
                "`pip install 'localsuite[fastembed]'` (or, for the bundled model, "
                "EMBEDDING_BACKEND=sentence-transformers)"
            )
        self._threads = settings.embedding_threads or None  # None: onnxruntime's own choice
        self._batch = settings.embedding_batch_size
        self._engine: Any = None
        super().__init__()

    def describe(self) -> dict[str, Any]:
        return {"source": str(self._path), "threads": self._threads}

    def _load(self) -> None:
        if self._engine is not None:
            return
        from fastembed import TextEmbedding

        self._engine = TextEmbedding(
            model_name=self.model,
            threads=self._threads,
            specific_model_path=str(self._path),
            local_files_only=True,
        )
        self._dim = int(self._embed(["dimension"]).vectors.shape[1])
        log.info("fastembed model %s loaded from %s: dim %s", self.model, self._path, self._dim)

    def _embed(self, texts: list[str]) -> Embedded:
        rows = list(self._engine.embed(texts, batch_size=max(self._batch, len(texts))))
        # fastembed does not report token counts; words are an honest, cheap stand-in.
        return Embedded(as_matrix(rows, len(texts)), [len(t.split()) for t in texts])
