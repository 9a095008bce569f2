"""``ready``: select(2)'s answer for a few sockets without its ceiling of descriptor 1024, which
a long test session passes (every fake and client of the suite waits through it)."""

from __future__ import annotations

import selectors
from typing import Any


def ready(socks: list[Any], wait: float, write: bool = False) -> tuple[list[Any], list[Any]]:
    """The objects of ``socks`` (sockets, files) readable, and writable, within ``wait``
    seconds."""
    events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, events)
        got = sel.select(wait)
    return ([key.fileobj for key, mask in got if mask & selectors.EVENT_READ],
            [key.fileobj for key, mask in got if mask & selectors.EVENT_WRITE])
