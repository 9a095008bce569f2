"""One client connection, one door: ``Connection.handle(event, now, wall) -> actions``.

A transport makes one ``Connection`` per accepted client connection (passing the ALPN
protocol TLS selected, if any), reports every event to ``handle`` and performs the actions it
returns, in order (the vocabulary: ``events.py``). Between events it sleeps until
``next_deadline()``, and then reports ``DeadlineReached()``. Nothing else: no query, no side
door. ``now`` is monotonic seconds, ``wall`` the wall clock (for ``created``). A transport
that counts its connections (``http/occupancy.py``) also passes the connection's place in the
count and ``post``, which queues an event for the connection: with it the process's count has
an idle connection told ``Shed`` at the cap, or ``DeadlineReached`` to look at a deadline the
rising load shrank.

The protocol is decided by ALPN (``"h2"``/``"http/1.1"``) or, in cleartext and under TLS
without ALPN, by the first bytes: the HTTP/2 preface means h2c prior knowledge, anything else
HTTP/1.1. HTTP/1.1 is ``session.Session`` (one exchange at a time), HTTP/2
``h2session.H2Session`` (one exchange per stream); both run each request as a ``RequestMachine``
(``request_machine.py``).

``handle`` also serves a deadline that has passed after any event (so events that queued up
while a write was blocked count before a timeout they would have prevented). Its actions
never hold two ``Write``s in a row (a head and its body go out in one send), and a ``Watch``
comes before anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .events import (Action, ClientData, Close, DeadlineReached, DrainStarted, Event, Shed,
                     merge_writes)
from .gateway import Gateway
from .h2session import PREFACE, H2Session
from .http.h2server import H2Limits
from .http.occupancy import Occupancy
from .http.server import ServerLimits
from .session import Session

__all__ = ["Connection", "INBOX", "ALPN", "LISTEN_BACKLOG"]

_TIMER = DeadlineReached()
#: events a transport buffers for one connection; when full, its client reader and upstream
#: readers wait (so a slow client slows its upstreams, never grows memory)
INBOX = 16
#: ALPN a TLS front offers (HTTP/2 preferred)
ALPN = ("h2", "http/1.1")
#: the listening socket's accept queue
LISTEN_BACKLOG = 4096


class Connection:
    """One client connection (see the module docstring)."""

    def __init__(self, gateway: Callable[[], Gateway], limits: ServerLimits = ServerLimits(),
                 h2limits: H2Limits = H2Limits(), *, now: float = 0.0,
                 alpn: str | None = None, peer: str | None = None,
                 occupancy: tuple[Occupancy, int] | None = None,
                 post: Callable[[Event], None] | None = None) -> None:
        self._args = (gateway, limits, h2limits)
        #: the process's ``Occupancy`` and this connection's id in it: told when this
        #: connection is idle, busy or over (None: not tracked)
        self._occupancy = occupancy
        if occupancy is not None and post is not None:  # ``post``: queues an event for us
            occupancy[0].shedders[occupancy[1]] = partial(post, Shed())  # make room at the cap
            occupancy[0].wakers[occupancy[1]] = partial(post, _TIMER)  # look at a shrunk time
        self._idle = True
        self._peer = peer  # the client's address, for the request records
        #: the process's metrics, told of this connection until it closes (the demo's
        #: upstream, gateway-shaped, has none)
        self._metrics = getattr(gateway(), "metrics", None)
        if self._metrics is not None:
            self._metrics.connections(1)
        self._sniffed = bytearray()
        self._draining = False
        self.inner: Session | H2Session | None = None
        if alpn == "h2":
            self.inner = H2Session(gateway, limits, h2limits, now=now, peer=peer)
        elif alpn == "http/1.1":
            self.inner = Session(gateway, limits, now=now, peer=peer)
        else:
            self._h1_idle = Session(gateway, limits, now=now, peer=peer)  # until decided

    @property
    def closed(self) -> bool:
        return self._current().closed

    def next_deadline(self) -> float | None:
        deadline = self._current().next_deadline()
        if deadline is not None and self._idle and self._occupancy is not None:
            occupancy, conn = self._occupancy  # idle near the cap: less time (occupancy.py)
            return occupancy.idle_deadline(conn, deadline)
        return deadline

    def handle(self, event: Event, now: float, wall: float) -> list[Action]:
        if type(event) is Shed:
            return self._shed(now, wall)
        if type(event) is DeadlineReached and self._idle and self._occupancy is not None:
            own = self._current().next_deadline()
            if own is not None and now < own and now >= self._occupancy[0].idle_deadline(
                    self._occupancy[1], own):
                return self._shed(now, wall)  # its idle time, shrunk, is up
        inner = self.inner
        if inner is None:
            out = self._undecided(event, now, wall)
            inner = self._current()
        else:
            out = inner.handle(event, now, wall)
        if type(event) is not DeadlineReached:
            deadline = inner.next_deadline()
            if deadline is not None and now >= deadline:
                more = inner.handle(_TIMER, now, wall)
                if more:
                    out = merge_writes(out + more)
        if self._metrics is not None and inner.closed:
            self._metrics.connections(-1)
            self._metrics = None
        if self._occupancy is not None:
            occupancy, conn = self._occupancy
            if inner.closed:
                occupancy.closed(conn)
                self._occupancy = None
            elif (idle := self._idle_now()) is not self._idle or (
                    idle and type(event) is ClientData):  # maybe a request served whole
                self._idle = idle
                occupancy.idle(conn, now) if idle else occupancy.busy(conn)
        return out

    def _shed(self, now: float, wall: float) -> list[Action]:
        """To make room at the cap, or its shrunk idle time up: close as at a drain if still
        idle, without lingering (an idle client has nothing unread); else stay."""
        if self._occupancy is not None and not self._idle_now():
            occupancy, conn = self._occupancy
            occupancy.kept(conn)  # a request came meanwhile: it stays
            return []
        if self._metrics is not None:
            self._metrics.connection_shed()
        return [Close() if type(a) is Close else a
                for a in self.handle(DrainStarted(), now, wall)]

    def _idle_now(self) -> bool:
        inner = self.inner
        return not self._sniffed if inner is None else inner.idle

    def _current(self) -> Session | H2Session:
        return self.inner if self.inner is not None else self._h1_idle

    def _undecided(self, event: Event, now: float, wall: float) -> list[Action]:
        """Before the protocol is known: gather the first bytes until they decide it."""
        if type(event) is DrainStarted:
            self._draining = True
            if self._sniffed:
                return []  # a request is arriving: decide first, then drain
            return self._h1_idle.handle(event, now, wall)
        if type(event) is not ClientData:
            return self._h1_idle.handle(event, now, wall)
        data = event.data
        self._sniffed += data
        n = min(len(self._sniffed), len(PREFACE))
        if data and bytes(self._sniffed[:n]) == PREFACE[:n] and n < len(PREFACE):
            return []  # could still be the preface
        gateway, limits, h2limits = self._args
        if bytes(self._sniffed[:len(PREFACE)]) == PREFACE:
            inner: Session | H2Session = H2Session(gateway, limits, h2limits, now=now,
                                                   peer=self._peer)
        else:
            inner = self._h1_idle
        self.inner = inner
        buffered = bytes(self._sniffed)
        self._sniffed.clear()
        out: list[Action] = []
        if buffered:
            out += inner.handle(ClientData(buffered), now, wall)
        if not data:
            out += inner.handle(event, now, wall)
        if self._draining and not inner.closed:
            out += inner.handle(DrainStarted(), now, wall)
        return out
