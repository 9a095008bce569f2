"""Sans-IO HTTP/2 client connection to an upstream, over h2.

Theory of operation
-------------------
``H2ClientConnection`` multiplexes many request/response exchanges ("streams") over one
connection. The transport writes ``initiate()`` first (preface and SETTINGS: push disabled,
``INITIAL_WINDOW_SIZE = stream_window``; the connection window is raised to
``max_inbound_window``), then ``send_request`` for each exchange: it returns the new stream id
and the bytes to write. Everything the transport reads goes to ``receive_data``, which returns
``(stream_id, event)`` pairs with the *same* event classes as the HTTP/1.1 client
(``ResponseHead``, ``ResponseData``, ``ResponseEnd``) plus ``StreamFailed``. After every call,
``data_to_send()`` holds what must be written next (SETTINGS/PING acknowledgements, window
updates, resets, request body that became sendable); it is never written by anybody else.

Per stream the events are: ``ResponseHead`` (interim ``1xx`` skipped; trailers dropped), any
number of ``ResponseData``, then exactly one of ``ResponseEnd`` or ``StreamFailed``; after that
nothing more for that id. ``StreamFailed.kind`` uses the HTTP/1.1 client's vocabulary:
``reset`` (RST_STREAM from the server, or a GOAWAY covering the stream), ``eof`` (the connection
ended, ``receive_data(b"")``) and ``protocol`` (the server broke HTTP/2). ``unprocessed`` is
True when the server said it did not act on the request (REFUSED_STREAM, or the stream is above
a GOAWAY's last stream id), so it is safe to send again on another connection.

A connection-level violation never raises: the offending bytes fail every open stream with
``protocol``, h2 queues a GOAWAY for ``data_to_send()`` and ``closed`` becomes True. Bytes are
fed to h2 one frame at a time, so the outcome does not depend on how reads were cut, and a
frame header announcing more than our SETTINGS_MAX_FRAME_SIZE (16 KiB) is refused at once
(h2 itself would buffer the whole announced length, up to 16 MiB, before checking).

GOAWAY frames are taken out of the byte stream before h2 sees them (h2 closes its whole state
machine on GOAWAY and would then refuse the frames of streams the server still finishes).
GOAWAY with NO_ERROR is graceful: streams above its last id fail (``unprocessed``), the others
carry on, no stream opens any more and ``closed`` becomes True when the last one is over. A
GOAWAY with an error code fails every open stream at once.

Flow control is the backpressure: received DATA is *not* acknowledged automatically. The
caller calls ``acknowledge(stream_id, n)`` once it has passed ``n`` body bytes on; both the
stream and the connection window reopen (h2 batches the WINDOW_UPDATEs). A consumer that stops
acknowledging stops the server after ``stream_window`` bytes per stream and
``max_inbound_window`` per connection. Padding, DATA for streams we no longer track, and
whatever a failed or cancelled stream still owed are acknowledged here, so nothing leaks.

Request bodies larger than the server's windows are queued and go out as WINDOW_UPDATEs
arrive (``data_to_send()`` after ``receive_data``). If the server ends its response before
the body is sent, the rest is dropped and the stream reset with NO_ERROR (RFC 9113 8.1).

Outgoing headers go through ``clean_headers`` like HTTP/1.1 (latin-1 values allowed);
connection-specific ones (``connection`` and the names it lists, ``keep-alive``,
``proxy-connection``, ``transfer-encoding``, ``upgrade``, ``te`` other than ``trailers``) are
dropped, ``host`` becomes ``:authority`` when no authority is given, ``content-length`` is ours.
Response headers come back lower-cased as ``str`` pairs (latin-1), also through
``clean_headers``; ``ResponseHead.reason`` is always ``""`` (HTTP/2 has no reason phrase).

Pooling (``H2Link``, ``H2Pool``)
--------------------------------
What a transport's upstream pool would otherwise keep twice. An ``H2Link`` is one pooled
connection's sans-IO side: the ``H2ClientConnection``, the requests using it (each with the
transport's opaque ``sink``, typically an unbounded queue: flow control bounds it) and one
outgoing buffer. Every call appends what must be written to that buffer, so bytes leave in the
order h2 made them (HPACK state depends on it) however the transport's tasks interleave; the
transport's single writer sends ``take()``. ``feed`` returns ``(sink, event)`` pairs to
deliver. ``H2Pool`` holds the links per key (proxy, origin) and the keys whose TLS ALPN did
not pick ``h2`` (HTTP/1.1 only), and picks a link that can open a stream.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar, Union

import attrs
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from .client import IDENTITY, ResponseData, ResponseEnd, ResponseHead
from .server import clean_headers, comma_tokens
from .url import Url

__all__ = ["StreamFailed", "H2ClientEvent", "H2ClientConnection", "H2Link", "H2Pool"]

_METHOD = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+\Z")
_TARGET = re.compile(r"[\x21-\x7e]+\Z")
_AUTHORITY = re.compile(r"[-A-Za-z0-9._~%!$&'()*+,;=:\[\]]+\Z")  # no userinfo
_STATUS = re.compile(rb"[0-9]{3}\Z")
_QUOTED = re.compile(r"[\s:]*(?:bytearray\()?b['\"].*\Z", re.S)

#: Request headers that belong to an HTTP/1.1 connection, not to the request.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                         b"transfer-encoding", b"upgrade", b"host", b"content-length"})

_FRAME_HEADER = 9
_GOAWAY = 0x7
_MAX_STREAM_ID = 2**31 - 1
_DEFAULT_WINDOW = 65535
#: Streams assumed allowed until the server's SETTINGS say otherwise (RFC 9113 5.1.2).
_ASSUMED_MAX_STREAMS = 100


@attrs.frozen
class StreamFailed:
    """The stream ended without a complete response (see the module docstring for ``kind``).
    ``unprocessed``: the server guarantees it did not act on the request."""

    kind: str
    message: str
    unprocessed: bool = False


H2ClientEvent = Union[ResponseHead, ResponseData, ResponseEnd, StreamFailed]


class _Stream:
    __slots__ = ("head", "body")

    def __init__(self, body: bytes) -> None:
        self.head = False
        self.body = memoryview(body)  # request body not yet sent


def _error_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"error 0x{code:x}"


def _public(exc: Exception) -> str:
    text = _QUOTED.sub("", str(exc))[:200]
    return f"upstream HTTP/2 protocol error: {text}" if text else "upstream HTTP/2 protocol error"


class H2ClientConnection:
    """One HTTP/2 connection to an upstream, sans I/O (see the module docstring)."""

    def __init__(self, *, max_inbound_window: int = 1 << 20,
                 stream_window: int = 64 * 1024) -> None:
        if not _DEFAULT_WINDOW <= max_inbound_window <= _MAX_STREAM_ID:
            raise ValueError("max_inbound_window must be within [65535, 2**31-1]")
        if not 1 <= stream_window <= _MAX_STREAM_ID:
            raise ValueError("stream_window must be within [1, 2**31-1]")
        self._max_inbound_window = max_inbound_window
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=config)
        settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        })
        # Some servers refuse SETTINGS they do not know; we never use this one.
        del settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL]
        self._h2.local_settings = settings
        self._initiated = False
        self._closed = False
        self._broken = False  # our HPACK state may be off: no new streams
        self._settings_seen = False  # the server's first SETTINGS arrived
        self._goaway_last: int | None = None
        self._active: dict[int, _Stream] = {}  # streams that still owe events
        self._unacked: dict[int, int] = {}  # body bytes handed out, not acknowledged yet
        self._inbuf = bytearray()
        self._through = 0  # bytes of the current (non-GOAWAY) frame still to pass to h2

    # -- state -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection can do nothing more: EOF, a protocol error, ``close()``,
        or a GOAWAY after which no stream is left. The transport then closes the socket
        (after writing ``data_to_send()``)."""
        return self._closed

    @property
    def open_streams(self) -> int:
        """Streams that will still produce events."""
        return len(self._active)

    @property
    def available_streams(self) -> int:
        """How many more streams may be opened now (server's MAX_CONCURRENT_STREAMS; 0 after a
        GOAWAY or when closed)."""
        if not self._initiated or self._closed or self._broken or self._goaway_last is not None:
            return 0
        limit = self._h2.remote_settings.max_concurrent_streams
        if not self._settings_seen:
            limit = min(limit, _ASSUMED_MAX_STREAMS)
        room = limit - self._h2.open_outbound_streams
        ids_left = (_MAX_STREAM_ID - self._h2.highest_outbound_stream_id) // 2
        return max(0, min(room, ids_left))

    @property
    def can_open(self) -> bool:
        """True when ``send_request`` may be called."""
        return self.available_streams > 0

    # -- sending -----------------------------------------------------------------------------

    def initiate(self) -> bytes:
        """The connection preface and our SETTINGS: the first bytes to write."""
        if self._initiated:
            raise RuntimeError("initiate: already called")
        self._initiated = True
        self._h2.initiate_connection()
        extra = self._max_inbound_window - _DEFAULT_WINDOW
        if extra > 0:
            self._h2.increment_flow_control_window(extra)
        return self._h2.data_to_send()

    def send_request(
        self,
        method: str,
        target: str,
        authority: str,
        scheme: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> tuple[int, bytes]:
        """Open a stream for one request: its id and the bytes to write (headers and as much
        body as the windows allow; the rest follows via ``data_to_send()``).

        ``authority`` may be ``""`` to use the ``Host`` header. ``Content-Length`` is set here
        (omitted only for a ``GET``/``HEAD`` without body). Raises ``ValueError`` for a bad
        method, target, scheme or authority, ``RuntimeError`` when ``can_open`` is False.
        """
        if not self._initiated:
            raise RuntimeError("send_request: initiate() first")
        if not self.can_open:
            raise RuntimeError("send_request: no stream available (check can_open)")
        if not _METHOD.match(method) or method.upper() == "CONNECT":
            raise ValueError("send_request: method is not a token (or is CONNECT)")
        if not _TARGET.match(target):
            raise ValueError("send_request: target must be visible ASCII without spaces")
        if scheme not in ("http", "https"):
            raise ValueError("send_request: scheme must be http or https")
        clean = clean_headers(headers, allow_obs_text=True)
        if not authority:
            authority = next((v.decode("latin-1") for n, v in clean if n == b"host"), "")
        if not _AUTHORITY.match(authority):
            raise ValueError("send_request: a valid authority (or Host header) is required")
        drop = _HOP_BY_HOP | comma_tokens(clean, b"connection")
        out = [(b":method", method.encode("ascii")), (b":scheme", scheme.encode("ascii")),
               (b":authority", authority.encode("ascii")), (b":path", target.encode("ascii"))]
        for name, value in clean:
            if name in drop or (name == b"te" and value.lower() != b"trailers"):
                continue
            out.append((name, value))
        if body or method.upper() not in ("GET", "HEAD"):
            out.append((b"content-length", str(len(body)).encode("ascii")))
        if not any(n == b"accept-encoding" for n, _ in out):
            out.append(IDENTITY)  # as over HTTP/1.1
        stream_id = self._h2.get_next_available_stream_id()
        try:
            self._h2.send_headers(stream_id, out, end_stream=not body)
        except h2.exceptions.H2Error as exc:  # pre-validated above; defensive
            # h2 may have half-encoded the block: our HPACK state can no longer be trusted.
            self._broken = True
            self._reset(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            raise ValueError(f"send_request: {_public(exc)}") from None
        self._active[stream_id] = _Stream(body)
        self._flush()
        return stream_id, self._h2.data_to_send()

    def acknowledge(self, stream_id: int, n: int) -> bytes:
        """The caller passed ``n`` body bytes of ``stream_id`` on: reopen the windows. Clamped
        to what is outstanding; unknown or finished streams are fine. Returns bytes to write."""
        owed = self._unacked.get(stream_id, 0)
        n = min(max(n, 0), owed)
        if n:
            if owed == n and stream_id not in self._active:
                del self._unacked[stream_id]
            else:
                self._unacked[stream_id] = owed - n
            self._ack(stream_id, n)
        return self.data_to_send()

    def cancel(self, stream_id: int) -> bytes:
        """Abandon a stream: RST_STREAM(CANCEL) if it is still open, no more events for it, and
        whatever it still owed the windows is released. Safe on finished or unknown streams
        (call it when done with any stream). Returns bytes to write."""
        if self._active.pop(stream_id, None) is not None and not self._closed:
            self._reset(stream_id, h2.errors.ErrorCodes.CANCEL)
        self._release(stream_id)
        self._check_drained()
        return self.data_to_send()

    def close(self) -> bytes:
        """Say goodbye (GOAWAY NO_ERROR) and forget every stream: no more events. For retiring
        an idle connection; returns the bytes to write before closing the socket."""
        if not self._closed and self._initiated:
            try:
                self._h2.close_connection()
            except h2.exceptions.H2Error:
                pass
        self._closed = True
        self._active.clear()
        self._unacked.clear()
        return self.data_to_send()

    def data_to_send(self) -> bytes:
        """Bytes that became due (acks, window updates, resets, request body)."""
        return self._h2.data_to_send()

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[tuple[int, H2ClientEvent]]:
        """Take bytes read from the upstream (``b""`` = EOF) and return ``(stream_id, event)``
        pairs. Never raises for anything the server sends; check ``data_to_send()`` after."""
        out: list[tuple[int, H2ClientEvent]] = []
        if self._closed:
            return out
        if not data:
            self._closed = True
            self._fail_all("eof", "upstream closed the connection", out)
            self._inbuf.clear()
            return out
        self._inbuf += data
        buf = self._inbuf
        while not self._closed:
            if self._through:
                n = min(self._through, len(buf))
                if not n:
                    break
                piece = bytes(buf[:n])
                del buf[:n]
                self._through -= n
                self._feed(piece, out)
                continue
            if len(buf) < _FRAME_HEADER:
                break
            length = int.from_bytes(buf[0:3], "big")
            if length > self._h2.max_inbound_frame_size:  # h2 would buffer it all first
                self._local_error(h2.errors.ErrorCodes.FRAME_SIZE_ERROR,
                                  "upstream sent an oversize HTTP/2 frame", out)
                break
            if buf[3] != _GOAWAY:
                self._through = _FRAME_HEADER + length
                continue
            if length < 8 or int.from_bytes(buf[5:9], "big") & _MAX_STREAM_ID:
                self._local_error(h2.errors.ErrorCodes.PROTOCOL_ERROR,
                                  "upstream sent a malformed GOAWAY frame", out)
                break
            if len(buf) < _FRAME_HEADER + length:
                break
            payload = bytes(buf[_FRAME_HEADER:_FRAME_HEADER + length])
            del buf[:_FRAME_HEADER + length]
            self._on_goaway(int.from_bytes(payload[0:4], "big") & _MAX_STREAM_ID,
                            int.from_bytes(payload[4:8], "big"), out)
        if self._closed:
            self._inbuf.clear()
        else:
            self._flush()
            self._check_drained()
        return out

    def _feed(self, piece: bytes, out: list[tuple[int, H2ClientEvent]]) -> None:
        try:
            events = self._h2.receive_data(piece)
        except Exception as exc:  # noqa: BLE001 - untrusted input: no h2 error may escape
            self._closed = True  # h2 queued its GOAWAY; nothing else goes out
            self._fail_all("protocol", _public(exc), out)
            return
        for ev in events:
            self._dispatch(ev, out)

    def _dispatch(self, ev: h2.events.Event, out: list[tuple[int, H2ClientEvent]]) -> None:
        if isinstance(ev, h2.events.DataReceived):
            sid = ev.stream_id
            size = ev.flow_controlled_length or 0
            data = bytes(ev.data or b"")
            st = self._active.get(sid)
            if st is None or not st.head:
                self._ack(sid, size)  # not ours any more: give the window straight back
                if st is not None:  # h2 forbids this; defensive
                    self._fail(sid, "protocol", "upstream sent data before the response head",
                               out, reset=h2.errors.ErrorCodes.PROTOCOL_ERROR)
                return
            if size > len(data):
                self._ack(sid, size - len(data))  # padding
            if data:
                self._unacked[sid] = self._unacked.get(sid, 0) + len(data)
                out.append((sid, ResponseData(data)))
        elif isinstance(ev, h2.events.ResponseReceived):
            self._on_head(ev.stream_id, ev.headers or [], out)
        elif isinstance(ev, h2.events.StreamEnded):
            sid = ev.stream_id
            st = self._active.get(sid)
            if st is None:
                return
            if not st.head:
                self._fail(sid, "protocol", "upstream ended the stream without a response", out)
                return
            del self._active[sid]
            if st.body:  # answered before we finished sending: stop sending (RFC 9113 8.1)
                self._reset(sid, h2.errors.ErrorCodes.NO_ERROR)
            if not self._unacked.get(sid):
                self._unacked.pop(sid, None)
            out.append((sid, ResponseEnd()))
        elif isinstance(ev, h2.events.StreamReset):
            sid = ev.stream_id
            if sid in self._active:
                code = int(ev.error_code or 0)
                if ev.remote_reset:
                    self._fail(sid, "reset", f"upstream reset the stream ({_error_name(code)})",
                               out, unprocessed=code == h2.errors.ErrorCodes.REFUSED_STREAM)
                else:
                    self._fail(sid, "protocol",
                               f"upstream broke the stream ({_error_name(code)})", out)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self._settings_seen = True
        elif isinstance(ev, h2.events.ConnectionTerminated):  # GOAWAY never reaches h2
            self._on_goaway(int(ev.last_stream_id or 0), int(ev.error_code or 0), out)
        # InformationalResponseReceived (1xx), TrailersReceived, WindowUpdated (flushed after
        # the batch), PING (h2 answers), SettingsAcknowledged, PriorityUpdated, ALTSVC and
        # unknown frames: nothing to report.

    def _on_head(self, sid: int, headers: list, out: list[tuple[int, H2ClientEvent]]) -> None:
        st = self._active.get(sid)
        if st is None or st.head:
            return
        status = next((bytes(v) for n, v in headers if bytes(n) == b":status"), b"")
        if not _STATUS.match(status) or int(status) < 200:
            self._fail(sid, "protocol", "upstream sent an invalid :status", out,
                       reset=h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        st.head = True
        regular = [(bytes(n), bytes(v)) for n, v in headers if not bytes(n).startswith(b":")]
        out.append((sid, ResponseHead(
            status=int(status),
            headers=tuple((n.decode("latin-1"), v.decode("latin-1"))
                          for n, v in clean_headers(regular, allow_obs_text=True)),
            reason="",
        )))

    def _on_goaway(self, last: int, code: int, out: list[tuple[int, H2ClientEvent]]) -> None:
        if self._goaway_last is not None:
            last = min(last, self._goaway_last)
        self._goaway_last = last
        for sid in sorted(self._active):
            if sid > last:
                self._fail(sid, "reset", "upstream is closing the connection (GOAWAY) and did "
                                         "not process the request", out, unprocessed=True)
        if code:
            self._closed = True
            self._fail_all("reset", f"upstream closed the connection ({_error_name(code)})", out)

    # -- helpers -----------------------------------------------------------------------------

    def _flush(self) -> None:
        """Send queued request body as far as the windows allow."""
        for sid, st in list(self._active.items()):
            while st.body:
                try:
                    window = self._h2.local_flow_control_window(sid)
                except h2.exceptions.H2Error:
                    st.body = memoryview(b"")
                    break
                n = min(window, self._h2.max_outbound_frame_size, len(st.body))
                if n <= 0:
                    break
                chunk, st.body = st.body[:n], st.body[n:]
                try:
                    self._h2.send_data(sid, bytes(chunk), end_stream=not st.body)
                except h2.exceptions.H2Error:
                    st.body = memoryview(b"")

    def _fail(self, sid: int, kind: str, message: str, out: list[tuple[int, H2ClientEvent]], *,
              unprocessed: bool = False, reset: int | None = None) -> None:
        if self._active.pop(sid, None) is None:
            return
        if reset is not None:
            self._reset(sid, reset)
        self._release(sid)
        out.append((sid, StreamFailed(kind, message, unprocessed)))

    def _fail_all(self, kind: str, message: str, out: list[tuple[int, H2ClientEvent]]) -> None:
        for sid in sorted(self._active):
            self._fail(sid, kind, message, out)
        self._unacked.clear()

    def _local_error(self, code: int, message: str,
                     out: list[tuple[int, H2ClientEvent]]) -> None:
        try:
            self._h2.close_connection(code)
        except h2.exceptions.H2Error:
            pass
        self._closed = True
        self._fail_all("protocol", message, out)

    def _reset(self, sid: int, code: int) -> None:
        try:
            self._h2.reset_stream(sid, code)
        except h2.exceptions.H2Error:
            pass  # already closed (ended, or reset by the server)

    def _ack(self, sid: int, n: int) -> None:
        if n <= 0 or self._closed:
            return
        try:
            self._h2.acknowledge_received_data(n, sid)
        except (h2.exceptions.H2Error, ValueError):
            pass

    def _release(self, sid: int) -> None:
        self._ack(sid, self._unacked.pop(sid, 0))

    def _check_drained(self) -> None:
        if self._goaway_last is not None and not self._active:
            self._closed = True


# -- pooling (see "Pooling" in the module docstring) -------------------------------------------


class H2Link:
    """One pooled HTTP/2 upstream connection, sans I/O: the connection, the requests using it
    (stream id → the transport's sink) and the bytes to write, in order."""

    def __init__(self, key: Hashable, **conn_kw: int) -> None:
        self.key = key
        self.conn = H2ClientConnection(**conn_kw)
        self._out = bytearray(self.conn.initiate())
        self._sinks: dict[int, object] = {}
        self._settled: set[int] = set()  # got ResponseEnd or StreamFailed

    @property
    def idle(self) -> bool:
        """No request is using the connection."""
        return not self._sinks

    def open(self, method: str, url: Url, headers: Iterable[tuple[str, str]], body: bytes,
             sink: object) -> int:
        """Send a request (any ``Host`` header is replaced by the URL's authority); its events
        go to ``sink``. ``ValueError`` for a request HTTP/2 refuses; check ``conn.can_open``."""
        rest = [(n, v) for n, v in headers if n.lower() != "host"]
        sid, out = self.conn.send_request(method, url.target, url.host_header, url.scheme,
                                          rest, body)
        self._out += out
        self._sinks[sid] = sink
        return sid

    def feed(self, data: bytes) -> list[tuple[object, H2ClientEvent]]:
        """Bytes read from the upstream (``b""`` = EOF): the events to deliver."""
        events = self.conn.receive_data(data)
        self._out += self.conn.data_to_send()
        out = []
        for sid, ev in events:
            sink = self._sinks.get(sid)
            if sink is not None:
                if isinstance(ev, (ResponseEnd, StreamFailed)):
                    self._settled.add(sid)
                out.append((sink, ev))
        return out

    def acknowledge(self, stream_id: int, n: int) -> None:
        """The request passed ``n`` body bytes on: reopen the windows (the backpressure)."""
        self._out += self.conn.acknowledge(stream_id, n)

    def finish(self, stream_id: int) -> None:
        """The request is over (also when abandoned: the stream is reset if still open)."""
        self._out += self.conn.cancel(stream_id)
        self._sinks.pop(stream_id, None)
        self._settled.discard(stream_id)

    def retire(self, message: str = "upstream connection closed"
               ) -> list[tuple[object, H2ClientEvent]]:
        """Close the connection (GOAWAY if it is still up): requests still waiting for their
        final event get ``StreamFailed("eof", message)``."""
        self._out += self.conn.close()
        out: list[tuple[object, H2ClientEvent]] = []
        for sid, sink in self._sinks.items():
            if sid not in self._settled:
                self._settled.add(sid)
                out.append((sink, StreamFailed("eof", message)))
        return out

    def take(self) -> bytes:
        """The bytes to write now (for the connection's one writer)."""
        data = bytes(self._out)
        self._out.clear()
        return data


L = TypeVar("L", bound=H2Link)


class H2Pool(Generic[L]):
    """The HTTP/2 links of a transport's pool per key, and the keys known to be HTTP/1.1-only
    (their ALPN picked ``http/1.1`` or nothing: requests go straight to the HTTP/1.1 pool)."""

    def __init__(self) -> None:
        self._links: dict[Hashable, list[L]] = {}
        self.h1_only: set[Hashable] = set()

    def pick(self, key: Hashable, avoid: object = None) -> L | None:
        """A link for ``key`` (other than ``avoid``) that can open a stream now."""
        return next((link for link in self._links.get(key, ())
                     if link is not avoid and link.conn.can_open), None)

    def add(self, link: L) -> None:
        self._links.setdefault(link.key, []).append(link)
        self.h1_only.discard(link.key)

    def discard(self, link: L) -> None:
        links = self._links.get(link.key, [])
        if link in links:
            links.remove(link)
        if not links:
            self._links.pop(link.key, None)

    def all(self) -> list[L]:
        return [link for links in self._links.values() for link in links]
