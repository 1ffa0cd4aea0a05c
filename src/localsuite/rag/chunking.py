"""Chunking: split a document into overlapping pieces of at most `size` tokens that stay
inside one section and end where the text has a boundary (paragraph, then sentence or
line, then word).

Tokens are the embedding model's (`tokens.TokenCounter`): a chunk is what the model
reads, its heading path included, and must fit the window the model was trained on.
The document is tokenized once; a slice is counted by bisection on the token offsets.

The algorithm, on character offsets into the document's text (a chunk's `text` is a
slice of it, so code keeps its indentation and Markdown its layout):

1. sections (`sections.Outline`): a chunk never crosses one, and carries the heading
   path of its section, after the document's title and summary ("git-clone(1):
   git-clone - Clone a repository into a new directory > OPTIONS"), in front of its
   text when embedded and searched (`Chunk.embedded`); the heading's tokens count
   against `size`, at most a third of it;
2. units: sentences (prose) or lines (code), each marked when it ends a paragraph
   (a blank line follows); a unit over the room left is cut into windows between words;
3. packing: consecutive units go into one chunk while they fit, ending at the last
   paragraph end if that keeps the chunk at least half full; the next chunk starts with
   the last units of the previous one that fit in `overlap`, unless that leaves no room
   for the next unit (then it has no overlap). A chunk begins inside a sentence only when
   the sentence alone is longer than the chunk.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, replace

from localsuite.rag.sections import Outline, Section, plain
from localsuite.rag.tokens import _ESTIMATE as _TOKEN
from localsuite.rag.tokens import ESTIMATE, TokenCounter

__all__ = ["_TOKEN", "Chunk", "Chunker", "count_tokens"]

HEADING_SEPARATOR = " > "
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
    """The model-independent estimate (`tokens.Estimate`)."""
    return ESTIMATE.count(text)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    start: int  # character offsets into the document
    end: int
    tokens: int  # of `embedded`: the heading and the text
    heading: str = ""

    @property
    def embedded(self) -> str:
        """What the embedding model and the lexical index read: heading, then text."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    tokens: int
    paragraph_end: bool = False


class _Counts:
    """Token counts of any slice of one document, from one tokenization."""

    def __init__(self, text: str, counter: TokenCounter) -> None:
        self.spans = counter.spans(text)
        self.starts = [start for start, _ in self.spans]

    def between(self, start: int, end: int) -> int:
        return bisect_left(self.starts, end) - bisect_left(self.starts, start)

    def inside(self, start: int, end: int) -> list[tuple[int, int]]:
        return self.spans[bisect_left(self.starts, start) : bisect_left(self.starts, end)]


class Chunker:
    def __init__(self, size: int, overlap: int, counter: TokenCounter = ESTIMATE) -> None:
        if size < 1:
            raise ValueError("chunk size must be at least 1 token")
        if not 0 <= overlap < size:
            raise ValueError("chunk overlap must be at least 0 and less than the chunk size")
        self.size = size
        self.overlap = overlap
        self.counter = counter

    @property
    def signature(self) -> str:
        """What decides the chunks of a text: a ledger entry made under another signature
        is chunked again, even for an unchanged file (see `ingest`)."""
        return f"sections-v2/{self.counter.name}/{self.size}/{self.overlap}"

    def split(self, text: str, *, code: bool = False) -> list[Chunk]:
        """The chunks of a text with no outline: one section, no heading."""
        return self.chunk(plain(text, "", code=code))

    def chunk(self, outline: Outline) -> list[Chunk]:
        """The chunks of a document, section by section, each with its heading path."""
        counts = _Counts(outline.text, self.counter)
        chunks: list[Chunk] = []
        summary = outline.summary
        if summary and self.counter.count(summary) > self.size // 5:
            summary = ""
        title = (
            f"{outline.title}: {summary}" if summary and outline.title else summary or outline.title
        )
        for group in _by_heading(outline.sections):
            heading, heading_tokens = self._heading(title, group[0].headings)
            room = self.size - heading_tokens
            overlap = min(self.overlap, room - 1)
            units = [u for s in group for u in self._units(outline.text, s, counts, room)]
            for start, end, tokens in _pack(units, room, overlap):
                chunks.append(
                    Chunk(len(chunks), outline.text[start:end], start, end,
                          tokens + heading_tokens, heading)
                )  # fmt: skip
        return chunks

    def _heading(self, title: str, headings: tuple[str, ...]) -> tuple[str, int]:
        """The heading path and its tokens, at most a third of the chunk: outer levels
        go first, then the title, then the innermost heading is cut."""
        path = [p for p in (title, *headings) if p]
        budget = self.size // 3
        while path:
            heading = HEADING_SEPARATOR.join(path)
            tokens = self.counter.count(heading + "\n")
            if tokens <= budget:
                return heading, tokens
            if len(path) > 2:
                del path[1]
            elif len(path) == 2:
                del path[0]
            else:
                spans = self.counter.spans(heading)
                cut = heading[: spans[budget - 1][1]] if budget >= 1 and spans else ""
                return cut, self.counter.count(cut + "\n") if cut else 0
        return "", 0

    # --- units ---------------------------------------------------------------------------
    def _units(self, text: str, section: Section, counts: _Counts, room: int) -> Iterator[_Unit]:
        """Sentences (or lines of code) of a section, each no longer than `room`."""
        boundary = _LINE_END if section.code else _SENTENCE_END
        paragraphs = _pieces(text, section.start, section.end, _PARAGRAPH_BREAK, section.code)
        for p_start, p_end in paragraphs:
            units: list[_Unit] = []
            for start, end in _pieces(text, p_start, p_end, boundary, section.code):
                tokens = counts.between(start, end)
                if tokens > room:
                    units.extend(self._windows(text, counts.inside(start, end), room))
                elif tokens:
                    units.append(_Unit(start, end, tokens))
            if units:
                units[-1] = replace(units[-1], paragraph_end=True)
                yield from units

    def _windows(self, text: str, spans: list[tuple[int, int]], room: int) -> Iterator[_Unit]:
        """A run of text with no boundary, as windows cut between words.

        Windows are small enough that one fits in the overlap and one more still fits
        beside it, so a long sentence is chunked with the same overlap as prose."""
        overlap = min(self.overlap, room - 1)
        width = max(1, min(overlap, room - overlap) if overlap else room)
        i = 0
        while i < len(spans):
            end = min(len(spans), i + width)
            cut = end
            while end < len(spans) and cut > i + 1 and not _word_starts(text, spans, cut):
                cut -= 1
            if end < len(spans) and cut == i + 1 and not _word_starts(text, spans, cut):
                cut = end  # one word longer than the window: cut inside it
            yield _Unit(spans[i][0], spans[cut - 1][1], cut - i)
            i = cut


