"""The upstream side's deadlines and the HTTP/1.1 keep-alive pool, sans I/O.

``UpstreamTimeouts`` holds every upstream deadline both transports use (connect, idle
keep-alive, discovery, shutdown grace); ``uniapi_core.upstream.ConnectionManager`` reads
``UPSTREAM_TIMEOUTS`` when it is built without its own.

``IdlePool`` keeps idle HTTP/1.1 connections per key (proxy, origin), driven with ``now``
passed in: ``checkout(key, now)`` gives the most recently idle connection that has not expired,
or None (connect); ``checkin(key, conn, now)`` keeps one (False: ``max_idle`` already idle for
that key, close it); ``expire(now)`` gives the connections to close; ``next_deadline()`` says
when the next one expires. A connection that went idle at ``t`` is handed out only while
``now < t + idle`` and is returned by ``expire`` from ``t + idle`` on, exactly once. Connections
are opaque and compared by identity; a connection is never held twice.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

import attrs

__all__ = ["UpstreamTimeouts", "UPSTREAM_TIMEOUTS", "MAX_IDLE_PER_ORIGIN", "READ_SIZE",
           "IdlePool"]


@attrs.frozen
class UpstreamTimeouts:
    """Every deadline of the upstream side, in seconds (the front's TLS handshake is bounded by
    ``ServerLimits.head_timeout``)."""

    connect: float = 5.0  #: TCP connect, proxy handshake and TLS handshake, together
    idle: float = 60.0  #: an idle keep-alive connection, or an HTTP/2 link without requests
    discovery: float = 10.0  #: one model-list fetch at start-up, or the CONFIG_URL fetch
    close_grace: float = 1.0  #: shutdown: how long HTTP/2 links get to send GOAWAY and close


#: What a ``ConnectionManager`` built without timeouts uses (read at construction).
UPSTREAM_TIMEOUTS = UpstreamTimeouts()
#: Idle keep-alive connections kept per key: ≥ the busiest concurrency served, or streams
#: reconnect.
MAX_IDLE_PER_ORIGIN = 256
#: Bytes asked for per upstream read.
READ_SIZE = 65536
#: ALPN offered to upstreams (HTTP/2 preferred), and to image hosts (HTTP/1.1 only)
UPSTREAM_ALPN = ("h2", "http/1.1")
IMAGE_ALPN = ("http/1.1",)

C = TypeVar("C")
Key = Hashable


# -- the HTTP/1.1 keep-alive pool -------------------------------------------------------------


class IdlePool(Generic[C]):
    """Idle HTTP/1.1 connections per key, sans I/O (see the module docstring). Connections are
    compared by identity."""

    def __init__(self, *, max_idle: int = MAX_IDLE_PER_ORIGIN, idle: float = 60.0) -> None:
        self.max_idle = max_idle
        self.idle = idle
        self._idle: dict[Key, deque[C]] = {}
        #: every idle connection, by id, oldest check-in first (``now`` never goes back):
        #: (since, key, conn). One entry per idle connection, so it is bounded by the pool's
        #: size, not by how many check-ins an idle period sees.
        self._order: OrderedDict[int, tuple[float, Key, C]] = OrderedDict()
        self._expired: list[C] = []
        self._due = 0.0  # when the first of ``_expired`` expired

    def checkout(self, key: Key, now: float) -> C | None:
        """The most recently idle connection for ``key`` that has not expired, or None:
        connect."""
        self._sweep(now)
        conns = self._idle.get(key)
        if not conns:
            return None
        conn = conns.pop()
        del self._order[id(conn)]
        if not conns:
            del self._idle[key]
        return conn

    def checkin(self, key: Key, conn: C, now: float) -> bool:
        """Keep ``conn`` idle from ``now``; False when ``key`` already has ``max_idle`` (close
        it)."""
        self._sweep(now)
        conns = self._idle.setdefault(key, deque())
        if len(conns) >= self.max_idle or id(conn) in self._order:
            if not conns:
                del self._idle[key]
            return False
        conns.append(conn)
        self._order[id(conn)] = (now, key, conn)
        return True

    def expire(self, now: float) -> list[C]:
        """The connections that expired (by ``now`` or found so earlier): close them."""
        self._sweep(now)
        out, self._expired = self._expired, []
        return out

    def next_deadline(self) -> float | None:
        """When the next idle connection expires (already passed when ``expire`` has some to
        give), or None."""
        if self._expired:
            return self._due
        for since, _, _ in self._order.values():
            return since + self.idle
        return None

    def clear(self) -> list[C]:
        """Every connection held (idle or expired): close them all."""
        out = self._expired + [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        self._order.clear()
        self._expired = []
        return out

    def __len__(self) -> int:
        return len(self._order)

    def _sweep(self, now: float) -> None:
        order = self._order
        while order:
            for since, key, conn in order.values():
                break
            if since + self.idle > now:
                return
            order.popitem(last=False)
            conns = self._idle[key]
            conns.remove(conn)  # the oldest of its key: at the front
            if not conns:
                del self._idle[key]
            if not self._expired:
                self._due = since + self.idle  # the first, so the earliest
            self._expired.append(conn)
