#!/usr/bin/env bash
# The one gate, used locally and by CI: format, lint, types, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH"

echo "==> ruff format --check"; ruff format --check src tests bench
echo "==> ruff check";          ruff check src tests bench
echo "==> mypy";                mypy
echo "==> pytest";              pytest "$@"
