"""One HTTP/2 client connection as one sans-IO machine: h2 framing + a request machine per stream.

``Connection`` (``connection.py``) hands it every event of an HTTP/2 connection. Differences
from HTTP/1.1 a transport sees: many ``StartUpstream`` can be in flight at once (one per
stream), and a stream whose response waits on the client's flow-control window with more
than ``H2Limits.stream_buffer`` bytes buffered has its upstream paused (``PauseUpstream``)
until the backlog is down again (``ResumeUpstream``): memory per stream stays bounded however
slow the client, and the other streams go on (R5 backpressure).
"""

from __future__ import annotations

from collections.abc import Callable

from .events import (
    Action,
    ClientData,
    Close,
    DeadlineReached,
    DrainStarted,
    Event,
    PauseUpstream,
    ResumeUpstream,
    Watch,
    Write,
    WriteFailed,
)
from .request_machine import MachineAction, RequestMachine
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
from .relay import ClientGone, EndResponse, SendData, SendHead

__all__ = ["H2Session", "PREFACE"]


class H2Session:
    """One HTTP/2 client connection (see the module docstring)."""

    def __init__(self, gateway: Callable[[], Gateway], limits: ServerLimits = ServerLimits(),
                 h2limits: H2Limits = H2Limits(), *, now: float = 0.0,
                 peer: str | None = None) -> None:
        self._gateway = gateway
        self._peer = peer
        self._h2limits = h2limits
        self.conn = H2ServerConnection(limits, h2limits, now=now)
        self.closed = False
        self._machines: dict[int, RequestMachine] = {}  # stream id -> its request machine
        self._owner: dict[int, int] = {}  # ref -> stream id
        self._paused: set[int] = set()  # refs told PauseUpstream
        self._next_ref = 0

    @property
    def idle(self) -> bool:
        """No stream is open: no request is being read or served."""
        return not self._machines

    def handle(self, event: Event, now: float, wall: float) -> list[Action]:
        if self.closed:
            return []
        out: list[Action] = []
        cls = type(event)
        if cls is ClientData:
            self._events(self.conn.receive_data(event.data, now), now, wall,  # type: ignore
                         out)
        elif cls is DeadlineReached:
            for stream_id, ex in list(self._machines.items()):
                deadline = ex.next_deadline()
                if deadline is not None and now >= deadline:
                    self._run(stream_id, ex.handle(event, now, wall), now, out)  # type: ignore
            self._events(self.conn.deadline_reached(now), now, wall, out)
        elif cls is WriteFailed:
            self._close_all(now, wall, out)
            return out
        elif cls is DrainStarted:
            self.conn.goaway()  # refuse new streams; GOAWAY and close once all are answered
        else:  # upstream, fetch and watch events: the request machine (stream) that owns the ref
            owner = self._owner.get(event.ref)  # type: ignore[union-attr]
            if owner is None:
                return []
            self._run(owner, self._machines[owner].handle(event, now, wall),  # type: ignore
                      now, out)
        return self._finish(out, now)

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        soonest = self.conn.next_deadline()
        for ex in self._machines.values():
            t = ex.next_deadline()
            if t is not None and (soonest is None or t < soonest):
                soonest = t
        return soonest

    # -- internals ----------------------------------------------------------------------------

    def _events(self, events: list, now: float, wall: float, out: list[Action]) -> None:
        ex: RequestMachine | None
        for event in events:
            if self.closed:
                return
            if isinstance(event, StreamRequest):
                sid = event.stream_id

                # a def, not ``lambda sid=sid: ...``: mypy cannot infer a lambda with a default
                def refs(sid: int = sid) -> int:
                    return self._ref(sid)

                ex = RequestMachine(self._gateway, event.request, refs, now, peer=self._peer)
                self._machines[sid] = ex
                self._run(sid, ex.start(now, wall), now, out)
            elif isinstance(event, StreamFailure):
                self.conn.error_response(event.stream_id, event.status, event.message, now=now)
            elif isinstance(event, StreamGone):
                ex = self._machines.get(event.stream_id)
                if ex is not None:
                    self._run(event.stream_id, ex.handle(ClientGone(), now, wall), now, out)
            elif isinstance(event, ConnectionOver):
                self._close_all(now, wall, out)

    def _ref(self, stream_id: int) -> int:
        self._next_ref += 1
        self._owner[self._next_ref] = stream_id
        return self._next_ref

    def _run(self, stream_id: int, actions: list[MachineAction], now: float,
             out: list[Action]) -> None:
        conn = self.conn
        for action in actions:
            if isinstance(action, SendHead):
                conn.start_response(stream_id, action.status, action.headers,
                                    content_length=action.content_length)
            elif isinstance(action, SendData):
                conn.send_data(stream_id, action.data)
            elif isinstance(action, EndResponse):
                conn.end_response(stream_id, now)
            elif type(action) is Watch:
                out.insert(0, action)  # registered before a write lets another connection run
            else:
                out.append(action)
        ex = self._machines.get(stream_id)
        if ex is not None and ex.finished:
            del self._machines[stream_id]
            for ref in [r for r, s in self._owner.items() if s == stream_id]:
                del self._owner[ref]
                if ref in self._paused:  # the transport drops its gate for it
                    self._paused.discard(ref)
                    out.append(ResumeUpstream(ref))
            if ex.client_closed:
                conn.cancel(stream_id)

    def _finish(self, out: list[Action], now: float) -> list[Action]:
        """Flush what the windows allow, pause or resume upstreams by their stream's backlog,
        then write; close when the connection is over."""
        if not self.closed:
            self.conn.flush(now)
            self._backpressure(out)
        data = self.conn.data_to_send()
        if data:
            out.append(Write(data))
        if not self.closed and (self.conn.closed or self.conn.drained):
            self.closed = True
            out.append(Close(linger=True))  # the client may still be sending (events.Close)
        return out

    def _backpressure(self, out: list[Action]) -> None:
        limit, backlog, paused = self._h2limits.stream_buffer, self.conn.backlog, self._paused
        for ref, stream_id in self._owner.items():
            if backlog(stream_id) > limit:
                if ref not in paused:
                    paused.add(ref)
                    out.append(PauseUpstream(ref))
            elif ref in paused:
                paused.discard(ref)
                out.append(ResumeUpstream(ref))

    def _close_all(self, now: float, wall: float, out: list[Action]) -> None:
        for stream_id, ex in list(self._machines.items()):
            self._run(stream_id, ex.handle(ClientGone(), now, wall), now, out)
        self._machines.clear()
        self._owner.clear()
        self._paused.clear()
        data = self.conn.data_to_send()
        if data:
            out.append(Write(data))
        if not self.closed:
            self.closed = True
            out.append(Close())
