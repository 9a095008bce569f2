"""``uniapi_core`` type-checks clean: mypy, configured by ``[tool.mypy]`` in ``pyproject.toml``.

mypy is in the ``test`` extra, so this never skips. Its cache goes to a temporary folder: the
run does not depend on, or leave behind, a ``.mypy_cache`` in the work tree.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_type_checks_clean(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "mypy_cache"), "--no-color-output"],
        cwd=ROOT, capture_output=True, text=True, timeout=110)
    code, report = proc.returncode, proc.stdout + proc.stderr
    assert code == 0, f"mypy exited {code}:\n{report}"
