"""``python -m uniapi_asyncio``: the one command-line shell (``uniapi_trio/cli.py``, which
also runs ``uniapi serve``), with the backend fixed to asyncio."""

from __future__ import annotations

from collections.abc import Sequence

from uniapi_trio.cli import module_main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    module_main("asyncio", argv)
