"""The design card's promises, checked: an I/O-free core and thin transports."""

from __future__ import annotations

import ast
import re
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


def _docstrings(tree: ast.AST) -> list[ast.Constant]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                out.append(first.value)
    return out


def code_lines(path: Path) -> int:
    """Lines that are not blank and not a ``#`` comment (docstrings count): the count issue 12
    used (987 for uniapi_trio when it was filed) and the before-stop review uses."""
    return sum(1 for line in path.read_text().splitlines()
               if line.strip() and not line.strip().startswith("#"))


def _code_lines(package: str) -> int:
    return sum(code_lines(path) for path in (ROOT / package).rglob("*.py"))


#: Code lines per transport, cli.py (the one command-line shell every entry runs) included:
#: issue 12's limit (uniapi_trio 650, uniapi_asyncio 566 when it was met), plus issue 13's
#: stats store worker (``Store``: a thread for the core's ``StoreSession``, the flush loop and
#: ``Query``; 33 lines in trio, 40 in asyncio), plus issue 13's hot reload (50 lines in trio,
#: 41 in asyncio, which still fit its limit: the loop performing the core's reload program,
#: SIGHUP, the ``Reload`` action; in cli.py the one file reader shared by start and reload,
#: and ``--workers`` forwarding SIGHUP), plus ``--workers`` metrics (28 lines in trio, 23 in
#: asyncio: publishing this worker's snapshot every second, reading the others' for a scrape,
#: in cli.py the shared directory), plus issue 16's shared state (191 lines in trio, 147 in
#: asyncio: ``redis.py``, the I/O of the core's ``RedisLink`` over TCP, TLS or a Unix socket —
#: reader, single writer batching what queued (trio writes a plain socket at once when
#: nothing is queued, as asyncio's transport does: half a millisecond per request), watchdog,
#: reconnect, and ``ask``, which hands a pipeline's replies to the connection's inbox from the
#: reader, so a request's shared decision costs no task of its own (who waits for which
#: pipeline is the core's ``redis/link.Callers``); in server.py the ``RunShared``/``TellShared`` actions
#: and the loop following the fleet's reloads, whose decisions are the core's
#: ``ReloadFollower``).
#: Plus issue 17's lingering close and idle shedding (32 lines in trio, 38 in asyncio: the
#: half-close and bounded drain after a ``Close(linger=True)``, registering each connection's
#: ``Shed`` with the core's ``http/occupancy.Occupancy``, which decides, and the
#: ``malloc_trim`` it says is due after a burst), and trio's stats flush finishing when its
#: server is cancelled, as asyncio's already did (3 lines: a shield and a ``finally``), and
#: trio's checkpoint before an upstream attempt starts, so one stopped while it waited for its
#: connection sends nothing (1 line; asyncio's ``await`` already raised there).
#: trio 989: cli.py mutes the loggers of libraries that log about a client's input
#: (startup.QUIET_LOGGERS: pypdf), two lines of process set-up next to basicConfig
THIN = {"uniapi_trio": 989, "uniapi_asyncio": 852}


def test_transports_stay_thin():
    for package, limit in THIN.items():
        assert _code_lines(package) <= limit, package


#: What a transport may spell out itself: no number but 0, ±1, 2 and indexes or keys in
#: subscripts (into tuples the OS hands back; a connection's helper-task keys); no text with a
#: space in it (an error text or a message: those are the core's), no header name. The
#: command-line shell (cli.py) prints only the core's texts but names its logging format.
_ALLOWED_NUMBERS = {0, 1, -1, 2}
_ALLOWED_TEXTS = {"%(asctime)s %(levelname)s %(message)s"}
_HEADER = re.compile(r"^(host|authorization|connection|content-[a-z]+|x-[a-z-]+|accept|"
                     r"transfer-encoding|te|upgrade|keep-alive|user-agent)$")


def test_transports_hold_no_timeout_value_header_rule_or_text():
    """Each transport holds no pool, retry, timeout value, header rule or error text (issue
    12): every number, text and header name a transport's code writes is checked here (the
    pool, retries, Host rule and failure texts are in uniapi_core/upstream.py and http/pool.py;
    the rest of the core's values in connection.py, http/stall.py, startup.py)."""
    offenders = []
    for package in THIN:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            docs = {id(d) for d in _docstrings(tree)}
            subscripts = {id(c) for n in ast.walk(tree) if isinstance(n, ast.Subscript)
                          for c in ast.walk(n.slice)}
            where = f"{path.relative_to(ROOT)}"
            for node in ast.walk(tree):
                if isinstance(node, ast.JoinedStr):
                    text = "".join(v.value for v in node.values
                                   if isinstance(v, ast.Constant) and isinstance(v.value, str))
                    if " " in text:
                        offenders.append(f"{where}:{node.lineno} f-string {text!r}")
                if not isinstance(node, ast.Constant) or id(node) in docs:
                    continue
                value = node.value
                if isinstance(value, bool) or value is None or value is Ellipsis:
                    continue
                if isinstance(value, (int, float)):
                    if value not in _ALLOWED_NUMBERS and id(node) not in subscripts:
                        offenders.append(f"{where}:{node.lineno} number {value!r}")
                elif isinstance(value, str):
                    if (" " in value and value not in _ALLOWED_TEXTS) or \
                            _HEADER.match(value.lower()):
                        offenders.append(f"{where}:{node.lineno} text {value!r}")
    assert offenders == []