def _word_starts(text: str, spans: list[tuple[int, int]], i: int) -> bool:
    """Whether token `i` begins a word (a cut before it does not split one)."""
    start, previous_end = spans[i][0], spans[i - 1][1]
    if start == spans[i - 1][0]:
        return False  # pieces of one character (Hangul jamo)
    return start > previous_end or not (text[start].isalnum() and text[start - 1].isalnum())


def _by_heading(sections: tuple[Section, ...]) -> Iterator[list[Section]]:
    """Consecutive sections under the same heading path (prose and code of one section)."""
    group: list[Section] = []
    for section in sections:
        if group and group[-1].headings != section.headings:
            yield group
            group = []
        group.append(section)
    if group:
        yield group


def _pack(units: list[_Unit], size: int, overlap: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) of each chunk packed from `units`."""
    first = fresh = 0  # fresh: the first unit that no chunk holds yet
    while fresh < len(units):
        last = first  # inclusive
        total = units[first].tokens
        while last + 1 < len(units) and total + units[last + 1].tokens <= size:
            last += 1
            total += units[last].tokens
        if last < fresh:  # the carried overlap leaves no room for the next unit
            first = fresh
            continue
        if last + 1 < len(units):
            last = _paragraph_cut(units, first, fresh, last, size)
        yield (
            units[first].start,
            units[last].end,
            sum(u.tokens for u in units[first : last + 1]),
        )
        fresh = last + 1
        first = _overlap_start(units, first, last, overlap)


def _paragraph_cut(units: list[_Unit], first: int, fresh: int, last: int, size: int) -> int:
    """End the chunk at a paragraph's end rather than mid-paragraph, if that keeps it at
    least half full."""
    filled = sum(u.tokens for u in units[first : last + 1])
    for cut in range(last, fresh - 1, -1):
        if units[cut].paragraph_end:
            return cut
        filled -= units[cut].tokens
        if filled < size // 2:
            break
    return last


def _overlap_start(units: list[_Unit], first: int, last: int, overlap: int) -> int:
    """The first unit of the next chunk: the tail of this one that fits in `overlap`."""
    begin = last + 1
    carried = 0
    while begin - 1 > first and carried + units[begin - 1].tokens <= overlap:
        begin -= 1
        carried += units[begin].tokens
    return begin


def _pieces(
    text: str, start: int, end: int, separator: re.Pattern[str], indent: bool = False
) -> Iterator[tuple[int, int]]:
    """Spans of `text[start:end]` between matches of `separator`, stripped of whitespace
    (but for the indentation of their first line when `indent`: code keeps it)."""
    position = start
    for match in separator.finditer(text, start, end):
        yield from _stripped(text, position, match.start(), indent, start)
        position = match.end()
    yield from _stripped(text, position, end, indent, start)


def _stripped(
    text: str, start: int, end: int, indent: bool, floor: int
) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    if indent:
        while start > floor and text[start - 1] in " \t":
            start -= 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield start, end
