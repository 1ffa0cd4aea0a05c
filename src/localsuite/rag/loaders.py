"""Loaders: a file on disk → the text to index, by file type.

    text      .txt .md .rst … and files with no suffix that decode as text
    code      source files (chunked at lines rather than sentences)
    html      .html .htm: the visible text, block elements as paragraph breaks
    pdf       .pdf: the text layer of each page (pypdf), pages as paragraphs

Text is decoded as UTF-8 (with or without BOM), UTF-16 with a BOM, or CP949 (Korean
documents saved by older Windows tools); anything else is reported as not text.
Files that are not documents (images, archives, binaries) are refused with a reason,
never indexed as garbage.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

MAX_FILE_BYTES = 50 * 1024 * 1024

CODE_SUFFIXES = frozenset(
    [
        ".py",
        ".pyi",
        ".js",
        ".jsx",
        ".ts",
        ".tsx",
        ".mjs",
        ".cjs",
        ".java",
        ".kt",
        ".kts",
        ".scala",
        ".go",
        ".rs",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".cxx",
        ".hpp",
        ".hh",
        ".cs",
        ".swift",
        ".m",
        ".mm",
        ".rb",
        ".php",
        ".pl",
        ".pm",
        ".lua",
        ".r",
        ".jl",
        ".dart",
        ".ex",
        ".exs",
        ".erl",
        ".hs",
        ".ml",
        ".clj",
        ".sh",
        ".bash",
        ".zsh",
        ".fish",
        ".ps1",
        ".bat",
        ".sql",
        ".graphql",
        ".proto",
        ".css",
        ".scss",
        ".less",
        ".vue",
        ".svelte",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".json",
        ".jsonc",
        ".xml",
        ".gradle",
        ".cmake",
        ".mk",
        ".tf",
        ".nix",
        ".dockerfile",
    ]
)
CODE_NAMES = frozenset({"Makefile", "Dockerfile", "CMakeLists.txt", "Containerfile"})
TEXT_SUFFIXES = frozenset(
    [
        ".txt",
        ".text",
        ".md",
        ".markdown",
        ".mdx",
        ".rst",
        ".adoc",
        ".org",
        ".tex",
        ".csv",
        ".tsv",
        ".log",
    ]
)
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = CODE_SUFFIXES | TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


class NotADocument(Exception):
    """The file cannot be indexed; the message says why."""


@dataclass(frozen=True, slots=True)
class Document:
    text: str
    kind: str  # text | code | html | pdf

    @property
    def is_code(self) -> bool:
        return self.kind == "code"


def kind_of(path: Path) -> str | None:
    """The loader for `path` by its name, or None for a name no loader takes."""
    suffix = path.suffix.lower()
    if path.name in CODE_NAMES or suffix in CODE_SUFFIXES:
        return "code"
    if suffix in TEXT_SUFFIXES or suffix == "":
        return "text"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in PDF_SUFFIXES:
        return "pdf"
    return None


def load(path: Path, data: bytes | None = None) -> Document:
    """The text of the file at `path` (or of `data`, named by `path`)."""
    kind = kind_of(path)
    if kind is None:
        raise NotADocument(f"{path.name}: unsupported file type {path.suffix!r}")
    if data is None:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise NotADocument(f"{path.name}: larger than {MAX_FILE_BYTES // 2**20} MiB")
            data = path.read_bytes()
        except OSError as exc:
            raise NotADocument(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if kind == "pdf":
        return Document(_pdf_text(path, data), kind)
    text = decode(data, path.name)
    if kind == "html":
        return Document(_html_text(text), kind)
    return Document(text, kind)


def decode(data: bytes, name: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise NotADocument(f"{name}: binary content (NUL bytes), not text")
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise NotADocument(f"{name}: not valid UTF-8, UTF-16 or CP949 text")


def _pdf_text(path: Path, data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise NotADocument(f"{path.name}: unreadable PDF ({type(exc).__name__}: {exc})") from exc
    return "\n\n".join(page.strip() for page in pages if page.strip())


_BLOCK_TAGS = frozenset(
    [
        "p",
        "div",
        "section",
        "article",
        "header",
        "footer",
        "main",
        "aside",
        "nav",
        "li",
        "ul",
        "ol",
        "table",
        "tr",
        "td",
        "th",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "blockquote",
        "br",
        "hr",
        "dd",
        "dt",
        "dl",
        "figure",
        "figcaption",
        "title",
    ]
)
_HIDDEN_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._title = True
        elif tag in _HIDDEN_TAGS:
            self._hidden += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._title = False
        elif tag in _HIDDEN_TAGS and self._hidden:
            self._hidden -= 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._title or not self._hidden:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    blocks = ("".join(parser.parts)).split("\n\n")
    return "\n\n".join(" ".join(b.split()) for b in blocks if b.strip())


def indexable(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES or path.name in CODE_NAMES


def walk(root: Path) -> list[Path]:
    """Every indexable file under `root`, skipping hidden files and folders; folder links
    are not followed (no cycles)."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and indexable(path) and not _inside_linked_dir(path, root):
            found.append(path)
    return found


def _inside_linked_dir(path: Path, root: Path) -> bool:
    return any(
        parent.is_symlink() for parent in path.parents if parent != root and root in parent.parents
    )
