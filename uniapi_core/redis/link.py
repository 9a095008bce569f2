"""One Redis connection, sans-IO: what to write, and whose replies the bytes read are.

A transport connects to the ``RedisTarget`` (url.py), builds a ``RedisLink`` and writes
``greeting()``: ``AUTH [user] password`` when the target has a password, ``SELECT db`` when db
is not 0, then ``SCRIPT LOAD`` of every script the link keeps loaded. Those replies are the
link's own: an error to AUTH or SELECT (or to loading a script) raises ``LinkFailed`` from
``receive``, and ``ready`` turns True once every one answered.

Callers' pipelines go out as ``request(tag, commands)``: the bytes of the commands, whose
replies are later returned together, under ``tag``, by the ``receive`` call that completes
them. Redis answers every command of a connection in order (RESP2, no pub/sub), so the link
keeps a FIFO of *slots*: each slot is a tag (or one of the link's own kinds: greeting, script
reload, a told pipeline nobody waits for) and how many replies it still expects. Every reply
the ``RespParser`` completes fills the head slot; a full slot is popped and, if it is a
caller's, returned. ``receive`` is therefore independent of how the bytes are split, and
requests may be issued before ``ready``: they queue behind the greeting.

EVALSHA needs the script in the server's cache, which ``SCRIPT FLUSH``, a restart or a
failover empties. When a caller's reply is a ``NOSCRIPT`` error (top level, or an element of an
array such as EXEC's) the link remembers it and prefixes the next pipeline it sends with
``SCRIPT LOAD`` of every script (replies consumed internally). The ``NOSCRIPT`` reply itself
still goes to its caller, whose retry then finds the script.

Time is the transport's: every pipeline is given a ``due`` time (when its caller stops
waiting, on the transport's monotonic clock) and ``overdue(now)`` says whether some reply is
more than ``OVERDUE`` seconds past its due time, the sign of a wedged server that the transport
answers by dropping the connection. The other policies a transport applies are here too, so
that both transports behave alike: ``MAX_PENDING`` (a call is refused at once when that many
pipelines are waiting, so a stalled Redis costs bounded memory), ``Backoff`` (the reconnect
delays), ``CONNECT_TIMEOUT``, ``WATCH_EVERY`` (how often the transport checks ``overdue``) and
``failure_reason``, the short text a transport reports when a connection fails or is lost.

After ``LinkFailed`` (a refused greeting, a reply nobody asked for, or bytes that are not RESP)
the link is dead: every further ``receive`` raises it again. A ``LinkFailed`` reason never
contains the password.

``Callers`` is the other half both transports share: a process keeps one, across reconnects.
It holds the link once it is ready, hands every caller a tag, and calls each caller's
``deliver`` with its replies, or with None (not connected, too many waiting, the link lost).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence

import attrs

from .resp import Reply, RespError, RespParser, RespProtocolError, encode_command
from .url import RedisTarget

__all__ = ["BACKOFF_CAP", "BACKOFF_FIRST", "CONNECT_TIMEOUT", "MAX_PENDING", "OVERDUE",
           "OVERDUE_REASON", "READ_SIZE", "WATCH_EVERY", "Backoff", "Callers", "Command",
           "Deliver", "LinkFailed", "RedisLink", "failure_reason", "script_sha"]

#: A reply more than this many seconds past its caller's due time means a wedged server.
OVERDUE = 2.0
OVERDUE_REASON = "Redis did not answer in time"
#: Pipelines waiting on one connection beyond which a call is refused at once.
MAX_PENDING = 10_000
#: Reconnect delays: the first, doubling up to the cap; back to the first after a success.
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 1.0
#: The default time to open the socket (and finish the TLS handshake).
CONNECT_TIMEOUT = 1.0
#: How often a transport checks ``RedisLink.overdue``.
WATCH_EVERY = 0.25
#: The most bytes a transport reads at once.
READ_SIZE = 64 * 1024

Command = Sequence[bytes | str | int]

# The link's own slots (anything else in a slot is a caller's tag).
_GREETING = object()
_RELOAD = object()
_TOLD = object()
_OWN = (_GREETING, _RELOAD, _TOLD)


class LinkFailed(Exception):
    """The connection cannot go on (refused greeting, protocol error): drop it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def script_sha(source: str) -> str:
    """The lowercase hex SHA1 of a Lua script's UTF-8 source: its EVALSHA name."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()


@attrs.define
class _Slot:
    tag: object
    expected: int
    due: float
    what: tuple[str, ...] = ()  # the greeting's command names, one per reply
    replies: list[Reply] = attrs.Factory(list)


def _has_noscript(replies: list[Reply]) -> bool:
    for reply in replies:
        if isinstance(reply, RespError) and reply.kind == "NOSCRIPT":
            return True
        if isinstance(reply, list) and any(
                isinstance(r, RespError) and r.kind == "NOSCRIPT" for r in reply):
            return True
    return False


class RedisLink:
    """The sans-IO state of one Redis connection; see the module docstring."""

    def __init__(self, target: RedisTarget, scripts: Sequence[str] = ()) -> None:
        self.target = target
        self.scripts = tuple(scripts)
        self._parser = RespParser()
        self._slots: deque[_Slot] = deque()
        self._callers = 0  # slots holding a caller's tag or a told pipeline
        self._greeted = False
        self._greeting_left = 0
        self._reload = False
        self._failed: str | None = None

    # -- state -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once ``greeting()`` was written and every one of its replies was OK."""
        return self._greeted and self._greeting_left == 0 and self._failed is None

    @property
    def full(self) -> bool:
        """True when ``MAX_PENDING`` pipelines are waiting: refuse more calls for now."""
        return self._callers >= MAX_PENDING

    def pending(self) -> list[object]:
        """The tags still waiting for replies, oldest first (fail them if the socket dies)."""
        return [s.tag for s in self._slots if s.tag not in _OWN]

    def overdue(self, now: float) -> bool:
        """True when a waited-for reply is more than ``OVERDUE`` seconds past its due time."""
        return any(s.due + OVERDUE < now for s in self._slots)

    def check(self, now: float) -> None:
        """Raise ``LinkFailed(OVERDUE_REASON)`` when ``overdue(now)``: the watchdog's test."""
        if self.overdue(now):
            raise self._fail(OVERDUE_REASON)

    # -- bytes out -------------------------------------------------------------------------

    def greeting(self, *, due: float = math.inf) -> bytes:
        """The bytes to write first, once, right after connecting (possibly empty)."""
        if self._greeted or self._slots:
            raise RuntimeError("greeting() is written once, before any request")
        self._greeted = True
        commands: list[Command] = []
        t = self.target
        if t.password is not None:
            commands.append(("AUTH", t.username, t.password) if t.username is not None
                            else ("AUTH", t.password))
        if t.db:
            commands.append(("SELECT", t.db))
        commands += [("SCRIPT", "LOAD", src) for src in self.scripts]
        if not commands:
            return b""
        names = tuple(" ".join(str(a) for a in c[:2]) if c[0] == "SCRIPT" else str(c[0])
                      for c in commands)
        self._slots.append(_Slot(_GREETING, len(commands), due, names))
        self._greeting_left = len(commands)
        return b"".join(encode_command(*c) for c in commands)

    def request(self, tag: object, commands: Sequence[Command], *,
                due: float = math.inf) -> bytes:
        """The bytes of a pipeline whose replies ``receive`` returns together under ``tag``;
        ``due`` is when its caller stops waiting (see ``overdue``)."""
        return self._send(tag, commands, due)

    def tell(self, commands: Sequence[Command], *, due: float = math.inf) -> bytes:
        """The bytes of a pipeline whose replies are read and dropped."""
        return self._send(_TOLD, commands, due)

    def _send(self, tag: object, commands: Sequence[Command], due: float) -> bytes:
        if not self._greeted:
            raise RuntimeError("write greeting() before any request")
        if not commands:
            raise ValueError("a pipeline holds at least one command")
        wire = b"".join(encode_command(*c) for c in commands)
        prefix = b""
        if self._reload and self.scripts:
            prefix = b"".join(encode_command("SCRIPT", "LOAD", s) for s in self.scripts)
            self._slots.append(_Slot(_RELOAD, len(self.scripts), due))
        self._reload = False
        self._slots.append(_Slot(tag, len(commands), due))
        self._callers += 1
        return prefix + wire

    # -- bytes in --------------------------------------------------------------------------

    def receive(self, data: bytes | bytearray | memoryview) -> list[tuple[object, list[Reply]]]:
        """Feed bytes read from the socket; every caller's pipeline completed, in order."""
        if self._failed is not None:
            raise LinkFailed(self._failed)
        try:
            replies = self._parser.feed(data)
        except RespProtocolError as exc:
            raise self._fail(f"Redis sent bytes that are not RESP2: {exc}") from None
        out: list[tuple[object, list[Reply]]] = []
        slots = self._slots
        for reply in replies:
            if not slots:
                raise self._fail("Redis sent a reply nobody asked for")
            slot = slots[0]
            if slot.tag is _GREETING:
                self._greeted_reply(slot, reply)
            slot.replies.append(reply)
            if len(slot.replies) < slot.expected:
                continue
            slots.popleft()
            if slot.tag is _RELOAD or slot.tag is _GREETING:
                continue
            self._callers -= 1
            if _has_noscript(slot.replies):
                self._reload = True
            if slot.tag is not _TOLD:
                out.append((slot.tag, slot.replies))
        return out

    def _greeted_reply(self, slot: _Slot, reply: Reply) -> None:
        what = slot.what[len(slot.replies)]
        if isinstance(reply, RespError):
            message = reply.message
            if self.target.password:
                message = message.replace(self.target.password, "***")
            raise self._fail(f"Redis refused {what}: {message[:200]}")
        self._greeting_left -= 1

    def _fail(self, reason: str) -> LinkFailed:
        self._failed = reason
        return LinkFailed(reason)


