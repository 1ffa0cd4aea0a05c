"""The two pipelines rag is measured against in `bench/rag_quality.py`, written for the
benchmark (no LangChain or BM25 library is a dependency):

- `recursive_split`: LangChain's default splitter, `RecursiveCharacterTextSplitter` with
  `chunk_size=1000, chunk_overlap=200` (its documented defaults: separators
  "\\n\\n", "\\n", " ", "", lengths in characters, each separator kept at the start of
  the piece that follows it, pieces stripped). Re-implemented from its documented
  behaviour: split at the first separator the text contains, recurse into pieces still
  too long with the next separators, then merge neighbouring pieces up to the chunk size,
  carrying up to `overlap` characters of the previous chunk into the next.
- `Bm25`: Okapi BM25 (k1 = 1.2, b = 0.75, Lucene's idf) over lower-cased word tokens.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

SEPARATORS = ("\n\n", "\n", " ", "")


def recursive_split(
    text: str, size: int = 1000, overlap: int = 200, separators: Sequence[str] = SEPARATORS
) -> list[str]:
    separator, rest = separators[-1], ()
    for i, candidate in enumerate(separators):
        if candidate == "" or candidate in text:
            separator, rest = candidate, tuple(separators[i + 1 :])
            break
    chunks: list[str] = []
    fitting: list[str] = []
    for piece in _split_keeping(text, separator):
        if len(piece) < size:
            fitting.append(piece)
            continue
        if fitting:
            chunks.extend(_merge(fitting, size, overlap))
            fitting = []
        if rest:
            chunks.extend(recursive_split(piece, size, overlap, rest))
        else:
            chunks.append(piece)
    if fitting:
        chunks.extend(_merge(fitting, size, overlap))
    return chunks


def _split_keeping(text: str, separator: str) -> list[str]:
    """`text` split at `separator`, each separator starting the piece after it."""
    if not separator:
        return [c for c in text if c]
    parts = re.split(f"({re.escape(separator)})", text)
    pieces = [parts[0], *(parts[i] + parts[i + 1] for i in range(1, len(parts) - 1, 2))]
    if len(parts) % 2 == 0:
        pieces.append(parts[-1])
    return [p for p in pieces if p]


def _merge(pieces: list[str], size: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    total = 0
    for piece in pieces:
        if total + len(piece) > size and current:
            joined = "".join(current).strip()
            if joined:
                chunks.append(joined)
            while total > overlap or (total + len(piece) > size and total > 0):
                total -= len(current.pop(0))
        current.append(piece)
        total += len(piece)
    joined = "".join(current).strip()
    if joined:
        chunks.append(joined)
    return chunks


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class Bm25:
    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(words(t)) for t in texts]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.average = sum(self.lengths) / max(1, len(self.lengths))
        frequency: Counter[str] = Counter()
        for doc in self.docs:
            frequency.update(doc.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}
        self.postings: dict[str, list[int]] = {}
        for i, doc in enumerate(self.docs):
            for term in doc:
                self.postings.setdefault(term, []).append(i)

    def top(self, query: str, k: int) -> list[int]:
        scores: dict[int, float] = {}
        for term in set(words(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for i in self.postings[term]:
                tf = self.docs[i][term]
                norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.average)
                scores[i] = scores.get(i, 0.0) + idf * tf * (self.k1 + 1) / (tf + norm)
        return sorted(scores, key=lambda i: -scores[i])[:k]
