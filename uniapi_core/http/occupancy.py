"""Which client connections a process holds, which of them are idle, and whom to shed.

Theory of operation
-------------------
A process serves at most ``cap`` client connections (``--max-connections``). A flood of
connections that never send a request (or keep-alive connections that sit between requests)
would otherwise fill the cap and lock every new client out until the head or keep-alive
timeout reaps them. Under that pressure nginx drops its idle keep-alive connections first, and
Envoy's overload manager sheds idle connections; this is the same rule:

- ``opened(now)`` is asked for every accepted connection. Under the cap it is admitted. At the
  cap, the connection idle the longest (no request yet, or between requests) is shed to make
  room — its ``shedders`` entry is called, with which the transport posts it ``Shed``, and the
  connection closes if it is still idle — and the newcomer is admitted; only when no
  connection is idle is the newcomer refused. A connection mid-request or mid-stream is never
  shed.
- A connection says when it becomes idle (``idle(id, now)``) and busy (``busy(id)``), and
  ``closed(id)`` when it is over; ``connection.Connection`` does it after each event.

Admitting the newcomer while its victim is still closing lets the count pass the cap by the
victims in flight (and by a victim that got a request before its ``Shed`` and is ``kept``);
at ``2 × cap`` open connections newcomers are refused until some are gone, so that is the
most ever open. ``shed`` and ``refused`` count what happened, for ``/metrics``. No clock is read: times
are the ``now`` arguments.

Before the cap is reached, idle connections also get less time, as Envoy's overload manager
scales its idle timers: ``idle_deadline(id, deadline)`` shrinks an idle connection's deadline
(the head timeout while it has sent nothing, the keep-alive timeout between requests) by
``scale()``, which is 1 up to ``SHRINK_FROM`` of the cap and falls linearly to ``SHRINK_TO``
at the cap. ``connection.Connection`` asks it each time its deadline is asked, and closes an
idle connection whose shrunk deadline has passed as it closes a shed one. A head or body that
has started, and a response in flight, keep their own timeouts. An idle connection asks only
when it hears something, so when the load rises into a higher of ``SHRINK_BANDS`` bands the
idle connections are woken (their ``wakers`` entry, with which the transport posts them
``DeadlineReached``) to look again; after a wake, a fall and a rise within ``WAKE_EVERY`` do
not wake them again, so load wavering at a band's edge costs at most one round a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Occupancy", "TRIM_AFTER", "TRIM_PEAK", "TRIM_EVERY", "SHRINK_FROM", "SHRINK_TO",
           "SHRINK_BANDS", "WAKE_EVERY"]

#: the fewest connections open at once that make a burst worth trimming after
TRIM_PEAK = 64
#: the least time between two trims (seconds)
TRIM_EVERY = 1.0
#: how long after the burst's end the trim is made (seconds)
TRIM_AFTER = 1.0
#: the share of the cap open from which idle connections' timeouts shrink
SHRINK_FROM = 0.5
#: what idle connections' timeouts are multiplied by at the cap (10 s → 0.5 s, 75 s → 3.75 s)
SHRINK_TO = 0.05
#: bands of load between SHRINK_FROM and the cap; rising into a higher one wakes the idle
SHRINK_BANDS = 8
#: the least time after a wake before a fall and rise of the load wakes the idle again (s)
WAKE_EVERY = 1.0


class Occupancy:
    """The process's client connections (module docstring)."""

    def __init__(self, cap: int, metrics: Callable[[], Any] = lambda: None) -> None:
        """``metrics``: the process's current ``ops.metrics.Metrics`` (or None), told of each
        refusal (a shed connection tells them itself, when it closes for it)."""
        if cap < 1:
            raise ValueError("the connection cap is at least 1")
        self.cap = cap
        self._metrics = metrics
        self._open: set[int] = set()
        #: idle connections, the longest idle first (a dict keeps insertion order)
        self._idle: dict[int, float] = {}
        self._shedding: set[int] = set()  # told to close, not closed yet
        self._next = 0
        #: connection id -> what posts it ``Shed`` (registered by the transport)
        self.shedders: dict[int, Callable[[], None]] = {}
        #: connection id -> what posts it ``DeadlineReached`` (registered by the transport)
        self.wakers: dict[int, Callable[[], None]] = {}
        self._band = -1  # the highest load band the idle were woken for
        self._woken = -WAKE_EVERY
        self._peak = 0  # the most open at once since the last trim
        self._trimmed = -TRIM_EVERY
        self.shed = 0  #: connections shed to make room, since start
        self.refused = 0  #: connections refused at the cap (none idle), since start

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, now: float) -> int | None:
        """A connection was accepted: its id, or None when it is refused (at the cap, none
        idle). Makes room by shedding the longest idle connection when at the cap."""
        if len(self._open) - len(self._shedding) >= self.cap:
            if not self._idle or len(self._open) >= 2 * self.cap:  # a cap's worth closing
                self.refused += 1
                if (metrics := self._metrics()) is not None:
                    metrics.connection_refused()
                return None
            victim = next(iter(self._idle))
            del self._idle[victim]
            self._shedding.add(victim)
            self.shed += 1
            if (shed := self.shedders.get(victim)) is not None:
                shed()
        self._next += 1
        conn = self._next
        self._open.add(conn)
        self._peak = max(self._peak, len(self._open))
        self._idle[conn] = now  # nothing sent yet: idle until its first request
        self._wake(now)
        return conn

    def _wake(self, now: float) -> None:
        """Wake the idle when the load rose into a higher band (module docstring)."""
        load = (len(self._open) - len(self._shedding)) / self.cap
        band = -1 if load <= SHRINK_FROM else min(
            SHRINK_BANDS, int((load - SHRINK_FROM) / (1.0 - SHRINK_FROM) * SHRINK_BANDS))
        if band > self._band:
            self._band, self._woken = band, now
            for conn in list(self._idle):
                if (wake := self.wakers.get(conn)) is not None:
                    wake()
        elif band < self._band and now >= self._woken + WAKE_EVERY:
            self._band = band

    def scale(self) -> float:
        """What idle connections' timeouts are multiplied by now (module docstring)."""
        load = (len(self._open) - len(self._shedding)) / self.cap
        if load <= SHRINK_FROM:
            return 1.0
        return max(SHRINK_TO, SHRINK_TO + (1.0 - SHRINK_TO) * (1.0 - load) / (1.0 - SHRINK_FROM))

    def idle_deadline(self, conn: int, deadline: float) -> float:
        """``deadline``, a connection's own, shrunk by ``scale()`` when ``conn`` is idle:
        the time it has been idle counts from when it became idle."""
        since = self._idle.get(conn)
        if since is None or deadline <= since:
            return deadline
        scale = self.scale()
        return deadline if scale >= 1.0 else since + (deadline - since) * scale

    def idle(self, conn: int, now: float) -> None:
        """``conn`` has no request in progress from ``now`` on (an idle connection that just
        served a request whole, in one event, is idle anew: its idle time restarts)."""
        if conn in self._open and conn not in self._shedding:
            self._idle.pop(conn, None)
            self._idle[conn] = now

    def busy(self, conn: int) -> None:
        """``conn`` is serving a request (or receiving one)."""
        self._idle.pop(conn, None)

    def kept(self, conn: int) -> None:
        """``conn`` was chosen to make room but had a request by then: it stays, and counts
        again."""
        if conn in self._shedding:
            self._shedding.discard(conn)
            self.shed -= 1

    def trim_due(self, now: float) -> bool:
        """Whether to return freed memory to the system now (module docstring)."""
        if (self._peak >= TRIM_PEAK and len(self._open) * 16 <= self._peak
                and now >= self._trimmed + TRIM_EVERY):
            self._peak, self._trimmed = len(self._open), now
            return True
        return False

    def closed(self, conn: int) -> None:
        """``conn`` is over (however it ended; saying it twice is harmless)."""
        self.shedders.pop(conn, None)
        self.wakers.pop(conn, None)
        self._open.discard(conn)
        self._idle.pop(conn, None)
        self._shedding.discard(conn)