#: what receives one pipeline's replies (None: not connected, too many waiting, or lost)
Deliver = Callable[[list[Reply] | None], None]


class Callers:
    """Who waits for which pipeline on a process's one Redis connection (module docstring).
    ``link`` is the connection's ``RedisLink`` once it is ready (``up``), else None;
    ``on_state(up, reason)`` is told of each connection made and each lost or failed one."""

    def __init__(self) -> None:
        self.link: RedisLink | None = None
        self.on_state: Callable[[bool, str], None] | None = None
        self._waiting: dict[object, Deliver] = {}
        self._tags = itertools.count()
        self._backoff = Backoff()

    def up(self, link: RedisLink) -> None:
        """``link`` is connected and its greeting answered: calls may go out on it."""
        self.link = link
        self._backoff.reset()
        if self.on_state is not None:
            self.on_state(True, "")

    def ended(self, reason: str) -> float:
        """The connection is over (or could not be made), for ``reason``: every waiting
        caller gets None; the seconds to wait before the next attempt (``Backoff``)."""
        self.lost()
        if self.on_state is not None:
            self.on_state(False, reason)
        return self._backoff.next()

    def ask(self, commands: Sequence[Command], due: float, deliver: Deliver) -> bytes | None:
        """The bytes to write for a caller's pipeline, or None having delivered None at once
        (not connected, or ``MAX_PENDING`` waiting)."""
        link = self.link
        if link is None or link.full:
            deliver(None)
            return None
        tag = next(self._tags)
        self._waiting[tag] = deliver
        return link.request(tag, commands, due=due)

    def tell(self, commands: Sequence[Command], due: float) -> bytes | None:
        """The bytes of a pipeline nobody waits for, or None: not sent."""
        link = self.link
        return None if link is None or link.full else link.tell(commands, due=due)

    def received(self, link: RedisLink, data: bytes | bytearray | memoryview) -> None:
        """Bytes read from ``link``'s socket: each completed pipeline to its caller (raises
        ``LinkFailed`` as ``RedisLink.receive`` does)."""
        for tag, replies in link.receive(data):
            if (deliver := self._waiting.pop(tag, None)) is not None:
                deliver(replies)

    def lost(self) -> None:
        """The connection is gone: every waiting caller gets None."""
        self.link = None
        waiting, self._waiting = self._waiting, {}
        for deliver in waiting.values():
            deliver(None)


