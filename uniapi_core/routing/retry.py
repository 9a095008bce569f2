"""The one retry-and-blame table: what a failed attempt means (docs/routing.md §7, ERR-1).

Theory of operation
-------------------
Every attempt that fails before the commit point ends as an ``UpstreamError`` with a
``kind`` (``FailureKind``: what went wrong) and, when the upstream answered, its HTTP
``upstream_status``. ``verdict(error)`` reads both against the two tables below and says:

- ``retry``: may the relay move on to the next attempt (before the commit point only)?
- ``blame``: whose fault it is — ``REQUEST`` (it would fail everywhere: answered at once,
  nothing cooled), ``KEY`` (the provider key, or the Vertex region: bench it and try the
  channel's next key first) or ``CHANNEL`` (the provider serving this model is unwell);
- ``cool_channel``: does the (provider, requested model) channel cool down
  (docs/routing.md §5)? A key-blamed failure cools the channel only when the channel has no
  untried key left (the router knows);
- ``bench_key``: does the key (or region) go on the bench (docs/routing.md §6,
  ``api_key_cooldown_period``)?

Failures without a status to judge (``KIND_ROWS``):

==================  =====  =======  ==================================================
kind                retry  blame    what
==================  =====  =======  ==================================================
``connect``         yes    channel  DNS, refused, TLS, proxy, bad URL
``reset``           yes    channel  connection lost, RST_STREAM, GOAWAY
``timeout``         yes    channel  no first byte, or a gap between chunks, in time
``eof``             yes    channel  closed before the response ended
``empty``           yes    channel  an answer without content
``truncated``       yes    channel  a stream cut before its end event
``decode``          yes    channel  a garbled body or stream
``protocol``        yes    channel  the upstream broke HTTP (or a 1xx/3xx head)
``trigger``         yes    channel  the first content matched ``error_triggers``
``head_too_large``  no     channel  a response head over 64 KiB: answered at once, yet
                                    the channel cools (as it always has)
==================  =====  =======  ==================================================

``status`` failures (the upstream answered with an error) by that status (``STATUS_ROWS``;
``upstream_status``, else the error's own ``status``):

=================  =====  ==============  ================================================
status             retry  blame           why
=================  =====  ==============  ================================================
401, 403           yes    key (Vertex:    the key may be bad: another key or channel may
                          channel)        work; a Vertex credential is the same everywhere
408, 409           yes    channel         timeout, conflict: may pass elsewhere
424                yes    channel         Bedrock's model error (a server error)
429                yes    key             the key's (or region's) quota
≥ 500 (529 too)    yes    channel         server error
any other          no     request         400, 404, 413, 422, …: wrong everywhere
=================  =====  ==============  ================================================

Only the upstream's own status blames a key: whatever the kind, an ``upstream_status`` whose
row blames the key (401/403/429; a Vertex region: 429 only) makes the failure the key's,
``bench_key`` and ``blame = KEY`` (a garbled 429 body is still the key's quota); a key row
reached through the error's own ``status`` (no ``upstream_status``) blames the channel.
``cool_channel`` is ``blame is not REQUEST``.

How many attempts a request may make in all is ``attempt_budget`` (``AUTO_RETRY``). Not
decided here: a channel that cannot even be built (a request the vendor cannot take, a Vertex
token fetch that failed) is skipped without cooling by the router (``RoutePlan``); the
transports retry a stale pooled connection or an HTTP/2 stream the server refused once on
another connection before they report anything.
"""

from __future__ import annotations

import enum

import attrs

from ..errors import FailureKind, UpstreamError

__all__ = ["FailureKind", "Blame", "Verdict", "verdict", "benches", "KIND_ROWS", "STATUS_ROWS",
           "attempt_budget", "MAX_ATTEMPTS"]


class Blame(enum.Enum):
    """Whose fault a failure is."""

    REQUEST = "request"  # wrong everywhere: never retried, nothing cooled or benched
    KEY = "key"  # the provider key or region slot: bench it, try the channel's next one
    CHANNEL = "channel"  # the (provider, model) channel: cool it, try the next channel


@attrs.frozen
class Verdict:
    """What one failure means for the retry, the key and the channel."""

    retry: bool
    blame: Blame
    cool_channel: bool
    bench_key: bool


_R, _K, _C = Blame.REQUEST, Blame.KEY, Blame.CHANNEL

#: kind -> (retry, blame), for failures judged by their kind alone
KIND_ROWS: dict[FailureKind, tuple[bool, Blame]] = {
    #  kind                          retry  blame
    FailureKind.CONNECT:            (True, _C),
    FailureKind.RESET:              (True, _C),
    FailureKind.TIMEOUT:            (True, _C),
    FailureKind.EOF:                (True, _C),
    FailureKind.EMPTY:              (True, _C),
    FailureKind.TRUNCATED:          (True, _C),
    FailureKind.DECODE:             (True, _C),
    FailureKind.PROTOCOL:           (True, _C),
    FailureKind.TRIGGER:            (True, _C),
    FailureKind.HEAD_TOO_LARGE:     (False, _C),
}

#: upstream status -> (retry, blame with provider keys, blame with Vertex region slots)
STATUS_ROWS: dict[int, tuple[bool, Blame, Blame]] = {
    #  status  retry  keys  regions
    401:      (True, _K, _C),
    403:      (True, _K, _C),
    408:      (True, _C, _C),
    409:      (True, _C, _C),
    424:      (True, _C, _C),
    429:      (True, _K, _K),
}
#: every status not in ``STATUS_ROWS``: 5xx and beyond, then the rest
_SERVER_ROW = (True, _C, _C)
_OTHER_ROW = (False, _R, _R)


def _status_row(status: int, regions: bool) -> tuple[bool, Blame]:
    row = STATUS_ROWS.get(status) or (_SERVER_ROW if status >= 500 else _OTHER_ROW)
    return row[0], row[2] if regions else row[1]


def benches(upstream_status: int | None, *, regions: bool = False) -> bool:
    """Whether an upstream status blames the key (or, with ``regions``, the region slot)."""
    return upstream_status is not None and _status_row(upstream_status, regions)[1] is _K


def verdict(error: UpstreamError, *, regions: bool = False) -> Verdict:
    """The table's answer for ``error``; ``regions``: the channel's slots are Vertex regions
    rather than provider keys."""
    kind = FailureKind(error.kind)
    if kind is FailureKind.STATUS:
        retry, blame = _status_row(error.upstream_status or error.status, regions)
    else:
        retry, blame = KIND_ROWS[kind]
    bench = benches(error.upstream_status, regions=regions)
    if bench:
        blame = _K
    elif blame is _K:  # a key status that is not the upstream's own: no key to blame
        blame = _C
    return Verdict(retry=retry, blame=blame, cool_channel=blame is not _R, bench_key=bench)


#: the most attempts one request makes, whatever the config says
MAX_ATTEMPTS = 10


def attempt_budget(auto_retry: bool | int | None) -> int:
    """How many attempts one request may make in all (``AUTO_RETRY``, docs/routing.md §7):
    ``true`` (the default) every distinct channel once, at most ``MAX_ATTEMPTS``; ``false`` one;
    a number N at most N retries after the first."""
    if auto_retry is None or auto_retry is True:
        return MAX_ATTEMPTS
    if auto_retry is False:
        return 1
    return min(1 + max(0, int(auto_retry)), MAX_ATTEMPTS)
