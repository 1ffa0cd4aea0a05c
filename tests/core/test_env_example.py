"""`.env.example` lists every setting with its real default, and loads as a `.env`."""

from __future__ import annotations

import re
from pathlib import Path

from localsuite.core.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_every_setting_is_documented_and_nothing_else() -> None:
    text = EXAMPLE.read_text()
    documented = {m[1] for m in re.finditer(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M)}
    assert documented == {name.upper() for name in Settings.model_fields}


def test_the_example_as_a_dotenv_gives_the_defaults() -> None:
    assert Settings(_env_file=EXAMPLE) == Settings(_env_file=None)