# -- the transports' shared policies ----------------------------------------------------------

class Backoff:
    """Reconnect delays: ``BACKOFF_FIRST``, doubling to ``BACKOFF_CAP``; ``reset`` on success."""

    def __init__(self) -> None:
        self._next = BACKOFF_FIRST

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * 2, BACKOFF_CAP)
        return delay

    def reset(self) -> None:
        self._next = BACKOFF_FIRST


_ERRNO_TEXT = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection broken",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ENOENT: "no such socket file",
    errno.EACCES: "permission denied",
}


def _leaf(exc: BaseException) -> BaseException:
    """The most telling exception behind ``exc``: into exception groups and causes, down to
    one with an errno or a TLS reason."""
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        elif getattr(exc, "errno", None) is None and not hasattr(exc, "reason") \
                and exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            break
    return exc


def failure_reason(target: RedisTarget, exc: BaseException | None) -> str:
    """The short text a transport reports for a failed connect or a lost connection:
    ``exc`` is what was raised (a ``TimeoutError`` for a connect that timed out, ``None``
    for the server closing the connection). Names the server, never the password."""
    where = target.where
    if exc is None:
        return f"{where}: Redis closed the connection"
    if isinstance(exc, LinkFailed):
        return f"{where}: {exc.reason}"
    exc = _leaf(exc)
    if isinstance(exc, TimeoutError) and getattr(exc, "errno", None) is None:
        return f"{where}: connect timed out"
    name = type(exc).__name__
    if name.startswith("SSL"):
        detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or name
        return f"{where}: TLS failed: {detail}"
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        text = _ERRNO_TEXT.get(code) or errno.errorcode.get(code, f"errno {code}")
        return f"{where}: {text}"
    return f"{where}: {name}"
