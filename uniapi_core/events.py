"""The vocabulary of the one door, ``Connection.handle(event, now, wall) -> actions``.

Events are facts a transport reports, in the past tense; actions are commands it performs, in
order, in the imperative. Every id is a *ref*: one id space per client connection, handed
out by the connection to relay attempts, image fetches, token POSTs and watches alike; an
event names the ref of the action it answers.

===========================================  ================================================
event                                        when
===========================================  ================================================
``ClientData(data)``                         bytes read from the client (``b""`` at EOF)
``UpstreamHead/Data/Ended/Failed(ref, …)``   the upstream exchange of ``StartUpstream`` ref
``FetchDone(ref, result)``                   the ``FetchResult`` of ``Fetch`` ref
``Notified(ref)``                            ``Watch`` ref fired (a ``Notify`` on its key)
``QueryDone(ref, result)``                   the rows (or error text) of ``Query`` ref
``Reloaded(ref, error)``                     the outcome of ``Reload`` ref (None: applied)
``Scraped(ref, files)``                      the snapshot files ``Scrape`` ref read
``SharedDone(ref, replies)``                 the Redis replies of ``RunShared`` ref (None:
                                             not connected, or none within its timeout)
``DeadlineReached()``                        ``next_deadline()`` has passed
``WriteFailed()``                            a write to the client failed or stalled past
                                             ``FrontOptions.write_stall_timeout``
``DrainStarted()``                           shutdown began: finish what is in flight
``Shed()``                                   at the connection cap, this idle connection is
                                             to make room (``http/occupancy.py``)
===========================================  ================================================

===========================================  ================================================
action                                       the transport…
===========================================  ================================================
``Write(data)``                              writes the bytes (never empty) to the client,
                                             before it handles the next event
``StartUpstream(ref, request, proxy, …)``    runs an upstream exchange, reporting its events
``StopUpstream(ref)``                        cancels whatever runs for ref (an exchange, a
                                             fetch or a watch), closing its connection
``PauseUpstream(ref)``                       stops reading that exchange's upstream until
``ResumeUpstream(ref)``                      (HTTP/2 flow control: R5 backpressure)
``Fetch(ref, url, allow_private, …)``        GETs an image (``ssrf.pick_address``), reports
                                             ``FetchDone``
``Watch(ref, key)``                          reports ``Notified(ref)`` at the next ``Notify``
``Notify(key)``                              of ``key`` by any connection of the process
``Query(ref, work)``                         runs ``work.apply(conn)`` on the process's stats
                                             store in a worker thread, reports ``QueryDone``
``Reload(ref)``                              hot-reloads the process's config (as SIGHUP
                                             does), reports ``Reloaded``
``Scrape(ref, directory)``                   reads the other workers' metrics snapshots
                                             (``--workers``), reports ``Scraped``
``RunShared(ref, commands, timeout)``        runs a pipeline on the process's shared-state
                                             Redis (``--redis-url``), reports ``SharedDone``
``TellShared(commands)``                     sends a pipeline to it; nobody waits for replies
``Served(record)``                           logs one finished request
``Close(linger)``                             closes the client connection; it is over
                                             (``linger``: half-close, drain, then close)
===========================================  ================================================
"""

from __future__ import annotations

import attrs

from .request_machine import (
    Fetch,
    FetchDone,
    FetchResult,
    Notified,
    Notify,
    Query,
    QueryDone,
    Reload,
    Reloaded,
    Scrape,
    Scraped,
    Served,
    ServedRecord,
    StartUpstream,
    StopUpstream,
    UpstreamEvent,
    Watch,
)
from .relay.actions import RunShared, TellShared
from .relay.events import (DeadlineReached, SharedDone, UpstreamData, UpstreamEnded,
                           UpstreamFailed, UpstreamHead)

__all__ = ["ClientData", "WriteFailed", "DrainStarted", "Shed", "DeadlineReached", "UpstreamHead",
           "UpstreamData", "UpstreamEnded", "UpstreamFailed", "UpstreamEvent", "FetchDone",
           "FetchResult", "Notified", "Event", "Write", "Close", "StartUpstream",
           "StopUpstream", "PauseUpstream", "ResumeUpstream", "Fetch", "Watch", "Notify",
           "Query", "QueryDone", "Reload", "Reloaded", "Scrape", "Scraped", "Served", "ServedRecord", "Action",
           "RunShared", "TellShared", "SharedDone", "merge_writes", "LINGER_TIME",
           "LINGER_BYTES"]


@attrs.frozen
class ClientData:
    """Bytes from the client; ``b""``: it closed its side (EOF)."""

    data: bytes


@attrs.frozen
class WriteFailed:
    """Writing to the client failed, or stalled too long: it is gone."""


@attrs.frozen
class DrainStarted:
    """Graceful shutdown began: HTTP/1.1 closes when idle, HTTP/2 refuses new streams."""


@attrs.frozen
class Shed:
    """The process is at its connection cap and chose this idle connection to make room
    (``http/occupancy.py``): close it now if it is still idle, as at a drain."""


@attrs.frozen
class Write:
    data: bytes


@attrs.frozen
class Close:
    """Close the client connection; the connection machine is over. ``linger``: the client
    may still be sending (a refused request, a keep-alive the server ends, a GOAWAY), so the
    transport half-closes its side once everything written is sent, then reads and drops what
    comes for at most ``LINGER_TIME`` seconds and ``LINGER_BYTES`` bytes before closing (nginx's
    lingering close): closing with unread bytes would reset the connection, and the client
    would lose the answer it has not read yet."""

    linger: bool = False


#: the longest a lingering close waits for the client's end (seconds), and the most it reads
LINGER_TIME = 2.0
LINGER_BYTES = 16 << 20


@attrs.frozen
class PauseUpstream:
    """Stop reading upstream exchange ``ref`` until ``ResumeUpstream(ref)``: its client
    stream has more than ``H2Limits.stream_buffer`` bytes waiting on flow control."""

    ref: int


@attrs.frozen
class ResumeUpstream:
    ref: int


Event = (ClientData | UpstreamHead | UpstreamData | UpstreamEnded | UpstreamFailed | FetchDone
         | Notified | QueryDone | Reloaded | Scraped | DeadlineReached | WriteFailed
         | DrainStarted | SharedDone | Shed)
Action = (Write | Close | StartUpstream | StopUpstream | PauseUpstream | ResumeUpstream | Fetch
          | Watch | Notify | Query | Reload | Scrape | Served | RunShared | TellShared)


def merge_writes(actions: list[Action]) -> list[Action]:
    """Consecutive ``Write``s as one (a response head and its body: one send, one packet), and
    every ``Watch`` first (registered before a write lets another connection run)."""
    writes = watches = 0
    for a in actions:
        cls = type(a)
        writes += cls is Write
        watches += cls is Watch
    if writes < 2 and not watches:
        return actions
    out: list[Action] = [a for a in actions if type(a) is Watch]
    for action in actions:
        if type(action) is Watch:
            continue
        if type(action) is Write and out and type(out[-1]) is Write:
            out[-1] = Write(out[-1].data + action.data)
        else:
            out.append(action)
    return out
