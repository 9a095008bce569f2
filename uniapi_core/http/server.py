"""Sans-IO HTTP/1.1 server connection: h11 plus the limits h11 leaves to its caller.

Theory of operation
-------------------
``ServerConnection`` wraps one client connection. The transport moves bytes and the clock;
every HTTP decision is made here. Input style is h2's: ``receive_data(bytes, now)`` returns
events. Output style is h11's: each response call returns the bytes to write (serialised
here, not by h11: headers are already cleaned, and h11's second validation cost a third of
a response's time; framing follows h11's rules — chunked for HTTP/1.1 bodies of unknown
length, close-delimited for HTTP/1.0, no body for HEAD, 204 and 304). The only bytes
the connection wants sent on its own (``100 Continue``) wait in an outbound buffer that
``data_to_send()`` drains; ``start_response`` also prepends whatever is still waiting there,
so an interim response can never end up after the final one on the wire.

One request/response cycle walks through these states (``_State``)::

    IDLE ──first byte──▶ HEAD ──head parsed──▶ BODY ──body complete──▶ RESPONDING
      ▲                                                                     │ end_response
      └──────────────────────── next_request ◀── DONE ◀─────────────────────┘
    HEAD/BODY ──limit, malformed input, timeout──▶ FAILED ──error_response──▶ CLOSED
    any state ──EOF, keep-alive timeout, must_close after the response──▶ CLOSED

Bytes are first appended to ``_pending`` (ours) and fed to h11 from there, at most
``_SLICE`` (16 KiB) at a time, calling ``next_event`` between slices. While the head is being
read, h11 is never given more than ``max_head`` bytes: if h11 still needs data once it holds
``max_head`` bytes, the head is too large (431), however the bytes were cut. This closes
h11's gap of accepting any head that arrives in one read. The request line is measured while it
streams past (414 as soon as it is too long, before the rest of the head is read).

Each cycle uses a fresh ``h11.Connection``: when the request's ``EndOfMessage`` arrives, what
h11 has buffered past it (``trailing_data``) goes back to the front of ``_pending``. While a
response is in flight, new bytes are only buffered (a pipelined next request, bounded by
``max_pipelined``; past that the buffer is dropped, nothing more is buffered and the connection
closes after this response) and EOF is reported at once as ``ClientClosed``, so the relay can
cancel the upstream. ``next_request`` starts the next cycle and parses what was buffered.

Checks h11 does not make, made here on the parsed ``Request``: HTTP version (505, which also
catches an HTTP/2 prior-knowledge preface ``PRI * HTTP/2.0`` that reaches this parser;
``h2session`` routes h2c to ``h2server`` by its first bytes, before any byte gets here),
``CONNECT`` (501: no tunnelling here), header count (431), ``Content-Length`` together with
``Transfer-Encoding`` (400), ``Content-Length`` over ``max_body`` (413 before any body byte is
read). Chunked bodies are counted as they arrive (413 once past ``max_body``). h11 itself
refuses malformed syntax and conflicting ``Content-Length`` values (400) and codings other than
``chunked`` (501). After a ``ProtocolFailure`` nothing more is read: the caller sends
``error_response`` and closes. Failure messages never quote the client's bytes (they may hold
keys, and they get logged).

Time is always an argument. ``next_deadline()`` tells the transport when to call
``deadline_reached(now)``: ``head_timeout`` from the first byte of a head (408),
``body_idle_timeout`` since the last bytes of a body, or a body averaging under
``min_body_rate`` once it has taken ``body_idle_timeout`` (408: a trickle of one byte just
inside the idle timeout must not hold a connection forever), ``keepalive_timeout`` between
requests (silent close; ``head_timeout`` before the first request), nothing while a response
is in flight (the relay owns those timeouts).

Headers we emit pass through ``clean_headers``: a header whose name is not a token, or whose
value holds CR, LF, NUL, another control character or (on this side, per R8)
non-ASCII, is dropped instead of reaching h11, which would raise on some of them and pass
others through.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Union

import attrs
import h11

from ..errors import error_body
from ..jsonutil import dumps

__all__ = [
    "ServerLimits",
    "RequestReceived",
    "ProtocolFailure",
    "ClientClosed",
    "ServerEvent",
    "ServerConnection",
    "clean_headers",
]

#: Largest slice handed to h11 in one ``receive_data`` call.
_SLICE = 16 * 1024

_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+\Z")
_VALUE_ASCII = re.compile(rb"(?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?\Z")
_VALUE_LATIN1 = re.compile(rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?\Z")
# h11 quotes the offending bytes in some messages: cut from the quote on.
_QUOTED_BYTES = re.compile(r"[\s:]*(?:bytearray\()?b['\"].*\Z", re.S)

#: Header names whose meaning (framing) belongs to the connection, not to the caller.
_FRAMING = (b"content-length", b"transfer-encoding")


def clean_headers(
    headers: Iterable[tuple[str | bytes, str | bytes]], *, allow_obs_text: bool = False
) -> list[tuple[bytes, bytes]]:
    """Headers that are safe to put on the wire, as ``(lower-case name, value)`` bytes pairs.

    Values are stripped of surrounding spaces and tabs. A header is *dropped* when its name is
    not an RFC 9110 token, or its value contains CR, LF, NUL, any other control character or a
    character outside latin-1 (with ``allow_obs_text=False``: outside ASCII). Never raises for
    bad content: dropping is the defence against header injection.
    """
    pattern = _VALUE_LATIN1 if allow_obs_text else _VALUE_ASCII
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        try:
            raw_name = name if isinstance(name, bytes) else name.encode("latin-1")
            raw_value = value if isinstance(value, bytes) else value.encode("latin-1")
        except (UnicodeEncodeError, AttributeError):
            continue
        raw_value = raw_value.strip(b" \t")
        if _TOKEN.match(raw_name) and pattern.match(raw_value):
            out.append((raw_name.lower(), raw_value))
    return out


def comma_tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> set[bytes]:
    """Lower-cased comma-separated tokens of every ``name`` header (names already lower)."""
    found: set[bytes] = set()
    for key, value in headers:
        if key == name:
            found.update(t.strip().lower() for t in value.split(b","))
    return found


def public_message(exc: h11.ProtocolError, what: str) -> str:
    """h11's message for ``exc``, prefixed by ``what``, without the bytes it may quote."""
    text = _QUOTED_BYTES.sub("", str(exc))
    return f"{what}: {text}" if text else what


