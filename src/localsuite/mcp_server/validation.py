"""Checks of tool arguments that a JSON schema cannot express, made before any call.

rag refuses paths outside its documents folder itself (403); the MCP server refuses them
first, so a client learns why without a round trip, and a rag that trusts its callers
(an older build, another configuration) is never asked to read outside the folder.
"""

from __future__ import annotations

from pathlib import Path, PurePath

from localsuite.mcp_server.errors import InvalidInput

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$"
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # the same as rag's
ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"


def document_path(raw: str, documents_dir: Path) -> str:
    """`raw` as a path relative to the documents folder ("." for the folder itself).

    Relative paths are taken inside the folder; absolute ones must lie inside it. `..`
    is refused outright, and the path is resolved, so a symbolic link that leads out of
    the folder is refused too.
    """
    shown = raw if len(raw) <= 200 else f"{raw[:200]}…"
    if "\x00" in raw:
        raise InvalidInput("the path contains a NUL character")
    if ".." in PurePath(raw).parts:
        raise InvalidInput(
            f"{shown!r}: `..` is not allowed; give a path inside the documents folder "
            f"({documents_dir})"
        )
    try:
        root = documents_dir.resolve()
        path = Path(raw)
        resolved = (path if path.is_absolute() else root / path).resolve()
    except (OSError, RuntimeError) as exc:  # too long, a symlink loop
        raise InvalidInput(f"unusable path {shown!r}: {exc}") from exc
    if not resolved.is_relative_to(root):
        raise InvalidInput(
            f"{shown} is outside the documents folder ({root}); index_documents reads only "
            "that folder: copy or move the files there first"
        )
    return resolved.relative_to(root).as_posix()


def model_name(name: str) -> str:
    """A registry name: a file name in MODELS_DIR, its stem or `bundled`; never a path."""
    if ".." in name or "/" in name or "\\" in name or name.startswith("."):
        raise InvalidInput(
            f"{name!r} is not a model name: models are named as `list_models` shows them "
            "(a *.gguf file in MODELS_DIR), never given as paths"
        )
    return name
