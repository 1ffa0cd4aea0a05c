"""The `localsuite` command: the only part of the suite that prints.

`app` (the typer app, every command registered in the order `localsuite --help` lists
them) is built on first use, so that the small programs beside it (`programs.py`: the
containers' health probe, run every few seconds) start without loading every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

    app: typer.Typer


def __getattr__(name: str) -> object:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from localsuite.cli import stack, talk, documents, serve  # noqa: F401, I001 - help order
    from localsuite.cli.common import app

    return app
