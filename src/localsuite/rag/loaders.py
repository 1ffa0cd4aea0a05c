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
from pathlib import Path

from localsuite.rag import sections
from localsuite.rag.sections import Outline

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


MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdx"})


@dataclass(frozen=True, slots=True)
class Document:
    kind: str  # text | code | html | pdf
    outline: Outline  # the text, its title and its sections (`sections`)

    @property
    def text(self) -> str:
        return self.outline.text

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


def load(path: Path, data: bytes | None = None, name: str | None = None) -> Document:
    """The text of the file at `path` (or of `data`, named by `path`), with its outline;
    `name` (default: the file's) titles a document that has no title of its own."""
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
    name = name or path.name
    if kind == "pdf":
        return Document(kind, sections.plain(_pdf_text(path, data), name))
    text = decode(data, path.name)
    if kind == "html":
        return Document(kind, sections.html(text, name))
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        return Document(kind, sections.markdown(text, name))
    return Document(kind, sections.plain(text, name, code=kind == "code"))


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
