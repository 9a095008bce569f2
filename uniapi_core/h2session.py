"""One HTTP/2 client connection as one sans-IO machine: h2 framing + gateway + an exchange per
stream.

It has the same inputs and actions as ``Session`` (``session.py``), so a transport drives
both alike; ``AutoSession`` picks one from ALPN or the first bytes. Differences a transport
sees: many ``StartUpstream`` can be in flight at once (one per stream), and
``upstream_paused(ref)`` is True while that stream's response waits on the client's
flow-control window with more than ``H2Limits.stream_buffer`` bytes buffered — the transport
then stops reading that upstream until a later input makes it False (R5 backpressure).
"""

from __future__ import annotations

from collections.abc import Callable

from .exchange import Exchange, ExchangeAction, FetchResult, UpstreamEvent
from .gateway import Gateway
from .http.h2server import (
    PREFACE,
    ConnectionOver,
    H2Limits,
    H2ServerConnection,
    StreamFailure,
    StreamGone,
    StreamRequest,
)
from .http.server import ServerLimits
from .relay import EndResponse, SendData, SendHead
from .session import Close, Session, SessionAction, Write, merge_writes

__all__ = ["H2Session", "AutoSession", "PREFACE"]


class H2Session:
    """One HTTP/2 client connection (see the module docstring)."""

    def __init__(self, gateway: Callable[[], Gateway], limits: ServerLimits = ServerLimits(),
                 h2limits: H2Limits = H2Limits(), *, now: float = 0.0) -> None:
        self._gateway = gateway
        self._h2limits = h2limits
        self.conn = H2ServerConnection(limits, h2limits, now=now)
        self.closed = False
        self._exchanges: dict[int, Exchange] = {}  # stream id -> exchange
        self._owner: dict[int, int] = {}  # ref -> stream id
        self._next_ref = 0

    def upstream_paused(self, ref: int) -> bool:
        stream_id = self._owner.get(ref)
        return stream_id is not None and \
            self.conn.backlog(stream_id) > self._h2limits.stream_buffer

    # -- inputs -------------------------------------------------------------------------------

    def data_received(self, data: bytes, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        self._events(self.conn.receive_data(data, now), now, wall, out)
        return self._finish(out, now)

    def upstream_event(self, ref: int, event: UpstreamEvent, now: float,
                       wall: float) -> list[SessionAction]:
        return self._to_exchange(ref, lambda ex: ex.upstream_event(ref, event, now, wall), now)

    def fetch_done(self, ref: int, result: FetchResult, now: float,
                   wall: float) -> list[SessionAction]:
        return self._to_exchange(ref, lambda ex: ex.fetch_done(ref, result, now, wall), now)

    def _to_exchange(self, ref: int, call: Callable[[Exchange], list[ExchangeAction]],
                     now: float) -> list[SessionAction]:
        """Hand an input for ``ref`` to the exchange (stream) that owns it."""
        stream_id = self._owner.get(ref)
        if self.closed or stream_id is None:
            return []
        out: list[SessionAction] = []
        self._run(stream_id, call(self._exchanges[stream_id]), now, out)
        return self._finish(out, now)

    def timer(self, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        for stream_id, ex in list(self._exchanges.items()):
            deadline = ex.next_deadline()
            if deadline is not None and now >= deadline:
                self._run(stream_id, ex.timer(now, wall), now, out)
        self._events(self.conn.deadline_reached(now), now, wall, out)
        return self._finish(out, now)

    def write_failed(self, now: float, wall: float) -> list[SessionAction]:
        if self.closed:
            return []
        out: list[SessionAction] = []
        self._close_all(now, wall, out)
        return out

    def drain(self, now: float, wall: float) -> list[SessionAction]:
        """Graceful shutdown: refuse new streams; GOAWAY and close once the open ones are
        answered."""
        if self.closed:
            return []
        self.conn.goaway()
        return self._finish([], now)

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        soonest = self.conn.next_deadline()
        for ex in self._exchanges.values():
            t = ex.next_deadline()
            if t is not None and (soonest is None or t < soonest):
                soonest = t
        return soonest

    # -- internals ----------------------------------------------------------------------------

    def _events(self, events: list, now: float, wall: float, out: list[SessionAction]) -> None:
        ex: Exchange | None
        for event in events:
            if self.closed:
                return
            if isinstance(event, StreamRequest):
                sid = event.stream_id

                # a def, not ``lambda sid=sid: ...``: mypy cannot infer a lambda with a default
                def refs(sid: int = sid) -> int:
                    return self._ref(sid)

                ex = Exchange(self._gateway, event.request, refs, now)
                self._exchanges[sid] = ex
                self._run(sid, ex.start(now, wall), now, out)
            elif isinstance(event, StreamFailure):
                self.conn.error_response(event.stream_id, event.status, event.message, now=now)
            elif isinstance(event, StreamGone):
                ex = self._exchanges.get(event.stream_id)
                if ex is not None:
                    self._run(event.stream_id, ex.client_gone(now, wall), now, out)
            elif isinstance(event, ConnectionOver):
                self._close_all(now, wall, out)

    def _ref(self, stream_id: int) -> int:
        self._next_ref += 1
        self._owner[self._next_ref] = stream_id
        return self._next_ref

    def _run(self, stream_id: int, actions: list[ExchangeAction], now: float,
             out: list[SessionAction]) -> None:
        conn = self.conn
        for action in actions:
            if isinstance(action, SendHead):
                conn.start_response(stream_id, action.status, action.headers,
                                    content_length=action.content_length)
            elif isinstance(action, SendData):
                conn.send_data(stream_id, action.data)
            elif isinstance(action, EndResponse):
                conn.end_response(stream_id, now)
            else:
                out.append(action)
        ex = self._exchanges.get(stream_id)
        if ex is not None and ex.finished:
            del self._exchanges[stream_id]
            for ref in [r for r, s in self._owner.items() if s == stream_id]:
                del self._owner[ref]
            if ex.client_closed:
                conn.cancel(stream_id)

    def _finish(self, out: list[SessionAction], now: float) -> list[SessionAction]:
        """Flush what the windows allow, then write; close when the connection is over."""
        if not self.closed:
            self.conn.flush(now)
        data = self.conn.data_to_send()
        if data:
            out.append(Write(data))
        if not self.closed and (self.conn.closed or self.conn.drained):
            self.closed = True
            out.append(Close())
        return out

    def _close_all(self, now: float, wall: float, out: list[SessionAction]) -> None:
        for stream_id, ex in list(self._exchanges.items()):
            self._run(stream_id, ex.client_gone(now, wall), now, out)
        self._exchanges.clear()
        self._owner.clear()
        data = self.conn.data_to_send()
        if data:
            out.append(Write(data))
        if not self.closed:
            self.closed = True
            out.append(Close())


class AutoSession:
    """A client connection whose protocol is decided by ALPN (``"h2"``) or, in cleartext and
    under TLS without ALPN, by its first bytes: the HTTP/2 preface means h2c prior knowledge,
    anything else HTTP/1.1. Same interface as ``Session``."""

    def __init__(self, gateway: Callable[[], Gateway], limits: ServerLimits = ServerLimits(),
                 h2limits: H2Limits = H2Limits(), *, now: float = 0.0,
                 alpn: str | None = None) -> None:
        self._args = (gateway, limits, h2limits)
        self._sniffed = bytearray()
        self._draining = False
        self.inner: Session | H2Session | None = None
        if alpn == "h2":
            self.inner = H2Session(gateway, limits, h2limits, now=now)
        elif alpn == "http/1.1":
            self.inner = Session(gateway, limits, now=now)
        else:
            self._h1_idle = Session(gateway, limits, now=now)  # deadlines until decided

    @property
    def closed(self) -> bool:
        return self.inner.closed if self.inner is not None else self._h1_idle.closed

    def _decide(self, now: float) -> Session | H2Session:
        gateway, limits, h2limits = self._args
        if bytes(self._sniffed[:len(PREFACE)]) == PREFACE:
            self.inner = H2Session(gateway, limits, h2limits, now=now)
        else:
            self.inner = self._h1_idle
        return self.inner

    def data_received(self, data: bytes, now: float, wall: float) -> list[SessionAction]:
        if self.inner is not None:
            return self.inner.data_received(data, now, wall)
        self._sniffed += data
        n = min(len(self._sniffed), len(PREFACE))
        if data and bytes(self._sniffed[:n]) == PREFACE[:n] and n < len(PREFACE):
            return []  # could still be the preface
        inner, buffered = self._decide(now), bytes(self._sniffed)
        self._sniffed.clear()
        out: list[SessionAction] = []
        if buffered:
            out += inner.data_received(buffered, now, wall)
        if not data:
            out += inner.data_received(b"", now, wall)
        if self._draining and not inner.closed:
            out += inner.drain(now, wall)
        return out

    def _current(self) -> Session | H2Session:
        return self.inner if self.inner is not None else self._h1_idle

    def upstream_event(self, ref: int, event: UpstreamEvent, now: float,
                       wall: float) -> list[SessionAction]:
        return self._current().upstream_event(ref, event, now, wall)

    def fetch_done(self, ref: int, result: FetchResult, now: float,
                   wall: float) -> list[SessionAction]:
        return self._current().fetch_done(ref, result, now, wall)

    def timer(self, now: float, wall: float) -> list[SessionAction]:
        return self._current().timer(now, wall)

    def write_failed(self, now: float, wall: float) -> list[SessionAction]:
        return self._current().write_failed(now, wall)

    def drain(self, now: float, wall: float) -> list[SessionAction]:
        if self.inner is None:
            self._draining = True
            if self._sniffed:
                return []  # a request is arriving: decide first, then drain
            return self._h1_idle.drain(now, wall)
        return self.inner.drain(now, wall)

    def next_deadline(self) -> float | None:
        return self._current().next_deadline()

    def upstream_paused(self, ref: int) -> bool:
        return self._current().upstream_paused(ref)

    def step(self, item: tuple[int | None, object] | None, now: float,
             wall: float) -> list[SessionAction]:
        """One turn of a transport's loop. ``item`` is what its inbox gave: ``(None, bytes)``
        client bytes (``b""`` at EOF), ``(0, None)`` shutdown began, ``(ref, FetchResult)``,
        ``(ref, upstream event)``; ``None`` when the wait for one ended at ``next_deadline``.
        A deadline that has passed is also served after an input, so inputs that queued up
        while a write was blocked count before any timeout they would have prevented.
        Consecutive writes come back as one ``Write``."""
        if item is None:
            return self.timer(now, wall)
        ref, value = item
        if ref is None:
            out = self.data_received(value, now, wall)  # type: ignore[arg-type]
        elif ref == 0:
            out = self.drain(now, wall)
        elif isinstance(value, FetchResult):
            out = self.fetch_done(ref, value, now, wall)
        else:
            out = self.upstream_event(ref, value, now, wall)  # type: ignore[arg-type]
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            out += self.timer(now, wall)
        return merge_writes(out)

