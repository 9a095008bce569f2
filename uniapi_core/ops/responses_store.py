"""Stored responses of ``POST /v1/responses``: what ``previous_response_id``,
``GET /v1/responses/{id}`` and ``DELETE /v1/responses/{id}`` read, in the stats database.

Sans-IO like ``ops/stats.py``, whose ``DbWork``/``Stmt``/``Dialect`` it uses: each function
gives a ``DbWork`` the transport runs (``StoreSession.run``) and a pure function turns the
work's rows into the answer. No clock (``created`` and ``now`` are wall seconds passed in),
no environment, no I/O.

The table ``uniapi_responses`` is created by schema version 2 (``stats.MIGRATIONS``): one row
per stored response, keyed by the response id (``resp_…``), owned by the client key's digest
label (``k-…``, never the key), kept until ``expires`` (``created`` + the TTL,
``preferences.responses_ttl``; ``DEFAULT_TTL`` is 30 days).

Design: a row keeps the FULL input items of its request, that is the conversation so far
(the items of the response it continued from, already prepended by the caller, then the new
input), and the output items. ``conversation(stored)`` (input then output) is therefore the
whole history a continuation prepends to its new input: a chain of any length needs one
lookup, never a walk up ``previous_id`` (kept for information only), and a response still
works when an earlier one of its chain expired or was deleted. The price is that each row
repeats its chain's history; ``MAX_STORED_BYTES`` bounds one row.

A row another key owns, an expired row and a missing row are the same "not found" to every
read and delete: a client can never learn that somebody else's id exists. Expired rows are
invisible at once; ``expire_work`` (run periodically, bounded per call) reclaims their space.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, TypeGuard

import attrs

from ..jsonutil import dumps
from .stats import DbWork, Dialect, Stmt

__all__ = [
    "COLUMNS",
    "DEFAULT_TTL",
    "MAX_ID_CHARS",
    "MAX_STORED_BYTES",
    "RESPONSES",
    "ResponseTooLarge",
    "StoredResponse",
    "conversation",
    "delete_work",
    "deleted",
    "expire_work",
    "expired",
    "load_work",
    "loaded",
    "save_work",
]

#: the table (created by schema version 2 in ``stats.MIGRATIONS``)
RESPONSES = "uniapi_responses"
COLUMNS = ("id", "client_key", "created", "expires", "model", "status", "input_items",
           "output_items", "response", "previous_id")
#: ``preferences.responses_ttl``'s default: 30 days, OpenAI's retention of stored responses
DEFAULT_TTL = 30 * 86400.0
#: the largest stored row: UTF-8 bytes of the JSON of the input items, output items and
#: response object together. A larger response is not stored (``save_work`` raises
#: ``ResponseTooLarge``): it is answered as usual but cannot be continued or fetched. 8 MiB
#: keeps one row well under what either engine handles comfortably in one statement, while a
#: long agent conversation (hundreds of turns of tool calls) still fits.
MAX_STORED_BYTES = 8 * 1024 * 1024
#: the longest response id or client key label stored; a longer one is refused on save and
#: never found on load or delete (PostgreSQL's btree index refuses very long keys)
MAX_ID_CHARS = 256
#: ``model`` and ``status`` are cut to this many characters (as the stats rows' texts)
MAX_TEXT = 256

_NEVER = ""  # the id or key a refused text becomes in a lookup: never stored, never found


class ResponseTooLarge(ValueError):
    """The response's JSON is over ``MAX_STORED_BYTES``: not stored."""

    def __init__(self, size: int, limit: int = MAX_STORED_BYTES) -> None:
        super().__init__(f"response too large to store: {size} bytes of JSON, limit {limit}")
        self.size = size
        self.limit = limit


@attrs.frozen
class StoredResponse:
    """One stored response, its JSON decoded. ``input_items`` is the whole conversation
    before it (see the module's docstring); ``response`` is the object ``GET`` answers."""

    id: str
    client_key: str
    created: float
    expires: float
    model: str | None
    status: str
    input_items: list[Any]
    output_items: list[Any]
    response: dict[str, Any]
    previous_id: str | None


