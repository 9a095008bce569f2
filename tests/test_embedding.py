"""The public API of ``uniapi_core`` (docs/embedding.md) and its example.

- docs/examples/asyncio_proxy.py serves real chat completions (the official ``openai`` SDK as
  the client, a fake OpenAI-compatible upstream on 127.0.0.1), imports nothing but the standard
  library and ``from uniapi_core import <names of __all__>``, and type-checks;
- every name of ``uniapi_core.__all__`` resolves, is documented in docs/embedding.md, and the
  package's three lists of it (``__all__``, the lazy table, the imports type checkers read)
  agree; ``import uniapi_core`` alone imports no submodule.
"""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

import uniapi_core
from tests.fakes.poll import ready as poll_ready
from tests.fakes.upstream import FakeUpstream, json_reply, sse_reply

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "asyncio_proxy.py"
PAGE = ROOT / "docs" / "embedding.md"
KEY = "sk-embedding-test"


# -- the example, run -----------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream()
    yield up
    up.close()


@contextmanager
def running_example(upstream_url: str, tmp_path: Path) -> Iterator[str]:
    """The example serving a config for ``upstream_url`` on a free port; its base URL."""
    config = tmp_path / "api.yaml"
    config.write_text(f"""
providers:
  - provider: fake
    base_url: {upstream_url}/v1/chat/completions
    api: sk-upstream
    model:
      - gpt-fake: m
api_keys:
  - api: {KEY}
    model: [fake/*]
""")
    with open(tmp_path / "stderr.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(EXAMPLE), str(config), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=log, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        readable, _ = poll_ready([proc.stdout], 20)
        line = proc.stdout.readline().decode() if readable else ""
        assert line.startswith("serving on http://127.0.0.1:"), (
            line + (tmp_path / "stderr.log").read_text())
        yield line.split()[-1]
    finally:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def proxy(upstream: FakeUpstream, tmp_path: Path) -> Iterator[str]:
    with running_example(upstream.url, tmp_path) as url:
        yield url


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=10)


def chunk(text: str) -> dict[str, object]:
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "x",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


@pytest.mark.timeout(60)
def test_the_example_serves_chat_completions(upstream: FakeUpstream, proxy: str,
                                            checked_chat: Any) -> None:
    upstream.replies.append(json_reply({
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}))
    upstream.replies.append(sse_reply([chunk("one "), chunk("two "), chunk("three")]))
    messages = [{"role": "user", "content": "count"}]

    # the example runs in another process, out of reach of tests/conftest.py's validator
    # fixture: checked_chat runs what it answers through the chat stream validator
    answer = checked_chat(client(proxy), model="m", messages=messages)
    assert answer.choices[0].message.content == "whole answer"
    assert answer.model == "m"
    stream = checked_chat(client(proxy), model="m", messages=messages, stream=True)
    texts = [c.choices[0].delta.content for c in stream if c.choices]
    assert "".join(t or "" for t in texts) == "one two three"

    assert [s.path for s in upstream.seen] == ["/v1/chat/completions"] * 2
    assert [s.json()["model"] for s in upstream.seen] == ["gpt-fake"] * 2
    assert upstream.seen[0].headers["authorization"] == "Bearer sk-upstream"
    assert upstream.connections == 1  # the core's pool kept the connection between requests


