"""A document's outline: its title and the sections its text falls into.

A section is a span of the document's text under one heading path ("OPTIONS" under
"git-clone(1)"), either prose (chunked at sentences) or preformatted (code, `<pre>`,
fenced blocks: chunked at lines). Chunks never cross a section, and each chunk carries
its heading path, so that a passage that never names its subject ("Create a shallow
clone with a history truncated to the specified number of commits") is still found by
it.

    HTML        the page's own content: only what is inside <main> (or role="main") when
                the page marks it, and never navigation, search boxes, footers or
                permalink marks (`_boilerplate`: what generators such as Sphinx,
                MkDocs and Javadoc put on every page, "Next topic: ..." included, would
                otherwise be found for other pages' questions); the title is
                <title> (else the first <h1>), or the first <h1> when <title> is that
                heading plus the site's name; h1-h6 open sections; <pre> is
                preformatted; block elements are paragraphs, whitespace collapsed
    Markdown    the first "# " heading (else the file name); ATX and setext headings open
                sections; ``` and ~~~ fences are preformatted
    code        one preformatted section titled by the file name
    other text  one prose section titled by the file name

Heading lines are part of the text (people read them there) but of no section: they
come with every chunk under them instead, as does the document's `summary` (its opening
line, when short: a man page's NAME line, a README's tagline).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

SUMMARY_CHARS = 160


@dataclass(frozen=True, slots=True)
class Section:
    start: int  # character offsets into the document's text
    end: int
    headings: tuple[str, ...]  # from the outermost in, without the document's title
    code: bool = False


@dataclass(frozen=True, slots=True)
class Outline:
    text: str
    title: str
    sections: tuple[Section, ...]

    @property
    def summary(self) -> str:
        """The document's opening line, when it is a short one ("git-stash - Stash the
        changes in a dirty working directory away"): it says what every other part is
        about. Only a document of several sections has one."""
        if len(self.sections) < 2 or self.sections[0].code:
            return ""
        first = self.sections[0]
        opening = self.text[first.start : first.end]
        return opening if len(opening) <= SUMMARY_CHARS and "\n" not in opening else ""


def plain(text: str, title: str, *, code: bool = False) -> Outline:
    return Outline(text, title, (Section(0, len(text), (), code),) if text.strip() else ())


# --- HTML --------------------------------------------------------------------------------
_BLOCK_TAGS = frozenset(
    {
        *("p", "div", "section", "article", "header", "footer", "main", "aside", "nav"),
        *("li", "ul", "ol", "table", "tr", "td", "th", "pre", "blockquote", "br", "hr"),
        *("dd", "dt", "dl", "figure", "figcaption", "title", "h1", "h2", "h3", "h4", "h5", "h6"),
    }
)
_HIDDEN_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
# Elements that are the site's, not the page's: skipped with everything inside them.
_BOILERPLATE_TAGS = frozenset({"nav", "footer"})
_BOILERPLATE_ROLES = frozenset({"navigation", "search", "contentinfo", "banner"})
_BOILERPLATE_CLASSES = frozenset(
    {"headerlink", "sphinxsidebar", "related", "footer", "breadcrumbs", "skip-link"}
)
# the mark a generator puts after a heading: "¶" or "§", or a "#" of its own ("C#" stays)
_PERMALINK = re.compile(r"(?:\s*[\u00b6\u00a7]|\s+#)$")


@dataclass
class _Block:
    kind: str  # "title", "heading", "term" (a <dt>: stays with what it names), "text", "pre"
    text: str
    level: int = 0


class _Subtree:
    """One element being tracked to its end tag (its own tag nested inside it counted)."""

    def __init__(self) -> None:
        self.tag = ""
        self.depth = 0

    def enter(self, tag: str) -> None:
        self.tag, self.depth = tag, 1

    def inside(self) -> bool:
        return self.depth > 0

    def see(self, tag: str, opening: bool) -> None:
        if self.depth and tag == self.tag:
            self.depth += 1 if opening else -1


class _HtmlBlocks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Block] = []
        self.main_blocks: list[_Block] = []  # those inside <main> / role="main"
        self._parts: list[str] = []
        self._hidden = 0
        self._pre = 0
        self._kind = "text"
        self._level = 0
        self._skipped = _Subtree()
        self._main = _Subtree()

    def _flush(self) -> None:
        raw = "".join(self._parts)
        self._parts = []
        if self._kind == "pre":
            lines = [line.rstrip() for line in raw.strip("\n").splitlines()]
            text = "\n".join(lines).strip("\n")
            # a blank line inside a <pre> would read as a paragraph break
            text = re.sub(r"\n\s*\n", "\n", text)
        else:
            text = " ".join(raw.split())
        if self._kind == "heading":
            text = _PERMALINK.sub("", text)
        if text.strip():
            block = _Block(self._kind, text, self._level)
            self.blocks.append(block)
            if self._main.inside():
                self.main_blocks.append(block)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skipped.see(tag, True)
        self._main.see(tag, True)
        if not self._main.inside() and (tag == "main" or ("role", "main") in attrs):
            self._flush()
            self._main.enter(tag)
            self._skipped.depth = 0  # the content is never inside navigation: a skipped
            # element left unclosed by sloppy HTML ends here, not at the end of the page
        if not self._skipped.inside() and _boilerplate(tag, attrs):
            self._skipped.enter(tag)
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        if tag == "title":
            self._flush()
            self._kind = "title"
        elif tag in _HEADINGS and not self._pre:
            self._flush()
            self._kind, self._level = "heading", _HEADINGS[tag]
        elif tag == "pre":
            self._flush()
            self._pre += 1
            self._kind = "pre"
        elif tag == "dt" and not self._pre:
            self._flush()
            self._kind = "term"
        elif tag in _BLOCK_TAGS and not self._pre:
            self._flush()
            self._kind = "text"

    def handle_endtag(self, tag: str) -> None:
        self._skipped.see(tag, False)
        if self._main.inside() and tag == self._main.tag and self._main.depth == 1:
            self._flush()  # the main content's last block, before leaving it
        self._main.see(tag, False)
        if tag in _HIDDEN_TAGS and self._hidden:
            self._hidden -= 1
        if tag == "title" or (tag in _HEADINGS and self._kind == "heading"):
            self._flush()
            self._kind, self._level = "text", 0
        elif tag == "pre" and self._pre:
            self._pre -= 1
            if not self._pre:
                self._flush()
                self._kind = "text"
        elif tag in _BLOCK_TAGS and not self._pre:
            self._flush()
            self._kind = "text"

    def handle_data(self, data: str) -> None:
        if self._kind == "title" or not (self._hidden or self._skipped.inside()):
            self._parts.append(data)


def _boilerplate(tag: str, attrs: list[tuple[str, str | None]]) -> bool:
    if tag in _BOILERPLATE_TAGS:
        return True
    values = dict(attrs)
    if (values.get("role") or "") in _BOILERPLATE_ROLES:
        return True
    return not _BOILERPLATE_CLASSES.isdisjoint((values.get("class") or "").split())


def html(source: str, fallback_title: str) -> Outline:
    parser = _HtmlBlocks()
    parser.feed(source)
    parser.close()
    parser._flush()
    title = next((b.text for b in parser.blocks if b.kind == "title"), "")
    blocks = parser.main_blocks or parser.blocks
    first = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), "")
    if not title or (first and title != first and title.startswith(first)):
        title = first or next((b.text for b in blocks if b.kind == "heading"), fallback_title)
    return _assemble(blocks, title)


def _assemble(blocks: list[_Block], title: str) -> Outline:
    """Join blocks with paragraph breaks; headings open sections, others fill them."""
    pieces: list[str] = []
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []  # (level, heading)
    position = 0
    after_term = False
    for block in blocks:
        kind, text, level = block.kind, block.text, block.level
        if pieces:
            pieces.append("\n" if after_term else "\n\n")
            position += 1 if after_term else 2
        after_term = kind == "term"
        start = position
        pieces.append(text)
        position += len(text)
        if kind in ("title", "heading"):
            if kind == "heading":
                while stack and stack[-1][0] >= level:
                    stack.pop()
                if not _repeats(text, title):
                    stack.append((level, text))
            continue
        headings = tuple(h for _, h in stack)
        code = kind == "pre"
        last = sections[-1] if sections else None
        if last is not None and last.headings == headings and last.code == code:
            sections[-1] = Section(last.start, position, headings, code)
        else:
            sections.append(Section(start, position, headings, code))
    return Outline("".join(pieces), title, tuple(sections))


def _repeats(heading: str, title: str) -> bool:
    """A heading that only says the title again ("git-stash(1) Manual Page")."""
    return bool(title) and heading.lower().startswith(title.lower())


# --- Markdown ----------------------------------------------------------------------------
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def markdown(text: str, fallback_title: str) -> Outline:
    """Sections of a Markdown text, on offsets into the text as it is."""
    lines = [(start, end, text[start:end]) for start, end in _lines(text)]
    title = ""
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []

    def add(start: int, end: int, code: bool) -> None:
        if not text[start:end].strip():
            return
        headings = tuple(h for _, h in stack)
        last = sections[-1] if sections else None
        if last is not None and last.headings == headings and last.code == code:
            sections[-1] = Section(last.start, end, headings, code)
        else:
            sections.append(Section(start, end, headings, code))

    def heading(level: int, name: str) -> None:
        nonlocal title
        while stack and stack[-1][0] >= level:
            stack.pop()
        if level == 1 and not title:
            title = name
        else:
            stack.append((level, name))

    fence: str | None = None
    i = 0
    while i < len(lines):
        start, end, line = lines[i]
        following = lines[i + 1][2] if i + 1 < len(lines) else ""
        opened = _FENCE.match(line)
        atx = _ATX.match(line)
        if fence is not None:
            add(start, end, True)
            if line.strip().startswith(fence):
                fence = None
        elif opened:
            fence = opened.group(1)[:3]
            add(start, end, True)
        elif atx:
            heading(len(atx.group(1)), atx.group(2).strip())
        elif line.strip() and _SETEXT.match(following):
            heading(1 if following.strip().startswith("=") else 2, line.strip())
            i += 1  # its underline
        else:
            add(start, end, False)
        i += 1
    return Outline(text, title or fallback_title, tuple(sections))


def _lines(text: str) -> Iterator[tuple[int, int]]:
    position = 0
    for line in text.splitlines(keepends=True):
        yield position, position + len(line.rstrip("\r\n"))
        position += len(line)