# --- texts -----------------------------------------------------------------------------------

def _storable(value: object) -> TypeGuard[str]:
    """A text both engines store and compare as is: no NUL (PostgreSQL refuses it), valid
    UTF-8 (no lone surrogate), non-empty, at most ``MAX_ID_CHARS``."""
    if type(value) is not str or not 0 < len(value) <= MAX_ID_CHARS or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ident(name: str, value: object) -> str:
    if not _storable(value):
        raise ValueError(f"{name} must be a text of 1 to {MAX_ID_CHARS} characters without "
                         f"NUL or lone surrogates, not {value!r:.80}")
    return value


def _lookup(value: object) -> str:
    """An id or key to look up: one that could not have been stored finds nothing."""
    return value if _storable(value) else _NEVER


def _text(value: object) -> str | None:
    """A free text made storable: NUL and lone surrogates replaced, cut to ``MAX_TEXT``."""
    if value is None:
        return None
    text = (value if isinstance(value, str) else str(value))[:MAX_TEXT].replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _json(name: str, value: Any) -> bytes:
    try:
        return dumps(value)  # compact UTF-8; lone surrogates written as ASCII escapes
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{name} is not storable JSON: {exc}"[:300]) from None


# --- works -----------------------------------------------------------------------------------

def _insert_sql() -> str:
    # ON CONFLICT DO NOTHING as the stats rows: a save retried after a commit the transport
    # did not see is stored once (response ids are unique, so nothing else ever conflicts)
    return (f"INSERT INTO {RESPONSES} ({', '.join(COLUMNS)}) VALUES "
            f"({', '.join('?' for _ in COLUMNS)}) ON CONFLICT DO NOTHING")


def save_work(dialect: Dialect, *, response_id: str, client_key: str, created: float,
              ttl: float, model: str | None, status: str, input_items: Sequence[Any],
              output_items: Sequence[Any], response: dict[str, Any],
              previous_id: str | None) -> DbWork:
    """Store one response until ``created + ttl`` (wall seconds).

    ``input_items`` is the full conversation the request answered (a continuation's caller
    has already prepended ``conversation()`` of the previous response; a text ``input`` is
    given as its message item), ``output_items`` the response's output, ``response`` the
    whole response object. Raises ``ResponseTooLarge`` when their JSON is over
    ``MAX_STORED_BYTES``, and ``ValueError`` for an id or key that cannot be stored (empty,
    over ``MAX_ID_CHARS``, NUL, lone surrogate), a ``ttl`` or ``created`` that is not a
    finite number (``ttl`` > 0), or values that are not JSON; ``TypeError`` when the items
    are not lists or ``response`` not a dict."""
    rid = _ident("response_id", response_id)
    key = _ident("client_key", client_key)
    if not (isinstance(created, int | float) and math.isfinite(created)):
        raise ValueError(f"created must be a finite number, not {created!r}")
    if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be a finite number of seconds > 0, not {ttl!r}")
    if not isinstance(input_items, list | tuple) or not isinstance(output_items, list | tuple):
        raise TypeError("input_items and output_items must be lists of items")
    if not isinstance(response, dict):
        raise TypeError("response must be the response object (a dict)")
    encoded = [_json("input_items", list(input_items)), _json("output_items", list(output_items))]
    size = len(encoded[0]) + len(encoded[1])
    if size > MAX_STORED_BYTES:  # do not encode the response when the items alone are over
        raise ResponseTooLarge(size)
    encoded.append(_json("response", response))
    size += len(encoded[2])
    if size > MAX_STORED_BYTES:
        raise ResponseTooLarge(size)
    expires = float(created) + float(ttl)
    if not math.isfinite(expires):
        raise ValueError(f"created + ttl is not a finite time: {created!r} + {ttl!r}")
    inp, out, obj = (data.decode("utf-8") for data in encoded)
    row = (rid, key, float(created), expires, _text(model),
           _text(status) or "", inp, out, obj, None if previous_id is None else _text(previous_id))
    return DbWork((Stmt(dialect.sql(_insert_sql()), row),), begin=dialect.begin_write)


