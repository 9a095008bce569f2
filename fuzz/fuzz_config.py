"""Fuzz target for the api.yaml loader (``uniapi_core.config.load_config``).

Run it (needs ``pip install atheris``)::

    python fuzz/fuzz_config.py -max_total_time=60 fuzz/corpus/config

``check(data)`` is the whole oracle; ``tests/core/test_fuzz_corpora.py`` replays
``fuzz/corpus/config/`` through it without atheris. The input is the text of api.yaml (UTF-8;
bytes that are not are kept as lone surrogates, which the YAML reader must refuse). It asserts
what ``config/load.py`` promises:

* ``load_config`` returns a ``Loaded`` or raises ``ConfigError``, and nothing else, whatever the
  text (no ``RecursionError``, no ``TypeError``); a ``ConfigError`` that only wraps a loader
  bug (``internal error while reading the configuration``) is a finding too;
* every problem and warning is ``<path or api.yaml>: <message>``, and names a line that exists
  (``(line N)``) unless it is about the whole document;
* an alias bomb is refused, not expanded (``MAX_NODES``): libFuzzer's ``-timeout`` and
  ``-rss_limit_mb`` catch an expansion;
* messages never echo a configured value: a value holding ``fuzzsecret`` (and no key holding
  it) never shows in a problem or a warning;
* loading is deterministic, and a ``Config`` has at least one api key (``providers: []`` is
  allowed).
"""

from __future__ import annotations

import re
import sys

if __name__ == "__main__":  # run as a script: make the repository importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from fuzz._oracle import fuzz  # noqa: E402
from uniapi_core.config import ConfigError, Loaded, load_config

SOURCE = "api.yaml"
SECRET = "fuzzsecret"
_LINE = re.compile(r"\(line (\d+)\)")
#: problems about the whole document, which name no line
_WHOLE = ("invalid YAML", "the document is nested too deeply", "the document expands to more",
          "the file is empty")


def _secret_only_in_values(text: str) -> bool:
    """Whether ``SECRET`` is in some scalar value and in no mapping key (best effort)."""
    if SECRET not in text:
        return False
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except Exception:  # noqa: BLE001 - whatever the text, this is only a precondition
        return False
    keys, values, stack, seen = [], [], [root], 0
    while stack and seen < 10_000:
        node = stack.pop()
        seen += 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                (keys if isinstance(k, yaml.ScalarNode) else stack).append(k)
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.ScalarNode):
            values.append(node.value)
    return (any(SECRET in v for v in values) and
            not any(SECRET in (k.value if isinstance(k, yaml.ScalarNode) else "")
                    for k in keys))


def _messages_ok(messages: list[str], lines: int) -> None:
    for m in messages:
        assert isinstance(m, str) and ": " in m, m
        assert "internal error while reading" not in m, f"a loader bug: {m}"
        at = _LINE.findall(m)
        if at:
            assert 1 <= int(at[-1]) <= lines, (m, lines)
        else:
            assert m.startswith(f"{SOURCE}: ") and any(w in m for w in _WHOLE), \
                f"a problem without a line: {m}"


def _load(text: str) -> tuple[str, object]:
    try:
        loaded = load_config(text, SOURCE)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems), exc.problems
        return "error", tuple(exc.problems)
    assert isinstance(loaded, Loaded), type(loaded)
    return "loaded", loaded


def check(data: bytes) -> None:
    """The fuzz oracle: raise ``AssertionError`` (or anything unexpected) on a finding."""
    text = data.decode("utf-8", "surrogateescape")
    lines = text.count("\n") + text.count("\r") + 2
    outcome, value = _load(text)
    if outcome == "error":
        assert isinstance(value, tuple)
        messages = list(value)
    else:
        assert isinstance(value, Loaded)
        messages = list(value.warnings)
        assert value.config.api_keys, "at least one key is required (providers may be [])"
    _messages_ok(messages, lines)
    if _secret_only_in_values(text):
        assert not any(SECRET in m for m in messages), ("a value in a message", messages)
    assert _load(text) == (outcome, value), "deterministic"


if __name__ == "__main__":
    fuzz(check)
