"""The `localsuite` command: the only part of the suite that prints.

Commands register on `app` when their module is imported; the order here is the order
`localsuite --help` lists them.
"""

from localsuite.cli import stack, talk, documents, serve  # noqa: I001 - the help's order
from localsuite.cli.app import app

__all__ = ["app", "documents", "serve", "stack", "talk"]
