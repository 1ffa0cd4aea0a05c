"""The small programs the containers and the installer run with `python -m`:

    python -m localsuite.deploy.probe URL       a container's health check (exit 0 on 2xx)
    python -m localsuite.deploy.models DIR      copy the bundled GGUF into a models folder
    python -m localsuite.inference.check        can this machine's llama-server generate?

Each module named there does the work; what the program reads from its command line
and prints is here, with the rest of the CLI's output. Plain argparse and print, not
typer: a probe starts every few seconds, in a slim image, and a quick start matters.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from localsuite.core.errors import ConfigError
from localsuite.core.settings import Settings


def probe_main(argv: list[str] | None = None) -> int:
    from localsuite.deploy.probe import DEFAULT_TIMEOUT, probe

    parser = argparse.ArgumentParser(
        prog="python -m localsuite.deploy.probe",
        description="Exit 0 when URL answers 2xx (a container health check).",
    )
    parser.add_argument("url")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default 5)"
    )
    args = parser.parse_args(argv)
    result = probe(args.url, api_key=Settings().api_key, timeout=args.timeout)
    print(result.detail, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def export_model_main(argv: list[str] | None = None) -> int:
    from localsuite.deploy.models import export_bundled

    parser = argparse.ArgumentParser(
        prog="python -m localsuite.deploy.models",
        description="Copy the bundled SmolLM2 GGUF into a models directory (MODELS_DIR).",
    )
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    try:
        path, copied = export_bundled(args.directory)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'copied' if copied else 'already there'}: {path}")
    return 0


def check_main() -> int:
    from localsuite.inference.check import CannotGenerate, check_generation

    with tempfile.TemporaryDirectory(prefix="localsuite-check-") as tmp:
        try:
            plan = check_generation(Path(tmp))
        except (ConfigError, CannotGenerate) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"llama-server: {plan.argv[0]} (generates)")
    print(f"bundled model: {plan.model.path}")
    return 0