@pytest.mark.timeout(60)
def test_the_example_reports_an_upstream_it_cannot_reach(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: the connect is refused
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with running_example(closed, tmp_path) as url, \
            pytest.raises(openai.APIStatusError) as raised:
        client(url).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code >= 500
    assert "cannot connect to 127.0.0.1" in json.dumps(raised.value.body)


# -- the example, read ----------------------------------------------------------------------


def outside_imports(source: str) -> list[str]:
    """What ``source`` uses besides the standard library and ``from uniapi_core import`` of
    public names: other imports, submodules, star imports, dynamic imports."""
    public = set(uniapi_core.__all__)
    problems = []
    for node in ast.walk(ast.parse(source)):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            problems += [f"{where}: import {a.name}" for a in node.names
                         if a.name.split(".")[0] not in sys.stdlib_module_names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module.split(".")[0] not in sys.stdlib_module_names | {
                    "uniapi_core"}:
                problems.append(f"{where}: from {'.' * node.level}{module} import")
            elif module.startswith("uniapi_core"):
                names = {a.name for a in node.names}
                if module != "uniapi_core" or not names <= public:
                    problems.append(f"{where}: from {module} import "
                                    f"{', '.join(sorted(names - public) or names)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in {"__import__", "import_module"}:
                problems.append(f"{where}: {name}()")
    return problems


def test_the_example_uses_only_the_public_api() -> None:
    assert outside_imports(EXAMPLE.read_text()) == []


def test_the_import_check_can_fail() -> None:
    bad = ("import uniapi_core.connection\nfrom uniapi_core.events import Write\n"
           "from uniapi_core import Connection, relay\nfrom uniapi_core import *\n"
           "import yaml\nfrom . import x\nimportlib.import_module('uniapi_core.gateway')\n")
    assert len(outside_imports(bad)) == 7
    assert outside_imports("import asyncio\nfrom collections.abc import Callable\n"
                           "from uniapi_core import Connection, SSE_DONE\n") == []


def test_the_example_type_checks(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "mypy_cache"), "--no-color-output", str(EXAMPLE)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the names ------------------------------------------------------------------------------


def test_every_public_name_resolves_and_is_documented() -> None:
    page = PAGE.read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", page, re.MULTILINE))
    for name in uniapi_core.__all__:
        assert getattr(uniapi_core, name) is not None, name
    assert sorted(set(uniapi_core.__all__) - documented) == [], "add them to docs/embedding.md"
    assert sorted(documented - set(uniapi_core.__all__)) == [], "documented but not exported"
    assert len(uniapi_core.__all__) == len(set(uniapi_core.__all__))


def test_the_package_lists_agree() -> None:
    """``__all__``, the lazy table and the ``if TYPE_CHECKING:`` imports name the same things,
    from the same modules, and the lazy objects are the submodules' own."""
    tree = ast.parse((ROOT / "uniapi_core" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If)
                 and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING")
    checked: dict[str, str] = {}
    for node in block.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            checked.update({a.asname or a.name: node.module or "" for a in node.names})
    lazy = uniapi_core._LAZY
    assert checked == lazy
    assert set(uniapi_core.__all__) == set(lazy) | {"build_vendor_exchange"}
    from importlib import import_module

    renamed = uniapi_core._RENAMED
    for name, module in lazy.items():
        own = getattr(import_module(f"uniapi_core.{module}"), renamed.get(name, name))
        assert getattr(uniapi_core, name) is own, name


def test_importing_the_package_loads_nothing_else() -> None:
    """The names load lazily: any ``uniapi_core.x`` import runs the package first, so an eager
    one would load the whole core for a caller that wanted one parser. Using every name leaves
    the Vertex key parser's ``cryptography`` unimported too."""
    code = ("import sys, uniapi_core\n"
            "print(sorted(m for m in sys.modules if m.startswith('uniapi_core.')))\n"
            "[getattr(uniapi_core, n) for n in uniapi_core.__all__]\n"
            "print('cryptography' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split("\n")
    assert out[:2] == ["[]", "False"]


def test_build_vendor_exchange() -> None:
    from uniapi_core import (
        ChatContext,
        StreamChunk,
        StreamDone,
        build_vendor_exchange,
        detect_engine,
        load_config,
        parse_openai_chat,
    )

    provider = load_config("providers:\n  - provider: p\n    base_url: http://h/v1/chat/"
                           "completions\n    api: sk-p\n    model: [m]\n"
                           "api_keys:\n  - api: sk-c\n").config.providers[0]
    request = parse_openai_chat({"model": "m", "stream": True,
                                 "messages": [{"role": "user", "content": "hi"}]})
    ctx = ChatContext(client_model="m", upstream_model="m", provider=provider, api_key="sk-p",
                      stream=True, include_usage=False, response_id="chatcmpl-1", created=1)
    exchange = build_vendor_exchange(detect_engine(provider), request, ctx)
    assert exchange.request.url == "http://h/v1/chat/completions"
    decoder = exchange.stream_decoder()
    body = b"data: " + json.dumps(chunk("hi")).encode() + b"\n\ndata: [DONE]\n\n"
    items = decoder.feed(body[:9]) + decoder.feed(body[9:]) + decoder.close()
    # the content, then the finish chunk the upstream left out (the dialect layer adds it)
    assert [type(i) for i in items] == [StreamChunk, StreamChunk, StreamDone]
    assert b'"finish_reason":"stop"' in items[1].data
    with pytest.raises(ValueError, match="no vendor translator for engine 'nope'"):
        build_vendor_exchange("nope", request, ctx)
