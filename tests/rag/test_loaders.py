"""Loaders: text in its encodings, HTML, PDF, code; binary and broken files refused."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from localsuite.rag.loaders import NotADocument, decode, kind_of, load
from localsuite.testing.documents import minimal_pdf

KOREAN = "한국어 문서입니다. 검색이 되어야 합니다."


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("notes.txt", "text"), ("README.md", "text"), ("README", "text"), ("guide.rst", "text"),
        ("app.py", "code"), ("main.GO", "code"), ("Makefile", "code"), ("conf.yaml", "code"),
        ("page.html", "html"), ("paper.pdf", "pdf"), ("photo.png", None), ("a.zip", None),
    ],
)  # fmt: skip
def test_kind_by_name(name: str, kind: str | None) -> None:
    assert kind_of(Path(name)) == kind


@pytest.mark.parametrize(
    "data",
    [
        KOREAN.encode("utf-8"),
        codecs.BOM_UTF8 + KOREAN.encode("utf-8"),
        KOREAN.encode("utf-16"),  # with its BOM
        KOREAN.encode("cp949"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16", "cp949"],
)
def test_korean_text_in_its_usual_encodings(data: bytes) -> None:
    assert decode(data, "doc.txt") == KOREAN


def test_binary_content_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(NotADocument, match="binary"):
        load(path)


def test_undecodable_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.txt"
    path.write_bytes(bytes(range(0x80, 0x100)) * 4)
    with pytest.raises(NotADocument, match="not valid"):
        load(path)


def test_unsupported_type_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotADocument, match="unsupported"):
        load(tmp_path / "image.png")
    with pytest.raises(NotADocument, match="cannot read"):
        load(tmp_path / "missing.md")


def test_empty_file_is_an_empty_document(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    assert load(path).text == ""


def test_html_keeps_visible_text_and_block_structure(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>The Title</title><style>p {color: red}</style>"
        "<script>var secret = 1;</script></head><body><h1>Heading</h1>"
        "<p>First   paragraph &amp; more.</p><div>Second<br>line</div></body></html>"
    )
    document = load(path)
    assert document.kind == "html"
    assert document.text.split("\n\n") == [
        "The Title", "Heading", "First paragraph & more.", "Second", "line",
    ]  # fmt: skip
    assert "secret" not in document.text and "color" not in document.text


def test_pdf_text_layer_is_read(tmp_path: Path) -> None:
    path = tmp_path / "paper.pdf"
    path.write_bytes(minimal_pdf(["Lighthouses guide ships.", "Keepers tend the light."]))
    document = load(path)
    assert document.kind == "pdf"
    assert "Lighthouses guide ships." in document.text
    assert "Keepers tend the light." in document.text


def test_a_broken_pdf_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    with pytest.raises(NotADocument, match="PDF"):
        load(path)


def test_code_is_marked_as_code(tmp_path: Path) -> None:
    path = tmp_path / "tool.py"
    path.write_text("def main():\n    return 1\n")
    document = load(path)
    assert document.is_code and document.text.startswith("def main()")
