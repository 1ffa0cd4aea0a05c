"""The `localsuite` command: the only module that prints."""

from __future__ import annotations

import typer

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Local AI Suite: a fault-tolerant local AI stack.")


@app.callback()
def main() -> None:
    """Local AI Suite: a fault-tolerant local AI stack."""


@app.command()
def serve(
    service: str = typer.Argument(..., help="api-gateway"),
    port: int | None = typer.Option(None, help="Override the service's port"),
) -> None:
    """Run one service in the foreground."""
    from localsuite.serve import serve as run

    try:
        run(service, Settings(), port)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        raise typer.Exit(2) from exc


if __name__ == "__main__":
    app()
