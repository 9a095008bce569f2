"""Sans-IO HTTP/2 server connection: h2 plus the defences and buffering h2 leaves to its caller.

Theory of operation
-------------------
``H2ServerConnection`` wraps one client connection that speaks HTTP/2 (h2c prior knowledge,
or TLS with ALPN ``h2``). Like ``ServerConnection`` it does no I/O: the transport feeds
``receive_data(bytes, now)`` and writes whatever ``data_to_send()`` returns afterwards.

Events (``H2Event``): ``StreamRequest(stream_id, request)`` once a request's headers and whole
body are in (the ``request`` is the same ``RequestReceived`` the HTTP/1.1 side produces, with
``:path`` as target and ``:authority`` as ``host``); ``StreamFailure(stream_id, status,
message)`` when one request cannot be served (431, 413, 408, 400) — answer it with
``error_response``; ``StreamGone(stream_id)`` when the client reset a stream it had a
request on, or the stream stalled past ``stall_timeout`` (the caller cancels its upstream);
``ConnectionOver(message)`` when the connection is done (EOF, a protocol error, a defence
fired — the GOAWAY is already in ``data_to_send()``): the caller closes the socket.

Responses: ``start_response``/``send_data``/``end_response`` queue bytes per stream and send
what the peer's flow-control windows allow; the rest waits in the stream's outbound buffer
and goes out as WINDOW_UPDATEs arrive. ``backlog(stream_id)`` tells how much waits, so the
caller can stop reading the upstream while it is over ``H2Limits.stream_buffer`` (R5).
Request bodies are acknowledged (window re-opened) as they arrive; ``ServerLimits.max_body``
bounds each one.

Defences (R7, docs/contracts.md), all closing with GOAWAY and ``ConnectionOver``:

* rapid reset: a stream reset by the client less than ``premature_window`` seconds after it
  opened, before any response head, is *premature*. Close with ``ENHANCE_YOUR_CALM`` when at
  least half of the last ``reset_sample`` streams were premature, or more than
  ``max_resets_per_10s`` premature resets came in ten seconds. A request reset within the same
  read it arrived in is never delivered, so a reset storm costs h2 parsing only.
* concurrent streams: ``SETTINGS_MAX_CONCURRENT_STREAMS`` is advertised and h2 refuses
  excess streams (a protocol error here); header list size: h2's HPACK decoder enforces
  ``max_header_list_size``; CONTINUATION floods: h2 stops at 64 frames.
* empty DATA frames without END_STREAM: ``max_empty_data`` in a row close the connection.
* control frames (PING, SETTINGS, PRIORITY, WINDOW_UPDATE without data to send):
  more than ``max_control_per_s`` in a second close the connection, so a client that floods
  PINGs and never reads cannot make us queue answers without bound.

Headers we emit pass through ``clean_headers`` (h2 would pass CR/LF in values; R8).

Deadlines (``next_deadline``/``deadline_reached``): before any stream, ``head_timeout``;
with no open stream, ``keepalive_timeout`` (GOAWAY, close); per stream, the HTTP/1.1 body
deadline (``server.body_deadline``: idle time and minimum rate) while its request body is
incomplete (408), and ``stall_timeout`` while a response waits on a
closed window without progress (RST_STREAM ``CANCEL``, ``StreamGone``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Union

import attrs
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ..errors import error_body
from ..jsonutil import dumps
from .server import RequestReceived, ServerLimits, body_deadline, clean_headers

__all__ = ["H2Limits", "H2ServerConnection", "StreamRequest", "StreamFailure", "StreamGone",
           "ConnectionOver", "H2Event", "PREFACE"]

#: the client connection preface (RFC 9113 §3.4)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_CONNECTION_HEADERS = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                       b"upgrade", b"content-length"}


@attrs.frozen(kw_only=True)
class H2Limits:
    """HTTP/2 limits; defaults in docs/architecture.md."""

    max_concurrent_streams: int = 100
    #: our receive window per stream, and for the connection (bytes)
    stream_window: int = 65535
    connection_window: int = 1 << 20
    max_header_list_size: int = 65536
    #: outbound bytes per stream over which the caller should stop reading the upstream
    stream_buffer: int = 64 * 1024
    #: a response that makes no progress on a closed window for this long is reset (s)
    stall_timeout: float = 60.0
    premature_window: float = 1.0
    reset_sample: int = 100
    max_resets_per_10s: int = 200
    max_empty_data: int = 16
    max_control_per_s: int = 1000


@attrs.frozen
class StreamRequest:
    stream_id: int
    request: RequestReceived


@attrs.frozen
class StreamFailure:
    stream_id: int
    status: int
    message: str


@attrs.frozen
class StreamGone:
    stream_id: int


@attrs.frozen
class ConnectionOver:
    message: str


H2Event = Union[StreamRequest, StreamFailure, StreamGone, ConnectionOver]


class _Stream:
    __slots__ = ("opened", "headers", "body", "last_data", "delivered", "failed", "responded",
                 "out", "ending", "ended", "stalled_since")

    def __init__(self, now: float, headers: list[tuple[bytes, bytes]]) -> None:
        self.opened = now
        self.headers = headers
        self.body = bytearray()
        self.last_data = now
        self.delivered = False  # the request went to the caller
        self.failed = False  # a StreamFailure went to the caller
        self.responded = False  # a response head was sent
        self.out = bytearray()  # response bytes waiting for window
        self.ending = False  # end_response called
        self.ended = False  # END_STREAM sent
        self.stalled_since: float | None = None


class H2ServerConnection:
    """One HTTP/2 client connection, sans I/O (see the module docstring)."""

    def __init__(self, limits: ServerLimits = ServerLimits(), h2limits: H2Limits = H2Limits(),
                 *, now: float = 0.0) -> None:
        self._limits = limits
        self._h2limits = h2limits
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: h2limits.max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: h2limits.max_header_list_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: h2limits.stream_window,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
        self._h2.initiate_connection()
        if h2limits.connection_window > 65535:
            self._h2.increment_flow_control_window(h2limits.connection_window - 65535)
        self._streams: dict[int, _Stream] = {}
        self._samples: deque[bool] = deque(maxlen=h2limits.reset_sample)
        self._resets: deque[float] = deque()
        self._control: deque[float] = deque()
        self._empty_data = 0
        self._idle_since = now
        self._seen_stream = False
        self._draining = False
        self._inbound = bytearray()  # bytes not yet cut into whole frames
        self._goaway_sent = False
        self._preface_seen = False
        self.closed = False

    # -- public state -------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def backlog(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return len(stream.out) if stream is not None else 0

    def data_to_send(self) -> bytes:
        if self._draining and not self._streams and not self._goaway_sent and not self.closed:
            self._goaway_sent = True
            self._h2.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR)
        return self._h2.data_to_send()

    # -- input --------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[H2Event]:
        if self.closed:
            return []
        if not data:
            return self._over("the client closed the connection", send_goaway=False)
        self._inbound += data
        events: list[H2Event] = []
        for frame in self._frames():
            try:
                h2_events = self._h2.receive_data(frame)
            except h2.exceptions.ProtocolError as exc:
                code = getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
                name = type(exc).__name__
                if isinstance(exc, (h2.exceptions.StreamClosedError,
                                    h2.exceptions.NoSuchStreamError)):
                    # one fault, named by h2 after whether we had finished the stream yet
                    # (a timing of ours, not the client's): one text and code for both
                    name, code = "a frame on a closed stream", h2.errors.ErrorCodes.STREAM_CLOSED
                return events + self._over(f"HTTP/2 protocol error: {name}", code=code)
            for ev in h2_events:
                events.extend(self._event(ev, now))
                if self.closed:
                    break
            if self.closed:
                break
        if not self.closed:
            self._flush(now)
        # A request reset in the same read it arrived in is never delivered (rapid reset).
        gone = {e.stream_id for e in events if isinstance(e, StreamGone)}
        if gone:
            delivered = {e.stream_id for e in events if isinstance(e, StreamRequest)}
            skip = gone & delivered
            events = [e for e in events
                      if not (isinstance(e, (StreamRequest, StreamGone)) and e.stream_id in skip)]
        return events

    def _frames(self) -> list[bytes]:
        """Whole frames (the preface first) cut from ``_inbound``, to be fed to h2 one at a
        time: h2 drops every event of a call that raises, so a batch would make what the
        caller sees before a protocol error depend on how the bytes were cut."""
        buf = self._inbound
        out: list[bytes] = []
        if not self._preface_seen:
            if len(buf) < len(PREFACE):
                if bytes(buf) != PREFACE[:len(buf)]:  # not a preface: let h2 say so
                    out.append(bytes(buf))
                    buf.clear()
                return out
            out.append(bytes(buf[:len(PREFACE)]))
            del buf[:len(PREFACE)]
            self._preface_seen = True
        limit = self._h2.max_inbound_frame_size
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if length > limit:  # h2 refuses it from the header alone
                out.append(bytes(buf[:9]))
                buf.clear()
                break
            if len(buf) < 9 + length:
                break
            out.append(bytes(buf[:9 + length]))
            del buf[:9 + length]
        return out

    def _event(self, ev: h2.events.Event, now: float) -> list[H2Event]:
        stream: _Stream | None  # one name for every branch; a lookup may find none
        limits = self._limits
        if isinstance(ev, h2.events.RequestReceived):
            if self._draining:
                self._h2.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return []
            self._seen_stream = True
            self._empty_data = 0
            stream = self._streams[ev.stream_id] = _Stream(now, list(ev.headers))
            if len(ev.headers) > limits.max_headers + 4:  # pseudo-headers are not counted
                return self._fail(ev.stream_id, stream, 431,
                                  f"too many header fields (limit {limits.max_headers})")
            return []
        if isinstance(ev, h2.events.DataReceived):
            self._h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            stream = self._streams.get(ev.stream_id)
            if not ev.data and ev.stream_ended is None:
                self._empty_data += 1
                if self._empty_data > self._h2limits.max_empty_data:
                    return self._over("too many empty DATA frames",
                                      code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            else:
                self._empty_data = 0
            if stream is None or stream.failed:
                return []
            stream.body += ev.data
            stream.last_data = now
            if len(stream.body) > limits.max_body:
                return self._fail(ev.stream_id, stream, 413, "request body too large")
            return []
        if isinstance(ev, h2.events.StreamEnded):
            stream = self._streams.get(ev.stream_id)
            if stream is None or stream.failed or stream.delivered:
                return []
            return [self._deliver(ev.stream_id, stream)]
        if isinstance(ev, h2.events.StreamReset):
            stream = self._streams.pop(ev.stream_id, None)
            if stream is None:
                return []
            premature = not stream.responded and now - stream.opened < \
                self._h2limits.premature_window
            over = self._sample(premature, now)
            out: list[H2Event] = [StreamGone(ev.stream_id)] if stream.delivered else []
            if over is not None:
                return out + over
            return out
        if isinstance(ev, (h2.events.PingReceived, h2.events.RemoteSettingsChanged,
                           h2.events.PriorityUpdated, h2.events.WindowUpdated)):
            window = self._control
            window.append(now)
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) > self._h2limits.max_control_per_s:
                return self._over("control frame flood",
                                  code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            return []
        if isinstance(ev, h2.events.ConnectionTerminated):
            return self._over("the client sent GOAWAY", send_goaway=False)
        return []  # settings acks, trailers (ignored: the body is complete at StreamEnded)

    def _sample(self, premature: bool, now: float) -> list[H2Event] | None:
        """Record how a stream ended; the connection's end if the reset rule fires."""
        h2l = self._h2limits
        self._samples.append(premature)
        if premature:
            self._resets.append(now)
            while self._resets and self._resets[0] <= now - 10.0:
                self._resets.popleft()
        if (len(self._samples) >= h2l.reset_sample
                and 2 * sum(self._samples) >= len(self._samples)) or \
                len(self._resets) > h2l.max_resets_per_10s:
            return self._over("too many streams reset by the client (rapid reset)",
                              code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        return None

    def _deliver(self, stream_id: int, stream: _Stream) -> H2Event:
        pseudo: dict[bytes, bytes] = {}
        headers: list[tuple[str, str]] = []
        for name, value in stream.headers:
            if name.startswith(b":"):
                pseudo[name] = value
            else:
                headers.append((name.decode("ascii", "replace"), value.decode("latin-1")))
        method = pseudo.get(b":method", b"")
        if method == b"CONNECT":
            return self._fail(stream_id, stream, 501, "CONNECT is not supported")[0]
        authority = pseudo.get(b":authority")
        if authority is not None and not any(n == "host" for n, _ in headers):
            headers.insert(0, ("host", authority.decode("latin-1")))
        stream.delivered = True
        stream.headers = []
        request = RequestReceived(
            method=method.decode("ascii", "replace"),
            target=pseudo.get(b":path", b"/").decode("ascii", "replace"),
            headers=tuple(headers),
            body=bytes(stream.body),
            http_version="2",
        )
        stream.body = bytearray()
        return StreamRequest(stream_id, request)

    def _fail(self, stream_id: int, stream: _Stream, status: int,
              message: str) -> list[H2Event]:
        stream.failed = True
        stream.body = bytearray()
        return [StreamFailure(stream_id, status, message)]

    def _over(self, message: str, *, code: int = h2.errors.ErrorCodes.NO_ERROR,
              send_goaway: bool = True) -> list[H2Event]:
        if self.closed:
            return []
        self.closed = True
        if send_goaway:
            try:
                self._h2.close_connection(error_code=code)
            except h2.exceptions.ProtocolError:
                pass
        self._streams.clear()
        return [ConnectionOver(message)]

    # -- output -------------------------------------------------------------------------------

    def start_response(self, stream_id: int, status: int, headers: Iterable[tuple[str, str]],
                       *, content_length: int | None = None) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.responded:
            return
        clean = [(n, v) for n, v in clean_headers(headers)
                 if n not in _CONNECTION_HEADERS and n != b"host"]
        if content_length is not None:
            clean.append((b"content-length", b"%d" % content_length))
        stream.responded = True
        try:
            self._h2.send_headers(stream_id, [(b":status", b"%d" % status)] + clean)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._streams.pop(stream_id, None)

    def send_data(self, stream_id: int, data: bytes) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or not stream.responded or stream.ending:
            return
        stream.out += data

    def end_response(self, stream_id: int, now: float) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or not stream.responded:
            return
        stream.ending = True
        self._flush(now)

    def error_response(self, stream_id: int, status: int, message: str, *,
                       type: str = "invalid_request_error", now: float) -> None:
        body = dumps(error_body(message, type, None))
        self.start_response(stream_id, status, [("content-type", "application/json")],
                            content_length=len(body))
        self.send_data(stream_id, body)
        self.end_response(stream_id, now)

    def flush(self, now: float) -> None:
        """Send what the windows allow (call after ``send_data``)."""
        if not self.closed:
            self._flush(now)

    def _flush(self, now: float) -> None:
        h2c = self._h2
        for stream_id, stream in list(self._streams.items()):
            if not stream.responded or stream.ended:
                continue
            try:
                before = len(stream.out)
                while stream.out:
                    window = min(h2c.local_flow_control_window(stream_id),
                                 h2c.max_outbound_frame_size)
                    if window <= 0:
                        break
                    chunk = bytes(stream.out[:window])
                    del stream.out[:window]
                    h2c.send_data(stream_id, chunk)
                if stream.out:
                    # stalled = no byte could go out since stalled_since; a slow reader that
                    # keeps reopening its window is making progress, not stalling
                    if len(stream.out) < before or stream.stalled_since is None:
                        stream.stalled_since = now
                    continue
                stream.stalled_since = None
                if stream.ending:
                    h2c.end_stream(stream_id)
                    stream.ended = True
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                stream.out.clear()
                stream.ended = True
            if stream.ended:
                self._streams.pop(stream_id, None)
                self._samples.append(False)
                if stream.delivered is False or stream.body:
                    self._reset_quietly(stream_id)
                if not self._streams:
                    self._idle_since = now

    def _reset_quietly(self, stream_id: int) -> None:
        """After a full answer, tell a client still sending a body to stop (NO_ERROR)."""
        try:
            if self._h2._get_stream_by_id(stream_id).open:  # noqa: SLF001 (h2 has no API)
                self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            pass

    def cancel(self, stream_id: int) -> None:
        """Abandon a stream (RST_STREAM ``CANCEL``)."""
        self._streams.pop(stream_id, None)
        try:
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def goaway(self) -> None:
        """Graceful shutdown: streams the client opens from now on are refused
        (REFUSED_STREAM: safe to retry elsewhere); the open ones run to their end; then a
        GOAWAY(NO_ERROR) goes out with the last bytes and the connection is ``drained``.

        GOAWAY waits for the open streams because h2-based clients (python's h2, hence
        httpx) stop accepting frames once they see one, which would cut streams in flight."""
        if not self.closed:
            self._draining = True

    @property
    def drained(self) -> bool:
        """Draining, nothing open any more, and the final GOAWAY handed to ``data_to_send``."""
        return self._draining and not self._streams and self._goaway_sent

    # -- time ---------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        limits = self._limits
        if not self._streams:
            wait = limits.keepalive_timeout if self._seen_stream else limits.head_timeout
            return self._idle_since + wait
        soonest: float | None = None
        for stream in self._streams.values():
            if not stream.delivered and not stream.failed:
                t = body_deadline(limits, stream.opened, stream.last_data, len(stream.body))
            elif stream.stalled_since is not None:
                t = stream.stalled_since + self._h2limits.stall_timeout
            else:
                continue
            soonest = t if soonest is None or t < soonest else soonest
        return soonest

    def deadline_reached(self, now: float) -> list[H2Event]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        if not self._streams:
            return self._over("idle connection closed")
        out: list[H2Event] = []
        limits = self._limits
        for stream_id, stream in list(self._streams.items()):
            if not stream.delivered and not stream.failed:
                if now >= body_deadline(limits, stream.opened, stream.last_data,
                                        len(stream.body)):
                    out.extend(self._fail(stream_id, stream, 408,
                                          "timed out reading the request body"))
            elif stream.stalled_since is not None and \
                    now >= stream.stalled_since + self._h2limits.stall_timeout:
                self.cancel(stream_id)
                out.append(StreamGone(stream_id))
        return out
