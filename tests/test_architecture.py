"""The design card's promises, checked: an I/O-free core and thin transports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "uniapi_core"

BANNED_MODULES = {"socket", "ssl", "select", "selectors", "asyncio", "trio", "threading",
                  "subprocess", "time", "urllib.request", "http.client", "os", "uniapi_trio",
                  "uniapi_asyncio", "logging"}
BANNED_CALLS = {("random", "random"), ("random", "choice"), ("random", "shuffle"),
                ("random", "randint"), ("random", "uniform"), ("uuid", "uuid4"),
                ("os", "urandom"), ("os", "environ"), ("datetime", "now")}


def _core_files():
    return sorted(CORE.rglob("*.py"))


def test_core_imports_no_io_modules():
    offenders = []
    for path in _core_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name in BANNED_MODULES or name.split(".")[0] in BANNED_MODULES:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert offenders == []


def test_core_calls_no_global_randomness_clock_or_environment():
    offenders = []
    for path in _core_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in BANNED_CALLS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                                     f"{node.value.id}.{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in {"open", "print", "input"}:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}()")
    assert offenders == []


def _code_lines(package: str) -> int:
    n = 0
    for path in (ROOT / package).rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s and not s.startswith("#"):
                n += 1
    return n


def test_transports_stay_thin():
    for package in ("uniapi_trio", "uniapi_asyncio"):
        assert _code_lines(package) <= 1000, package


def test_transports_do_not_import_each_other_except_the_cli():
    for package, other in (("uniapi_trio", "uniapi_asyncio"), ("uniapi_asyncio", "uniapi_trio")):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "cli.py":
                continue
            assert other not in path.read_text(), path
