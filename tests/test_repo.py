"""Repository promises: CI runs the README's test command, and docs exist for what we ship."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S)


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    blocks = _readme_commands()
    assert any(ci in block.splitlines() for block in blocks), ci


def test_seed_examples_load():
    """The uni-api seed configs (copied into tests/data) load unchanged."""
    from uniapi_core.config import load_config

    files = sorted((ROOT / "tests" / "data").glob("seed-*.yaml"))
    assert len(files) == 2
    for f in files:
        load_config(f.read_text(), f.name)  # raises ConfigError on any problem
