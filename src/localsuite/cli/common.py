"""The `localsuite` command's app and what every command shares: settings, errors, output.

The CLI is the only part of the suite that prints; its commands live beside this
module, one module per concern (`stack`, `talk`, `documents`, `serve`), and what they
show is drawn by the pure functions of `render`.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from localsuite.core.http import bearer
from localsuite.core.settings import Settings

if TYPE_CHECKING:
    from localsuite.supervisor.client import ControlClient

app = typer.Typer(no_args_is_help=True, add_completion=False)
# Piped or redirected output keeps whole table cells instead of rich's 80-column default.
_WIDE = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
console = Console(width=_WIDE)
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        raise fail(f"invalid configuration: {exc}", 2) from exc


def control_client(settings: Settings) -> ControlClient:
    from localsuite.supervisor.client import ControlClient, ControlError

    try:
        return ControlClient(settings)
    except ControlError as exc:
        raise fail(exc.message) from exc


def auth_headers(settings: Settings) -> dict[str, str]:
    return bearer(settings.api_key)


@app.callback()
def main() -> None:
    """Local AI Suite: a fault-tolerant local AI stack."""
