"""Documents to index in tests and benchmarks: a small mixed corpus (Markdown, Korean
text, code, HTML, PDF), a larger generated one, and a PDF written by hand."""

from __future__ import annotations

import random
from pathlib import Path

LIGHTHOUSE = """# The lighthouse

The lighthouse stood on the black rock for two hundred years. Its keeper, Elias Marsh,
climbed the one hundred and twelve stairs every evening to light the lamp.

Ships passed in the night and saw the light. Some were lost anyway, in storms that no
light could pierce. Elias wrote the name of every lost ship in a green ledger.

When the light was automated in 1983, the keeper left the island. The green ledger
stayed on the shelf of the watch room.
"""

SEOUL = """서울은 대한민국의 수도이며 가장 큰 도시입니다. 인구는 약 천만 명입니다.

한강이 도시를 동서로 가로질러 흐릅니다. 강을 따라 공원과 자전거 길이 있습니다.

경복궁은 1395년에 지어진 조선 왕조의 궁궐입니다. 매일 수문장 교대식이 열립니다.
"""

TOOLS = '''"""Small tools for the inventory service."""


def reorder_level(daily_demand: float, lead_days: int, safety_stock: int) -> int:
    """The stock level at which a new order must be placed."""
    return int(daily_demand * lead_days) + safety_stock


def restock(items: dict[str, int], minimum: int) -> list[str]:
    """Names of the items whose count fell below `minimum`."""
    return sorted(name for name, count in items.items() if count < minimum)
'''

PAGE = """<html><head><title>Tea guide</title><script>track()</script></head><body>
<h1>Green tea</h1><p>Green tea is steeped at 70 to 80 degrees for two minutes.</p>
<h2>Black tea</h2><p>Black tea needs boiling water and four minutes of steeping.</p>
</body></html>
"""

PAPER_LINES = [
    "Bees communicate the direction of flowers with a waggle dance.",
    "The angle of the dance shows the direction relative to the sun.",
]


def minimal_pdf(lines: list[str]) -> bytes:
    """A real one-page PDF with a text layer, written by hand (no PDF writer needed)."""
    ops = "".join(
        f"BT /F1 12 Tf 72 {720 - 20 * i} Td ({line}) Tj ET\n" for i, line in enumerate(lines)
    )
    stream = ops.encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def write_mixed_corpus(folder: Path) -> dict[str, Path]:
    """Five documents, one of each kind the loaders take."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "lighthouse": folder / "lighthouse.md",
        "seoul": folder / "seoul.txt",
        "tools": folder / "tools.py",
        "page": folder / "tea.html",
        "paper": folder / "bees.pdf",
    }
    files["lighthouse"].write_text(LIGHTHOUSE)
    files["seoul"].write_text(SEOUL)
    files["tools"].write_text(TOOLS)
    files["page"].write_text(PAGE)
    files["paper"].write_bytes(minimal_pdf(PAPER_LINES))
    return files


_VOCABULARY = [
    "river",
    "stone",
    "signal",
    "harbour",
    "ledger",
    "engine",
    "lantern",
    "orchard",
    "glacier",
    "copper",
    "meadow",
    "archive",
    "compass",
    "furnace",
    "beacon",
    "canal",
    "quarry",
    "thunder",
    "willow",
    "falcon",
    "granite",
    "market",
    "vessel",
    "tower",
    "garden",
    "bridge",
    "winter",
    "summer",
    "north",
    "south",
    "keeper",
    "builder",
    "sailor",
    "miner",
    "weaver",
    "baker",
]


def write_generated_corpus(folder: Path, files: int, paragraphs: int, seed: int = 7) -> list[Path]:
    """`files` Markdown files of `paragraphs` paragraphs of varied, sentence-shaped text."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number in range(files):
        blocks = [f"# Document {number}"]
        for _ in range(paragraphs):
            sentences = [
                " ".join(rng.choice(_VOCABULARY) for _ in range(rng.randint(6, 16))).capitalize()
                + rng.choice([".", ".", ".", "!", "?"])
                for _ in range(rng.randint(2, 5))
            ]
            blocks.append(" ".join(sentences))
        path = folder / f"doc-{number:04d}.md"
        path.write_text("\n\n".join(blocks) + "\n")
        written.append(path)
    return written
