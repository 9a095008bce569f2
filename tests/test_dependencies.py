"""Every third-party name the code imports is declared in ``pyproject.toml``.

A package that is only installed by accident (another package's dependency, or something left in
the machine's site-packages) works until a user installs on a fresh machine. So the imports of
each part of the repository are read with ``ast`` and checked against what ``pyproject.toml``
declares for that part:

- the packages (``uniapi_core``, ``uniapi_trio``, ``uniapi_asyncio``) against
  ``[project] dependencies``; an import guarded by ``except ImportError`` may instead come from
  an extra a user installs (it is optional by construction), never ``test``;
- ``tests/`` against the dependencies plus the ``test`` extra;
- ``fuzz/`` and ``benchmarks/`` against those plus their own extras.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"uniapi_core", "uniapi_trio", "uniapi_asyncio", "tests", "fuzz", "benchmarks"}
#: import name → distribution, for modules that may not be installed in the test venv
KNOWN_DISTS = {"yaml": "pyyaml", "atheris": "atheris", "uvloop": "uvloop", "attr": "attrs",
               "multipart": "multipart"}
#: which declared groups each part of the repository may import from
AREAS = {
    "uniapi_core": ("dependencies",),
    "uniapi_trio": ("dependencies",),
    "uniapi_asyncio": ("dependencies",),
    "tests": ("dependencies", "test"),
    "fuzz": ("dependencies", "test", "fuzz"),
    "benchmarks": ("dependencies", "test", "bench"),
}
PACKAGES = ("uniapi_core", "uniapi_trio", "uniapi_asyncio")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, set[str]]:
    """{group: normalized distribution names}; ``dependencies`` and one entry per extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project.get("dependencies", [])}
    groups.update(project.get("optional-dependencies", {}))
    return {g: {_norm(re.match(r"[A-Za-z0-9_.-]+", req).group()) for req in reqs}
            for g, reqs in groups.items()}


@functools.cache
def _installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _dists_for(module: str) -> set[str]:
    found = _installed().get(module)
    if found:
        return {_norm(d) for d in found}
    return {_norm(KNOWN_DISTS.get(module, module))}


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Is ``node`` inside a ``try`` whose handlers catch ImportError?"""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                names = {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)} \
                    if handler.type is not None else {"ImportError"}
                if names & {"ImportError", "ModuleNotFoundError", "Exception"}:
                    return True
    return False


def imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(top-level module, line, guarded) for every absolute import in ``path``, including
    ``pytest.importorskip("x")`` and ``importlib.import_module("x")`` with a literal name."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in {"importorskip", "import_module"} and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        for name in names:
            yield name.split(".")[0], node.lineno, _guarded(node, parents)


def _local_modules(path: Path) -> set[str]:
    """Scripts in fuzz/ and benchmarks/ import their neighbours by bare name."""
    return {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir()
                                                         if p.is_dir()}


def undeclared(groups: dict[str, set[str]]) -> list[str]:
    problems = []
    for area, allowed_groups in AREAS.items():
        allowed = set().union(*(groups.get(g, set()) for g in allowed_groups))
        # an optional runtime feature may come from a user-facing extra, never a dev-only one
        extras = set().union(*(v for g, v in groups.items()
                               if g not in {"test", "fuzz", "bench"}))
        for path in sorted((ROOT / area).rglob("*.py")):
            local = _local_modules(path)
            for module, line, guarded in imports(path):
                if module in sys.stdlib_module_names or module in FIRST_PARTY or \
                        module in local or module == "__future__":
                    continue
                dists = _dists_for(module)
                ok = allowed if not (guarded and area in PACKAGES) else allowed | extras
                if not dists & ok:
                    problems.append(f"{path.relative_to(ROOT)}:{line} imports {module!r} "
                                    f"(distribution {'/'.join(sorted(dists))}), not declared in "
                                    f"pyproject.toml {' or '.join(allowed_groups)}")
    return problems


def test_every_import_is_declared_in_pyproject():
    assert undeclared(declared()) == []


def test_the_check_catches_an_undeclared_import():
    """The check itself can fail: drop a declared test dependency and it must complain."""
    groups = declared()
    groups["test"] = groups["test"] - {"httpx"}
    problems = undeclared(groups)
    assert any("imports 'httpx'" in p for p in problems), problems