def body_deadline(limits: "ServerLimits", start: float, last_data: float, received: int
                  ) -> float:
    """When a body that began at ``start`` times out (shared by the HTTP/1.1 and HTTP/2
    fronts): ``body_idle_timeout`` after its last bytes, or once its average rate is under
    ``min_body_rate`` after ``body_idle_timeout``."""
    idle = limits.body_idle_timeout
    rate = start + max(idle, received / limits.min_body_rate) if limits.min_body_rate else \
        float("inf")
    return min(last_data + idle, rate)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


# -- limits and events ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ServerLimits:
    """Per-connection limits; the defaults are in docs/architecture.md."""

    #: request line plus headers, bytes (→ 431)
    max_head: int = 65536
    #: header fields per request (→ 431)
    max_headers: int = 100
    #: request line without its CRLF, bytes (→ 414)
    max_request_line: int = 8192
    #: request body, bytes (→ 413)
    max_body: int = 32 * 1024 * 1024
    #: seconds from the first byte of a head until it must be complete (→ 408)
    head_timeout: float = 10.0
    #: seconds a body may go without new bytes (→ 408)
    body_idle_timeout: float = 30.0
    #: bytes per second a body must average once it has taken ``body_idle_timeout`` (→ 408)
    min_body_rate: int = 1024
    #: seconds from a response's end to the next request's first byte (→ silent close)
    keepalive_timeout: float = 75.0
    #: requests per connection; the last one is answered with ``Connection: close``
    max_requests: int = 1000
    #: bytes buffered for the next request while a response is in flight
    max_pipelined: int = 65536


