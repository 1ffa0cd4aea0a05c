"""Token counting for chunks: the embedding model's own tokenizer when rag can load it,
a model-independent estimate otherwise.

A chunk must fit the window the embedding model was trained on (all-MiniLM-L6-v2: 128
word pieces; past that its vectors dilute), so its size is counted with that model's
tokenizer: `tokenizer.json` of `RAG_TOKENIZER` (a file, or a model folder holding one),
else of `EMBEDDING_MODEL_PATH`, else of the bundled model. Counting is local and cheap
(the Rust `tokenizers` library, about 2 s for git's whole manual); no model is run.

Where no tokenizer can be loaded (another embedding model behind `EMBEDDING_URL`, the
`tokenizers` package missing), the estimate counts a run of letters or digits as one
token, each punctuation mark as one, and each Hangul syllable, kana or CJK ideograph as
one: for English prose and code 5-15 % under a BERT word-piece count.

Both give token *spans* (character offsets), so the chunker counts any slice of a
document by bisection, after tokenizing the document once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("localsuite.rag")

_ESTIMATE = re.compile(
    r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"  # Hangul syllables and jamo
    r"|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"  # kana, CJK ideographs
    r"|[^\W_]+"  # a run of letters and digits in any other script
    r"|[^\w\s]|_",  # one punctuation mark or symbol
)


class TokenCounter(Protocol):
    """What the chunker needs from a tokenizer."""

    name: str

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) character offsets of the tokens of `text`, in order."""
        ...

    def count(self, text: str) -> int: ...


class Estimate:
    """The model-independent estimate (see the module docstring)."""

    name = "estimate"

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _ESTIMATE.finditer(text)]

    def count(self, text: str) -> int:
        return sum(1 for _ in _ESTIMATE.finditer(text))


ESTIMATE = Estimate()


class ModelTokenizer:
    """A Hugging Face `tokenizer.json` (word pieces for BERT-style models), special tokens
    not counted: they are the model's, not the chunk's."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.name = f"tokenizer:{path.parent.name}"

    def spans(self, text: str) -> list[tuple[int, int]]:
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        # Some tokenizers split one character into several pieces (Hangul jamo): those
        # pieces share a span, and each of them counts.
        return [(int(s), int(e)) for s, e in offsets]

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


@dataclass(frozen=True, slots=True)
class TokenizerSource:
    """Where to look for the tokenizer, from settings."""

    explicit: Path | None  # RAG_TOKENIZER
    model_path: Path | None  # EMBEDDING_MODEL_PATH
    bundled: bool  # EMBEDDING_MODEL is the bundled model
    cache_dir: Path


def load_counter(source: TokenizerSource) -> TokenCounter:
    """The embedding model's tokenizer, or the estimate when none can be loaded."""
    candidates: list[Path] = []
    if source.explicit is not None:
        candidates.append(source.explicit)
    elif source.model_path is not None:
        candidates.append(source.model_path)
    elif source.bundled:
        from localsuite.core.bundled import unpacked_model

        try:
            unpacked = unpacked_model(source.cache_dir)
        except OSError as exc:
            log.warning("cannot unpack the bundled model's tokenizer: %s", exc)
            unpacked = None
        if unpacked is not None:
            candidates.append(unpacked)
    for candidate in candidates:
        path = candidate / "tokenizer.json" if candidate.is_dir() else candidate
        try:
            return ModelTokenizer(path)
        except ImportError:
            log.warning("the `tokenizers` package is missing: chunk tokens are estimated")
            return ESTIMATE
        except Exception as exc:  # a missing or unreadable file: say so, then estimate
            log.warning("cannot load the tokenizer %s (%s): chunk tokens are estimated", path, exc)
    return ESTIMATE
