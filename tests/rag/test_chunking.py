"""Chunking: sizes, overlap, boundaries, Korean text, code, empty input."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localsuite.rag.chunking import _TOKEN, Chunk, Chunker, count_tokens

ENGLISH = (
    "The lighthouse stood on the rock for two hundred years. Its keeper climbed the stairs "
    "every evening! Did he ever tire of it? Nobody asked him.\n\n"
    "Ships passed in the night and saw the light. Some of them were lost anyway, in storms "
    "that no light could pierce. The keeper wrote their names in a book.\n\n"
    "When the light was automated, the keeper left. The book stayed on the shelf."
)
KOREAN = (
    "서울은 한국의 수도입니다. 인구는 약 천만 명입니다! 한강이 도시를 가로질러 흐릅니다.\n\n"
    "부산은 두 번째로 큰 도시입니다. 바다와 항구로 유명합니다. 해운대 해수욕장이 있습니다?"
)


def token_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _TOKEN.finditer(text)]


def check_invariants(text: str, chunks: list[Chunk], size: int, overlap: int) -> None:
    spans = token_spans(text)
    covered: set[tuple[int, int]] = set()
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.tokens == count_tokens(chunk.text) <= size
        covered |= {s for s in spans if chunk.start <= s[0] and s[1] <= chunk.end}
    assert covered == set(spans), "every token is in some chunk"
    for previous, current in pairwise(chunks):
        assert current.start > previous.start, "chunks move forward"
        shared = text[current.start : previous.end] if current.start < previous.end else ""
        assert count_tokens(shared) <= overlap


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (12, 4), (20, 5), (40, 10), (200, 50)])
@pytest.mark.parametrize("text", [ENGLISH, KOREAN], ids=["english", "korean"])
def test_chunks_respect_size_overlap_and_cover_everything(
    text: str, size: int, overlap: int
) -> None:
    chunks = Chunker(size, overlap).split(text)
    check_invariants(text, chunks, size, overlap)
    assert Chunker(size, overlap).split(text) == chunks  # deterministic


SENTENCE = re.compile(r"[^.!?]+[.!?]")


@pytest.mark.parametrize("text", [ENGLISH, KOREAN], ids=["english", "korean"])
def test_chunks_begin_and_end_at_sentence_boundaries(text: str) -> None:
    starts = {m.start() + len(m.group()) - len(m.group().lstrip()) for m in SENTENCE.finditer(text)}
    ends = {m.end() for m in SENTENCE.finditer(text)}
    longest = max(count_tokens(m.group()) for m in SENTENCE.finditer(text))
    for chunk in Chunker(max(longest, 16), 6).split(text):
        assert chunk.start in starts, chunk.text
        assert chunk.end in ends, chunk.text


def test_overlap_repeats_the_last_sentences_of_the_previous_chunk() -> None:
    chunks = Chunker(30, 12).split(ENGLISH)
    assert len(chunks) > 2
    repeated = [c for p, c in pairwise(chunks) if c.start < p.end]
    assert repeated, "with room for it, consecutive chunks overlap"
    for previous, current in pairwise(chunks):
        if current.start < previous.end:
            assert previous.text.endswith(text := ENGLISH[current.start : previous.end])
            assert current.text.startswith(text)


def test_a_chunk_prefers_to_end_at_a_paragraph() -> None:
    chunks = Chunker(60, 0).split(ENGLISH)
    paragraph_ends = {m.start() for m in re.finditer(r"\n\n", ENGLISH)} | {len(ENGLISH)}
    assert all(c.end in paragraph_ends for c in chunks)


def test_korean_tokens_are_counted_by_syllable() -> None:
    assert count_tokens("안녕하세요") == 5
    assert count_tokens("서울은 수도입니다.") == 3 + 5 + 1
    assert count_tokens("東京タワー") == 5
    assert count_tokens("hello, world_wide") == 5


def test_a_sentence_longer_than_a_chunk_is_cut_between_tokens_with_overlap() -> None:
    text = " ".join(f"word{i}" for i in range(100))  # no sentence boundary at all
    chunks = Chunker(20, 5).split(text)
    check_invariants(text, chunks, 20, 5)
    assert all(c.text.split()[0].startswith("word") for c in chunks)  # never mid-word
    assert all(ENGLISH_WORD.fullmatch(w) for c in chunks for w in c.text.split())


ENGLISH_WORD = re.compile(r"word\d+")


def test_code_is_cut_at_line_ends_and_keeps_its_indentation() -> None:
    code = "\n".join(
        f"def function_{i}(value):\n    result = value * {i}\n    return result\n"
        for i in range(12)
    )
    chunks = Chunker(30, 8).split(code, code=True)
    check_invariants(code, chunks, 30, 8)
    for chunk in chunks:
        assert chunk.end == len(code.rstrip()) or code[chunk.end] == "\n"
        assert chunk.start == 0 or code[chunk.start - 1] == "\n"
    assert "    result = value * 3" in "".join(c.text for c in chunks)


@pytest.mark.parametrize("text", ["", "   \n\n\t  ", "\n"])
def test_empty_text_gives_no_chunks(text: str) -> None:
    assert Chunker(10, 2).split(text) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, 11), (10, -1)])
def test_impossible_settings_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk"):
        Chunker(size, overlap)


WORDS = st.sampled_from(["alpha", "beta", "gamma", "한국어", "문장", "x1", "東京", "self.call()"])
SENTENCES = st.builds(
    lambda words, stop: " ".join(words) + stop,
    st.lists(WORDS, min_size=1, max_size=30),
    st.sampled_from([".", "!", "?", "", "。"]),
)
TEXTS = st.builds(
    lambda paragraphs: "\n\n".join(" ".join(p) for p in paragraphs),
    st.lists(st.lists(SENTENCES, min_size=1, max_size=6), min_size=0, max_size=6),
)


@settings(max_examples=150, deadline=None)
@given(text=TEXTS, size=st.integers(1, 60), overlap_share=st.floats(0, 0.9), code=st.booleans())
def test_invariants_hold_for_any_text(
    text: str, size: int, overlap_share: float, code: bool
) -> None:
    overlap = min(size - 1, int(size * overlap_share))
    check_invariants(text, Chunker(size, overlap).split(text, code=code), size, overlap)