def load_work(dialect: Dialect, response_id: str, client_key: str, now: float) -> DbWork:
    """Read response ``response_id`` of ``client_key`` if it has not expired at ``now``;
    ``loaded`` reads the answer."""
    sql = (f"SELECT {', '.join(COLUMNS)} FROM {RESPONSES} "
           "WHERE id = ? AND client_key = ? AND expires > ?")
    return DbWork((Stmt(dialect.sql(sql), (_lookup(response_id), _lookup(client_key),
                                          float(now))),),
                  begin=dialect.begin_read)


def loaded(results: Sequence[Sequence[Sequence[Any]]]) -> StoredResponse | None:
    """The response ``load_work`` found (``results``: what the work's ``apply`` returned), or
    None: missing, expired, another key's (indistinguishable), or a row whose JSON does not
    decode to the stored shapes (treated as gone: the client starts afresh)."""
    rows = results[0] if results else ()
    if not rows:
        return None
    (rid, key, created, expires, model, status, inp, out, obj, previous) = rows[0]
    try:
        input_items, output_items, response = json.loads(inp), json.loads(out), json.loads(obj)
    except (TypeError, ValueError, RecursionError):
        return None
    if not (isinstance(input_items, list) and isinstance(output_items, list)
            and isinstance(response, dict)):
        return None
    return StoredResponse(id=rid, client_key=key, created=float(created), expires=float(expires),
                          model=model, status=status, input_items=input_items,
                          output_items=output_items, response=response, previous_id=previous)


def conversation(stored: StoredResponse) -> list[Any]:
    """What a continuation (``previous_response_id``) prepends to its new input: the stored
    input items (already the whole conversation before it) then its output items."""
    return [*stored.input_items, *stored.output_items]


def delete_work(dialect: Dialect, response_id: str, client_key: str, *,
                now: float | None = None) -> DbWork:
    """Delete response ``response_id`` if ``client_key`` owns it; ``deleted`` says whether
    there was one. With ``now``, an expired row (not yet reclaimed by ``expire_work``) is
    deleted too but counts as not found, as ``load_work`` would have said."""
    params: tuple[Any, ...] = (_lookup(response_id), _lookup(client_key))
    where = "id = ? AND client_key = ?"
    found = f"SELECT id FROM {RESPONSES} WHERE {where}"
    found_params = params
    if now is not None:
        found += " AND expires > ?"
        found_params = (*params, float(now))
    if dialect.name == "postgres":
        found += " FOR UPDATE"  # two deletes at once: the second waits and finds nothing
    return DbWork((Stmt(dialect.sql(found), found_params),
                   Stmt(dialect.sql(f"DELETE FROM {RESPONSES} WHERE {where}"), params)),
                  begin=dialect.begin_write)


def deleted(results: Sequence[Sequence[Sequence[Any]]]) -> bool:
    """Did ``delete_work`` delete a response of its key (False: not found)."""
    return bool(results and results[0])


def expire_work(dialect: Dialect, now: float, limit: int = 1000) -> DbWork:
    """Delete up to ``limit`` responses expired at ``now`` (oldest first), for a periodic
    cleanup; ``expired`` gives how many were due in this batch (``limit``: more may remain,
    run it again soon). Bounded so that one call never holds the write lock for long."""
    if type(limit) is not int or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, not {limit!r}")
    due = f"SELECT id FROM {RESPONSES} WHERE expires <= ? ORDER BY expires LIMIT ?"
    count = f"SELECT COUNT(*) FROM ({due}) due"
    if dialect.name == "postgres":
        due += " FOR UPDATE SKIP LOCKED"  # instances cleaning at once never wait on each other
    params = (float(now), limit)
    return DbWork((Stmt(dialect.sql(count), params),
                   Stmt(dialect.sql(f"DELETE FROM {RESPONSES} WHERE id IN ({due})"), params)),
                  begin=dialect.begin_write)


def expired(results: Sequence[Sequence[Sequence[Any]]]) -> int:
    """How many expired responses ``expire_work``'s batch found (and deleted, unless another
    instance's cleanup took them at the same moment)."""
    return int(results[0][0][0]) if results and results[0] else 0
