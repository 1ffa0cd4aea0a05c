"""Chunking: split a document into overlapping pieces of at most `size` tokens that
end where the text has a boundary (paragraph, then sentence or line, then word).

Tokens are counted by a model-independent estimate, the same for every language:
a run of letters or digits is one token, each punctuation mark is one, and each Hangul
syllable, kana or CJK ideograph is one (those scripts pack a word's worth of meaning
into few characters; multilingual subword tokenizers give them about one token each).
For English prose and code the estimate runs 5-15 % under a BERT wordpiece count.

The algorithm, on character offsets into the original text (a chunk is a slice of it,
so code keeps its indentation and Markdown its layout):

1. units: sentences (prose) or lines (code), each marked when it ends a paragraph
   (a blank line follows); a sentence or line over `size` is cut into windows between
   tokens;
2. packing: consecutive units go into one chunk while they fit in `size`, ending at the
   last paragraph end if that keeps the chunk at least half full; the next chunk
   starts with the last units of the previous one that fit in `overlap`, unless that
   leaves no room for the next unit (then it has no overlap). A chunk begins inside a
   sentence only when the sentence alone is longer than the chunk size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

_TOKEN = re.compile(
    r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"  # Hangul syllables and jamo
    r"|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"  # kana, CJK ideographs
    r"|[^\W_]+"  # a run of letters and digits in any other script
    r"|[^\w\s]|_",  # one punctuation mark or symbol
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends at . ! ? … (closed by up to two quotes or brackets) before whitespace,
# or at a full-width stop of CJK text, where no space follows. The separator is only the
# whitespace, so the closing marks stay with their sentence.
_STOP = r"[.!?\u2026]"
_CLOSE = r"[\"'\u201d\u2019)\]]"
_SENTENCE_END = re.compile(
    rf"(?:(?<={_STOP})|(?<={_STOP}{_CLOSE})|(?<={_STOP}{_CLOSE}{_CLOSE}))\s+"
    r"|(?<=[\u3002\uff01\uff1f])\s*"
)
_LINE_END = re.compile(r"\n")


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    start: int  # character offsets into the document
    end: int
    tokens: int


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    tokens: int
    paragraph_end: bool = False


class Chunker:
    def __init__(self, size: int, overlap: int) -> None:
        if size < 1:
            raise ValueError("chunk size must be at least 1 token")
        if not 0 <= overlap < size:
            raise ValueError("chunk overlap must be at least 0 and less than the chunk size")
        self.size = size
        self.overlap = overlap

    def split(self, text: str, *, code: bool = False) -> list[Chunk]:
        """The chunks of `text`; `code` splits paragraphs at lines, not sentences."""
        units = list(self._units(text, code))
        chunks: list[Chunk] = []
        first = fresh = 0  # fresh: the first unit that no chunk holds yet
        while fresh < len(units):
            last = first  # inclusive
            total = units[first].tokens
            while last + 1 < len(units) and total + units[last + 1].tokens <= self.size:
                last += 1
                total += units[last].tokens
            if last < fresh:  # the carried overlap leaves no room for the next unit
                first = fresh
                continue
            if last + 1 < len(units):
                last = self._paragraph_cut(units, first, fresh, last)
            start, end = units[first].start, units[last].end
            tokens = sum(u.tokens for u in units[first : last + 1])
            chunks.append(Chunk(len(chunks), text[start:end], start, end, tokens))
            fresh = last + 1
            first = self._overlap_start(units, first, last)
        return chunks

    def _paragraph_cut(self, units: list[_Unit], first: int, fresh: int, last: int) -> int:
        """End the chunk at a paragraph's end rather than mid-paragraph, if that keeps it
        at least half full."""
        filled = sum(u.tokens for u in units[first : last + 1])
        for cut in range(last, fresh - 1, -1):
            if units[cut].paragraph_end:
                return cut
            filled -= units[cut].tokens
            if filled < self.size // 2:
                break
        return last

    def _overlap_start(self, units: list[_Unit], first: int, last: int) -> int:
        """The first unit of the next chunk: the tail of this one that fits in `overlap`."""
        begin = last + 1
        carried = 0
        while begin - 1 > first and carried + units[begin - 1].tokens <= self.overlap:
            begin -= 1
            carried += units[begin].tokens
        return begin

    # --- units ---------------------------------------------------------------------------
    def _units(self, text: str, code: bool) -> Iterator[_Unit]:
        """Sentences (or lines of code), each no longer than the chunk size."""
        boundary = _LINE_END if code else _SENTENCE_END
        for p_start, p_end in _pieces(text, 0, len(text), _PARAGRAPH_BREAK, indent=code):
            units: list[_Unit] = []
            for start, end in _pieces(text, p_start, p_end, boundary, indent=code):
                tokens = count_tokens(text[start:end])
                if tokens > self.size:
                    units.extend(self._windows(text, start, end))
                elif tokens:
                    units.append(_Unit(start, end, tokens))
            if units:
                units[-1] = replace(units[-1], paragraph_end=True)
                yield from units

    def _windows(self, text: str, start: int, end: int) -> Iterator[_Unit]:
        """A run of text with no boundary, as windows cut between tokens.

        Windows are small enough that one fits in the overlap and one more still fits
        beside it, so a long sentence is chunked with the same overlap as prose."""
        width = min(self.overlap, self.size - self.overlap) if self.overlap else self.size
        spans = [m.span() for m in _TOKEN.finditer(text, start, end)]
        for i in range(0, len(spans), width):
            window = spans[i : i + width]
            yield _Unit(window[0][0], window[-1][1], len(window))


def _pieces(
    text: str, start: int, end: int, separator: re.Pattern[str], *, indent: bool = False
) -> Iterator[tuple[int, int]]:
    """Spans of `text[start:end]` between matches of `separator`, stripped of whitespace
    (but for the indentation of their first line when `indent`: code keeps it)."""
    position = start
    for match in separator.finditer(text, start, end):
        yield from _stripped(text, position, match.start(), indent)
        position = match.end()
    yield from _stripped(text, position, end, indent)


def _stripped(text: str, start: int, end: int, indent: bool) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    if indent:
        while start > 0 and text[start - 1] in " \t":
            start -= 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield start, end
