"""When is a client that is being written to stalled? A pure rule both transports sample.

A write to a slow client may take long: the kernel's send buffer (autotuned up to 4 MiB on
Linux) drains only as fast as the client reads, and a socket is reported writable again only
once a good part of it has drained. Timing each write whole would drop a client that reads
slowly but steadily (R5, docs/contracts.md). Nor does the kernel's unsent queue tell: the
transport refills it as it drains. So a write is *stalled* only when, for ``timeout`` seconds,
the client has acknowledged no new byte (``delivered``: a counter that only grows, the
kernel's ``tcpi_bytes_acked`` on Linux).

The transport calls ``begin(now)`` when a write starts and ``end()`` when it completes, and
samples ``stalled(now, delivered)`` every ``interval`` seconds while ``writing``; True means:
give up on this client. ``delivered`` is ``bytes_acked`` of the socket's ``TCP_INFO`` (read
with ``getsockopt(IPPROTO_TCP, TCP_INFO, TCP_INFO_SIZE)``), None where there is none.
"""

from __future__ import annotations

import struct

__all__ = ["WriteWatch", "TCP_INFO_SIZE", "bytes_acked"]

#: bytes of ``struct tcp_info`` to ask the kernel for
TCP_INFO_SIZE = 256
#: offset of ``tcpi_bytes_acked`` (a u64) in Linux's ``struct tcp_info``
_BYTES_ACKED = 120


def bytes_acked(info: bytes) -> int | None:
    """The bytes the peer has acknowledged, from a ``TCP_INFO`` answer (None if too short)."""
    if len(info) < _BYTES_ACKED + 8:
        return None
    return int(struct.unpack_from("Q", info, _BYTES_ACKED)[0])


class WriteWatch:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.interval = timeout / 4  #: how often to sample ``stalled`` while writing
        self.writing = False
        self._since = 0.0  # last time the client took bytes (or the write began)
        self._high: int | None = None  # the largest ``delivered`` seen

    def begin(self, now: float) -> None:
        if not self.writing:
            self.writing = True
            self._since = now

    def end(self) -> None:
        self.writing = False

    def stalled(self, now: float, delivered: int | None) -> bool:
        """``delivered``: bytes the client has taken so far on this connection, or None when
        it cannot be known (then only the time since the write began counts)."""
        if not self.writing:
            return False
        if delivered is not None:
            if self._high is not None and delivered > self._high:
                self._since = now  # progress
            self._high = delivered if self._high is None else max(self._high, delivered)
        return now - self._since >= self.timeout
