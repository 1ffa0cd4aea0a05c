"""`python -m localsuite` is the `localsuite` command."""

from localsuite.cli import app

app()
