"""What an embedding backend is, and the one thread a local model runs on.

    EmbeddingBackend (Protocol)
    ├── LocalModel: a model in this process, on its one thread
    │   ├── sentence_transformers.SentenceTransformersBackend   torch (the default)
    │   └── fastembed.FastEmbedBackend                          ONNX (optional extra)
    └── openai.OpenAIBackend                                    any remote /v1/embeddings

A backend embeds one batch at a time; the micro-batcher (`embedding.batcher`) decides
what goes in a batch. Configuration that cannot work is refused when the backend is
built (`ConfigError`, before the service listens); loading the weights happens later, in
the background, so `/health/live` answers at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

T = TypeVar("T")

Vectors = npt.NDArray[np.float32]

# A window that holds a whole RAG chunk of any RAG_CHUNK_SIZE a user is likely to set
# (the default is 192 tokens; the original suite's was 512).
LONG_INPUT_TOKENS = 512


@dataclass(frozen=True, slots=True)
class Embedded:
    """Vectors for some texts: a C-contiguous float32 matrix, one row per text, in order,
    and each text's token count (what the model read of it, or an estimate: see backends)."""

    vectors: Vectors
    tokens: list[int]


class EmbeddingBackend(Protocol):
    kind: str
    model: str
    # Batches in flight at once: 1 for a local model (it already uses every core),
    # more for a remote API, where a batch mostly waits on the network.
    concurrency: int

    @property
    def dim(self) -> int | None:
        """Vector size, known once loaded."""
        ...

    def describe(self) -> dict[str, Any]:
        """What `/health` shows about this backend (source, window, remote URL)."""
        ...

    async def load(self) -> None:
        """Make the backend ready (weights read, or the remote reached); idempotent."""
        ...

    async def embed(self, texts: list[str]) -> Embedded:
        """Embed one batch. Raises `LocalSuiteError` kinds for what the client should see."""
        ...

    async def close(self) -> None: ...


class ModelThread:
    """The single thread a blocking model runs on.

    Torch and onnxruntime already spread one call over every core; two calls at once would
    only fight over them. One thread also keeps the event loop free to parse and answer
    HTTP while the model computes (both release the GIL during the heavy work).
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class LocalModel:
    """What the backends whose model runs in this process share: one `ModelThread`, on
    which `_load` (idempotent; sets `_dim`) and `_embed` run, and one batch at a time."""

    concurrency = 1

    def __init__(self) -> None:
        self._thread = ModelThread("embedding-model")
        self._dim: int | None = None

    @property
    def dim(self) -> int | None:
        return self._dim

    async def load(self) -> None:
        await self._thread.run(self._load)

    async def embed(self, texts: list[str]) -> Embedded:
        return await self._thread.run(self._embed, texts)

    async def close(self) -> None:
        self._thread.close()

    # --- on the model thread -----------------------------------------------------------
    def _load(self) -> None:
        raise NotImplementedError

    def _embed(self, texts: list[str]) -> Embedded:
        raise NotImplementedError


def as_matrix(rows: Any, expected: int) -> Vectors:
    """`rows` as a C-contiguous float32 matrix with `expected` rows (ValueError otherwise)."""
    matrix = np.ascontiguousarray(rows, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != expected or matrix.shape[1] == 0:
        raise ValueError(f"expected {expected} vectors, got an array of shape {matrix.shape}")
    return matrix