@attrs.frozen
class RequestReceived:
    """A whole request: head and complete body.

    Header names are lower-cased, values decoded as latin-1 (byte-transparent), in order.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    http_version: str

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


@attrs.frozen
class ProtocolFailure:
    """The request cannot be served and the connection cannot continue.

    The caller answers with ``conn.error_response(status, message, now=...)`` and closes.
    """

    status: int
    message: str


@attrs.frozen
class ClientClosed:
    """The peer closed (EOF), or nothing more will come on this connection: close it."""


ServerEvent = Union[RequestReceived, ProtocolFailure, ClientClosed]


class _State(enum.Enum):
    IDLE = "idle"  # between requests, no byte of the next one seen
    HEAD = "head"  # reading a request head
    BODY = "body"  # reading a request body
    RESPONDING = "responding"  # request delivered, response not yet ended
    DONE = "done"  # response ended, waiting for next_request
    FAILED = "failed"  # ProtocolFailure emitted; only error_response makes sense
    CLOSED = "closed"  # nothing more to read or answer


_READING = (_State.IDLE, _State.HEAD, _State.BODY)


# -- the connection ---------------------------------------------------------------------------


class ServerConnection:
    """One HTTP/1.1 client connection, sans I/O (see the module docstring).

    Transport contract: feed every read to ``receive_data`` (``b""`` on EOF) and write
    ``data_to_send()`` after it; arm one timer at ``next_deadline()`` and call
    ``deadline_reached`` when it fires. Answer each ``RequestReceived`` with ``respond`` or
    ``start_response``/``send_data``/``end_response`` and then call ``next_request``; answer
    a ``ProtocolFailure`` with ``error_response``. Close the socket on ``ClientClosed``, after
    a response when ``must_close``, and whenever ``closed``. Misuse (responding twice, more
    body than ``content_length``) raises ``RuntimeError``/``ValueError``; peer input never
    raises.
    """

    def __init__(self, limits: ServerLimits = ServerLimits(), *, now: float = 0.0) -> None:
        self._limits = limits
        self._state = _State.IDLE
        self._pending = bytearray()  # received, not yet handed to h11
        self._outbound = bytearray()  # bytes we want sent on our own (100 Continue)
        self._must_close = False
        self._pipeline_full = False
        self._served = 0  # requests delivered on this connection
        self._first_cycle = True
        self._idle_since = now
        self._head_start = now
        self._last_data = now
        self._body_start = now
        self._new_cycle()

    def _new_cycle(self) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_head)
        self._head_fed = 0  # head bytes handed to this cycle's h11
        self._line_len = 0  # request-line bytes seen so far (a final CR included)
        self._line_done = False
        self._line_cr = False  # the last request-line byte seen was CR
        self._request: h11.Request | None = None
        self._headers: list[tuple[bytes, bytes]] = []  # the request's, as a list
        self._body = bytearray()
        self._can_respond = False
        self._response_started = False
        self._body_allowed = True
        self._chunked = False
        self._response_ended = False
        self._content_length: int | None = None
        self._sent = 0

    # -- public state ---------------------------------------------------------------------------

    @property
    def response_started(self) -> bool:
        """A response head has been produced for the current request."""
        return self._response_started

    @property
    def must_close(self) -> bool:
        """After the current response the socket must be closed."""
        return self._must_close

    @property
    def closed(self) -> bool:
        """Nothing more will be read or answered: the caller closes the socket."""
        return self._state is _State.CLOSED

    def close_after_response(self) -> None:
        """Serve no further request on this connection (shutdown): the current response, if
        any, carries ``connection: close`` when its head is still to be sent."""
        self._must_close = True

    @property
    def busy(self) -> bool:
        """A request is being read or answered (an idle keep-alive connection is not busy)."""
        return self._state is not _State.IDLE or bool(self._pending)

    def data_to_send(self) -> bytes:
        """Drain bytes the connection wants written on its own (``100 Continue``)."""
        out = bytes(self._outbound)
        self._outbound.clear()
        return out

    # -- input ----------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[ServerEvent]:
        """Take bytes read from the client (``b""`` = EOF) and return the resulting events.

        ``RequestReceived`` comes only once the whole body is in. While a response is in flight
        bytes are buffered for ``next_request`` and EOF yields ``ClientClosed`` at once.
        """
        if self._state in (_State.FAILED, _State.CLOSED):
            return []
        if not data:
            self._state = _State.CLOSED
            self._pending.clear()
            return [ClientClosed()]
        if self._state in _READING:
            self._pending += data
            self._last_data = now
            return self._pump(now)
        if not self._pipeline_full:
            self._pending += data
            if len(self._pending) > self._limits.max_pipelined:
                self._pipeline_full = True  # this response is the connection's last
                self._must_close = True
                self._pending.clear()
        return []

    def _pump(self, now: float) -> list[ServerEvent]:
        """Feed ``_pending`` to h11 slice by slice until it needs more or a request is whole."""
        events: list[ServerEvent] = []
        limits = self._limits
        while True:
            if self._state is _State.IDLE:
                if not self._pending:
                    return events
                self._state = _State.HEAD
                self._head_start = now
            try:
                event = self._h11.next_event()
            except h11.ProtocolError as exc:
                message = public_message(exc, "malformed request")
                return events + [self._fail(exc.error_status_hint, message)]
            if event is h11.NEED_DATA:
                reading_head = self._state is _State.HEAD
                if reading_head and self._head_fed >= limits.max_head:
                    return events + [self._fail(431, "request header block too large")]
                room = limits.max_head - self._head_fed if reading_head else _SLICE
                if reading_head and not self._line_done:
                    # h11 never sees more of an unfinished request line than the limit + CRLF
                    # allows, so a too-long line gets the same answer however it was cut
                    room = min(room, limits.max_request_line + 2 - self._line_len)
                n = min(_SLICE, room, len(self._pending))
                if n == 0:
                    return events
                piece = bytes(self._pending[:n])
                del self._pending[:n]
                too_long = False
                if reading_head:
                    self._head_fed += n
                    too_long = not self._line_done and self._request_line_too_long(piece)
                self._h11.receive_data(piece)
                if too_long:
                    # h11 may refuse the line's first bytes early (400): ask it first, so the
                    # status does not depend on how the bytes arrived
                    try:
                        self._h11.next_event()
                    except h11.ProtocolError as exc:
                        message = public_message(exc, "malformed request")
                        return events + [self._fail(exc.error_status_hint, message)]
                    return events + [self._fail(414, "request line too long")]
            elif isinstance(event, h11.Request):
                failure = self._check_request(event)
                if failure is not None:
                    return events + [failure]
                self._state = _State.BODY
                self._last_data = self._body_start = now
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > limits.max_body:
                    return events + [self._fail(413, "request body too large")]
            elif isinstance(event, h11.EndOfMessage):
                return events + [self._deliver()]
            else:  # PAUSED or ConnectionClosed: impossible before EndOfMessage (defensive)
                return events + [self._fail(400, "malformed request")]

    def _request_line_too_long(self, piece: bytes) -> bool:
        """Measure the request line as it streams past; True once it is over the limit."""
        limit = self._limits.max_request_line
        i = piece.find(b"\n")
        if i < 0:
            self._line_len += len(piece)
            self._line_cr = piece.endswith(b"\r")
            # Even if the last byte is the CR of a CRLF the line is longer than the limit.
            return self._line_len > limit + 1
        cr = piece[i - 1 : i] == b"\r" if i > 0 else self._line_cr
        self._line_done = True
        return self._line_len + i - cr > limit

    def _check_request(self, req: h11.Request) -> ProtocolFailure | None:
        """The checks h11 leaves to us, on a parsed request head."""
        limits = self._limits
        if req.http_version not in (b"1.1", b"1.0"):
            if req.method == b"PRI" and req.target == b"*":
                return self._fail(505, "HTTP/2 prior knowledge (h2c) is not supported here")
            return self._fail(505, "HTTP version not supported")
        if req.method == b"CONNECT":
            return self._fail(501, "CONNECT is not supported")
        # h11's Headers iterates through the Sequence ABC (__getitem__ per item): copy once
        headers = list(req.headers)
        if len(headers) > limits.max_headers:
            return self._fail(431, f"too many header fields (limit {limits.max_headers})")
        names = {name for name, _ in headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            return self._fail(400, "both Content-Length and Transfer-Encoding present")
        for name, value in headers:
            # h11 has validated the value (digits, one distinct value)
            if name == b"content-length" and int(value) > limits.max_body:
                return self._fail(413, "request body too large")
        self._request = req
        self._headers = headers
        if self._h11.they_are_waiting_for_100_continue:
            interim = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            self._outbound += self._h11.send(interim) or b""
        return None

    def _deliver(self) -> RequestReceived:
        req = self._request
        assert req is not None
        trailing, _ = self._h11.trailing_data
        self._pending[:0] = trailing
        self._state = _State.RESPONDING
        self._can_respond = True
        self._served += 1
        headers = self._headers
        keep_alive = req.http_version == b"1.1" and b"close" not in comma_tokens(
            headers, b"connection"
        )
        if not keep_alive or self._served >= self._limits.max_requests:
            self._must_close = True
        return RequestReceived(
            method=req.method.decode("ascii"),
            target=req.target.decode("ascii"),
            headers=tuple([(n.decode("ascii"), v.decode("latin-1")) for n, v in headers]),
            body=bytes(self._body),
            http_version=req.http_version.decode("ascii"),
        )

    def _fail(self, status: int, message: str) -> ProtocolFailure:
        self._state = _State.FAILED
        self._must_close = True
        self._can_respond = True
        self._pending.clear()
        return ProtocolFailure(status, message)

    # -- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``deadline_reached`` should next be called, or ``None`` (no timer needed)."""
        limits = self._limits
        if self._state is _State.IDLE:
            wait = limits.head_timeout if self._first_cycle else limits.keepalive_timeout
            return self._idle_since + wait
        if self._state is _State.HEAD:
            return self._head_start + limits.head_timeout
        if self._state is _State.BODY:
            return body_deadline(limits, self._body_start, self._last_data, len(self._body))
        return None

    def deadline_reached(self, now: float) -> list[ServerEvent]:
        """Events for a deadline that has passed at ``now``; nothing if none is due.

        Head or body too slow → ``ProtocolFailure(408)``; idle between requests →
        ``ClientClosed()``.
        """
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        if self._state is _State.IDLE:
            self._state = _State.CLOSED
            return [ClientClosed()]
        if self._state is _State.HEAD:
            return [self._fail(408, "timed out reading the request head")]
        return [self._fail(408, "timed out reading the request body")]

    # -- output ---------------------------------------------------------------------------------

    def start_response(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        *,
        content_length: int | None = None,
    ) -> bytes:
        """Bytes of the response head (after any ``100 Continue`` still waiting).

        ``content_length=None`` frames the body chunked (close-delimited for HTTP/1.0
        clients). Caller headers are cleaned (``clean_headers``); their ``content-length`` and
        ``transfer-encoding`` are ignored, framing is ours. ``connection: close`` is added when
        ``must_close``; a caller's ``connection: close`` sets ``must_close``.
        """
        if not self._can_respond:
            raise RuntimeError("start_response: no request is awaiting a response")
        if not 200 <= status <= 599:
            raise ValueError(f"start_response: {status} is not a final status")
        if content_length is not None and content_length < 0:
            raise ValueError("start_response: content_length must be >= 0")
        clean = [(n, v) for n, v in clean_headers(headers) if n not in _FRAMING]
        if b"close" in comma_tokens(clean, b"connection"):
            self._must_close = True
        req = self._request
        method = req.method if req is not None else b""
        self._body_allowed = method != b"HEAD" and status not in (204, 304)
        self._chunked = False
        if content_length is not None:
            if status != 204:
                clean.append((b"content-length", b"%d" % content_length))
        elif status not in (204, 304):
            if req is not None and req.http_version == b"1.0":
                self._must_close = True  # close-delimited: the close ends the body
            else:
                clean.append((b"transfer-encoding", b"chunked"))
                self._chunked = self._body_allowed
        if self._must_close and b"close" not in comma_tokens(clean, b"connection"):
            clean = [(n, v) for n, v in clean if n != b"connection"]
            clean.append((b"connection", b"close"))
        # Serialised here rather than by h11: the names and values are validated above, and
        # h11 would validate them again (a third of its per-response cost).
        head = b"".join([b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))]
                        + [n + b": " + v + b"\r\n" for n, v in clean] + [b"\r\n"])
        self._can_respond = False
        self._response_started = True
        self._response_ended = False
        self._content_length = content_length
        self._sent = 0
        return self.data_to_send() + head

    def send_data(self, data: bytes) -> bytes:
        """Bytes carrying ``data`` as (part of) the response body.

        Bodies of responses to ``HEAD`` and of 204/304 responses are dropped.
        """
        if not self._response_started:
            raise RuntimeError("send_data: no response started")
        if not data or not self._body_allowed:
            return b""
        if self._content_length is not None and self._sent + len(data) > self._content_length:
            raise ValueError("send_data: more body than the declared content_length")
        self._sent += len(data)
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def end_response(self, now: float) -> bytes:
        """Bytes ending the response; the keep-alive clock starts at ``now``.

        If fewer bytes than ``content_length`` were sent, the response cannot be completed
        honestly: nothing is returned and ``must_close`` becomes True (closing tells the client).
        """
        if not self._response_started:
            raise RuntimeError("end_response: no response started")
        out = b""
        if self._body_allowed and self._content_length is not None and (
            self._sent < self._content_length
        ):
            self._must_close = True
        elif self._chunked and not self._response_ended:
            out = b"0\r\n\r\n"
        self._response_ended = True
        self._idle_since = now
        if self._state in (_State.RESPONDING, _State.FAILED):
            self._state = _State.CLOSED if self._must_close else _State.DONE
        return out

    def respond(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes, now: float
    ) -> bytes:
        """Bytes of a whole response with ``Content-Length``."""
        return (
            self.start_response(status, headers, content_length=len(body))
            + self.send_data(body)
            + self.end_response(now)
        )

    def error_response(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | int | None = None,
        now: float,
    ) -> bytes:
        """Bytes of an OpenAI error JSON response (``application/json``, ``Connection: close``)."""
        self._must_close = True
        body = dumps(error_body(message, type, code))
        return self.respond(status, [("content-type", "application/json")], body, now)

    def next_request(self, now: float) -> list[ServerEvent]:
        """Start the next cycle after ``end_response``; parse a pipelined request, if buffered.

        Returns ``[ClientClosed()]`` when the connection must not continue (``must_close``, or
        the peer already closed).
        """
        if self._state is _State.CLOSED:
            return [ClientClosed()]
        if self._state is not _State.DONE:
            raise RuntimeError("next_request: the current response has not ended")
        self._state = _State.IDLE
        self._first_cycle = False
        self._idle_since = now
        self._new_cycle()
        return self._pump(now)
