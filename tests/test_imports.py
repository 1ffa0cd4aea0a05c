"""The shape of the code, read from its imports: no cycles, and no test support in
production code.

Every import in `src/localsuite` counts, at module level and inside functions (a
function-level import still ties the two modules together: it only hides the cycle
from the start-up order), except those that never run when the module is imported:
under `if TYPE_CHECKING:`, and under `if __name__ == "__main__":` at the end of a file
that is also a program (`python -m localsuite.deploy.probe`): there the file runs as
the module `__main__`, and what that block imports is the program's, not the module's.
A package here is a top-level part of `localsuite` (`core`, `gateway`, `supervisor`,
...; a module beside them, such as `serve`, is its own part).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "localsuite"
TESTING = f"{PACKAGE}.testing"
# The services depend on core only: what crosses a service boundary crosses it over HTTP.
SERVICES = ("gateway", "embedding", "rag", "mcp_server")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs when the module is imported."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports_in(child)
            continue
        if isinstance(tree, ast.Module) and isinstance(node, ast.If) and _is_main_guard(node.test):
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def imported(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules of the package that module `name` (at `path`) imports."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for named in targets:
            target = named
            while target and target not in known:  # `import a.b.c` names a.b.c's module
                target = target.rpartition(".")[0]
            if target and target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imported(name, path, found) for name, path in found.items()}


def part(module: str) -> str:
    """The top-level part of `localsuite` a module belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = packages.setdefault(part(module), set())
        edges.update(part(t) for t in targets if part(t) != part(module))
    return packages


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


GRAPH = import_graph()


def test_the_walk_sees_the_whole_package() -> None:
    assert len(GRAPH) > 50
    assert f"{PACKAGE}.core.settings" in GRAPH[f"{PACKAGE}.serve"]


def test_no_module_imports_itself_back() -> None:
    found = cycles(GRAPH)
    assert not found, f"modules that import each other: {found}"


def test_no_package_imports_itself_back() -> None:
    found = cycles(package_graph(GRAPH))
    assert not found, f"packages that import each other: {found}"


def test_production_code_imports_no_test_support() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if not module.startswith(TESTING)
        for target in targets
        if target.startswith(TESTING)
    )
    assert not offenders, offenders


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_depends_on_core_alone(service: str) -> None:
    own = f"{PACKAGE}.{service}"
    allowed = (own, f"{PACKAGE}.core", PACKAGE)  # the package itself holds the version
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if part(module) == own
        for target in targets
        if part(target) not in allowed
    )
    assert not offenders, offenders


def test_core_imports_no_other_part() -> None:
    core = f"{PACKAGE}.core"
    outside = {t for m, ts in GRAPH.items() if part(m) == core for t in ts if part(t) != core}
    assert outside <= {PACKAGE}


# --- the walker itself, on small trees --------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for name, text in files.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [tmp_path / PACKAGE, *(tmp_path / PACKAGE).rglob("*")]:
        if folder.is_dir() and not (folder / "__init__.py").exists():
            (folder / "__init__.py").write_text("")
    return import_graph(tmp_path)


def test_a_function_level_import_closes_a_cycle(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "a/one.py": "from localsuite.a import two\n",
            "a/two.py": "def f():\n    from localsuite.a.one import x\n",
        },
    )
    assert cycles(graph) == [["localsuite.a.one", "localsuite.a.two"]]


def test_a_type_checking_import_does_not(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "a/one.py": "from .two import y\n",
            "a/two.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from localsuite.a.one import x\nelse:\n    import json\n"
            ),
        },
    )
    assert graph["localsuite.a.one"] == {"localsuite.a.two"}
    assert cycles(graph) == []


def test_a_program_may_import_what_imports_its_module(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "a/probe.py": (
                "def probe():\n    return 1\n"
                'if __name__ == "__main__":\n    from localsuite.b.main import run\n'
            ),
            "b/main.py": "from localsuite.a.probe import probe\n",
            "b/other.py": (
                'def f():\n    if __name__ == "__main__":\n        import localsuite.a.x\n'
            ),
            "a/x.py": "",
        },
    )
    assert graph["localsuite.a.probe"] == set()
    assert graph["localsuite.b.other"] == {"localsuite.a.x"}  # inside a function: counted
    assert cycles(package_graph(graph)) == []


def test_packages_that_import_each_other_form_a_cycle(tmp_path: Path) -> None:
    graph = _tree(
        tmp_path,
        {
            "a/one.py": "import localsuite.b.two\n",
            "b/two.py": "x = 1\n",
            "b/three.py": "from localsuite.a.one import z\n",
        },
    )
    assert cycles(graph) == []
    assert cycles(package_graph(graph)) == [["localsuite.a", "localsuite.b"]]