def test_transports_do_not_import_each_other_except_the_cli():
    for package, other in (("uniapi_trio", "uniapi_asyncio"), ("uniapi_asyncio", "uniapi_trio")):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "cli.py":
                continue
            assert other not in path.read_text(), path


# ---------------------------------------------------------------------------------------------
# The floors of the core (docs/architecture.md, "Floors"): a module imports only from its own
# floor or below. Keys are paths under uniapi_core without ``.py``; a package (``config``)
# covers every module in it. The table in docs/architecture.md must say the same thing.

FLOORS: dict[int, tuple[str, ...]] = {
    1: ("errors", "jsonutil", "proxyurl", "modelmatch", "multipart", "pemkey", "moderation"),
    2: ("config", "request"),
    3: ("streams", "http", "redis", "ratelimit", "ssrf", "ops"),
    4: ("vendors", "fronts", "routing"),
    5: ("relay",),
    6: ("gateway", "demo", "summary", "startup", "cmdline"),
    7: ("request_machine", "upstream"),
    8: ("events", "session", "h2session", "connection", "shell", "simulate"),
}
#: ``uniapi_core/__init__.py`` is the package's front door: it sits above every floor, so a
#: core module importing ``uniapi_core`` itself is an upward arrow too.
TOP = max(FLOORS) + 1

#: Upward arrows that exist today, (importer, imported) as dotted module names, each with why
#: it is tolerated and where it should go. Do not add to this list: move the shared thing down
#: instead. When an arrow is gone, delete its entry (a stale entry fails the test below).
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _floor(name: str) -> int | None:
    """The floor of a dotted ``uniapi_core`` module (longest listed prefix wins)."""
    if name == "uniapi_core":
        return TOP
    rel = name.removeprefix("uniapi_core.")
    best: tuple[int, int] | None = None
    for floor, keys in FLOORS.items():
        for key in keys:
            if rel == key or rel.startswith(key + "."):
                if best is None or len(key) > best[0]:
                    best = (len(key), floor)
    return None if best is None else best[1]


def _core_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import of a ``uniapi_core`` module in ``path``, at any
    depth (module level, functions, ``if TYPE_CHECKING``), relative imports resolved, and
    ``from pkg import sub`` counted as an import of the submodule ``pkg.sub`` when it is one."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                assert base, f"{path.relative_to(ROOT)}:{node.lineno} escapes uniapi_core"
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((node.lineno, sub if _is_module(sub) else target))
    return [(line, mod) for line, mod in out
            if mod == "uniapi_core" or mod.startswith("uniapi_core.")]


def _upward_edges() -> list[tuple[str, str, str]]:
    """(importer, imported, message) for every import from a higher floor."""
    edges = []
    for path in _core_files():
        importer = _module_name(path)
        low = _floor(importer)
        if low is None:  # test_every_core_module_has_a_floor names it
            continue
        for line, imported in _core_imports(path):
            high = _floor(imported)
            assert high is not None, f"{imported} (imported by {importer}) has no floor"
            if high > low:
                edges.append((importer, imported, f"{path.relative_to(ROOT)}:{line} (floor "
                              f"{low}) imports {imported} (floor {high})"))
    return edges


def test_every_core_module_has_a_floor():
    unplaced = [str(p.relative_to(ROOT)) for p in _core_files()
                if _floor(_module_name(p)) is None]
    assert unplaced == [], "add them to FLOORS here and to the table in docs/architecture.md"


def test_the_core_has_no_upward_import():
    new = [msg for a, b, msg in _upward_edges() if (a, b) not in ALLOWED_UPWARD]
    assert new == [], "upward imports (move the shared thing down a floor):\n" + "\n".join(new)


def test_the_upward_allow_list_has_no_stale_entries():
    present = {(a, b) for a, b, _ in _upward_edges()}
    stale = [f"{a} -> {b}" for a, b in ALLOWED_UPWARD if (a, b) not in present]
    assert stale == [], "these arrows are gone: delete them from ALLOWED_UPWARD"


def test_the_floors_table_in_the_docs_matches_the_test():
    """Each row of the "Floors" table is ``| N | `mod`, `pkg/` … | what |``."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("Floors, from the ground up", 1)[1].split("\n\n", 2)[1]
    documented: dict[int, set[str]] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if not cells[0].isdigit():
            continue
        names = re.findall(r"`([\w/.]+)`", cells[1])
        documented.setdefault(int(cells[0]), set()).update(
            n.removesuffix(".py").rstrip("/").replace("/", ".") for n in names)
    assert documented == {floor: set(keys) for floor, keys in FLOORS.items()}
