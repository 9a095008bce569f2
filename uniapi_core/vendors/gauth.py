"""Google service-account OAuth2 for Vertex AI: the JWT bearer grant and the token cache
(docs/vendor-rules.md, VTX-A1 and VTX-T1..T4).

Theory of operation
-------------------
*The grant* (RFC 7523; docs/vendor-rules.md). ``jwt`` signs
``{"alg":"RS256","typ":"JWT"}`` / ``{"iss": client_email, "scope": cloud-platform,
"aud": token_uri, "iat": wall, "exp": wall + 3600}`` with RSASSA-PKCS1-v1_5 / SHA-256 over
``base64url(header) "." base64url(claims)`` (no padding), using ``cryptography`` (a required
dependency, so that Vertex works after a plain install). A key that does not load is reported
as a warning when the config is loaded, and at request time as a ``GatewayError`` 500 naming
the provider's problem, never a crash.
``token_request`` is the form-encoded ``POST token_uri`` (``grant_type=urn:ietf:params:oauth:
grant-type:jwt-bearer&assertion=<jwt>``); ``parse_token_answer`` reads
``{"access_token", "expires_in"}`` or turns anything else into a 502 naming the token endpoint
and its ``error``/``error_description``. ``iat`` is the injected wall clock, never skewed
forward. PEM keys from YAML often hold literal ``\\n``: they become newlines first.

*The cache* (``TokenCache``, VTX-T1..T4) is a pure state machine on the caller's monotonic
clock, one entry per ``(client_email, token_uri, scope)``:

- ``state(key, now)``: ``FRESH`` (a token with ``now < expires_at - margin``, margin
  ``min(300 s, expires_in / 2)``), ``FLYING`` (a fetch is under way, started less than
  ``flight_timeout`` ago), ``BACKOFF`` (the last fetch failed less than ``backoff`` ago: do not
  fetch again yet) or ``IDLE`` (fetch now);
- ``begin`` claims the one fetch (single flight: whoever finds ``IDLE`` fetches, everybody
  else finding ``FLYING`` waits for the same result); ``succeed``/``fail`` end it; ``abandon``
  puts a flight whose owner went away back to ``IDLE`` so that a waiter takes over; a flight
  whose owner never reports is treated as lost after ``flight_timeout``;
- ``current`` is what an attempt is built with: the last token (even inside the refresh
  margin, when a refresh failed: it is still valid until ``expires_at``), else the failure;
- ``invalidate`` drops a token Vertex refused with 401 (VTX-T4: the next request fetches a
  new one).

The cache never holds references to requests: a waiter polls ``state`` (see
``uniapi_core/request_machine.py``), so a waiter that went away costs nothing.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import attrs

from ..errors import GatewayError, UniapiError
from ..jsonutil import dumps, loads_strict
from ..pemkey import load_private_key
from .base import UpstreamRequest

__all__ = ["CLOUD_PLATFORM", "DEFAULT_TOKEN_URI", "LIFETIME", "ServiceAccount",
           "service_account", "load_private_key", "jwt", "token_request", "parse_token_answer",
           "token_failure", "TokenCache", "FRESH", "FLYING", "BACKOFF", "IDLE"]

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LIFETIME = 3600  # exp - iat: Google's maximum
MAX_MARGIN = 300.0  # VTX-T2
#: a token answer bigger than this is not a token answer
MAX_TOKEN_ANSWER = 65536

FRESH, FLYING, BACKOFF, IDLE = "fresh", "flying", "backoff", "idle"


@attrs.frozen
class ServiceAccount:
    """The credentials of one Vertex provider (``client_email``, ``private_key``, ``token_uri``)."""

    client_email: str
    private_key: str = attrs.field(repr=False)
    token_uri: str = DEFAULT_TOKEN_URI
    scope: str = CLOUD_PLATFORM

    @property
    def key(self) -> tuple[str, str, str]:
        """The cache key (VTX-T1)."""
        return (self.client_email, self.token_uri, self.scope)


def service_account(provider: Any) -> ServiceAccount:
    """The provider's service account; ``GatewayError`` 500 when a field is missing."""
    missing = [f for f in ("project_id", "client_email", "private_key")
               if not (isinstance(getattr(provider, f), str) and getattr(provider, f).strip())]
    if missing:
        raise GatewayError(f"provider {provider.provider!r} is a Vertex provider without "
                           f"{', '.join(missing)}", status=500, code="provider_misconfigured")
    return ServiceAccount(provider.client_email.strip(), provider.private_key,
                          (provider.token_uri or "").strip() or DEFAULT_TOKEN_URI)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")



def jwt(account: ServiceAccount, iat: int) -> str:
    """The signed RS256 assertion for ``account`` issued at ``iat`` (wall seconds)."""
    key = load_private_key(account.private_key)
    from cryptography.hazmat.primitives import hashes  # on first use, as in pemkey.py
    from cryptography.hazmat.primitives.asymmetric import padding
    header = dumps({"alg": "RS256", "typ": "JWT"})
    claims = dumps({"iss": account.client_email, "scope": account.scope,
                    "aud": account.token_uri, "iat": iat, "exp": iat + LIFETIME})
    signing_input = f"{_b64url(header)}.{_b64url(claims)}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def token_request(account: ServiceAccount, wall: float,
                  headers: tuple[tuple[str, str], ...] = ()) -> UpstreamRequest:
    """``POST token_uri`` with the form-encoded JWT bearer grant."""
    body = urlencode({"grant_type": GRANT_TYPE, "assertion": jwt(account, int(wall))})
    base = (("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"))
    return UpstreamRequest("POST", account.token_uri, base + headers, body.encode("ascii"))


def parse_token_answer(account: ServiceAccount, status: int,
                       body: bytes) -> tuple[str, float]:
    """``(access_token, expires_in)``; ``GatewayError`` 502 (``token_failure``) for any other
    answer."""
    try:
        obj = loads_strict(body) if body else None
    except (ValueError, RecursionError):
        obj = None
    if status == 200 and isinstance(obj, dict) and isinstance(obj.get("access_token"), str) \
            and obj["access_token"]:
        expires = obj.get("expires_in", LIFETIME)
        if isinstance(expires, str) and expires.strip().isdigit():
            expires = int(expires)
        if isinstance(expires, bool) or not isinstance(expires, (int, float)) or \
                not expires > 0:
            expires = LIFETIME
        return obj["access_token"], float(min(expires, 86400))
    detail = f"HTTP {status}"
    if isinstance(obj, dict):
        err, desc = obj.get("error"), obj.get("error_description")
        if isinstance(err, dict):  # Google APIs' own error shape
            desc = err.get("message")  # apart: mypy types a tuple assignment item by item
            err = err.get("status") or err.get("code")
        detail += "".join(f" {v}" for v in (err, desc) if isinstance(v, (str, int)) and v)
    if status == 200 and detail == "HTTP 200":
        detail += " without an access_token"
    raise token_failure(account, detail)


def token_failure(account: ServiceAccount, detail: str) -> GatewayError:
    return GatewayError(f"the Vertex token endpoint {account.token_uri} failed for "
                        f"{account.client_email}: {detail}", status=502,
                        code="vertex_token_failed")


@attrs.define
class _Entry:
    token: str | None = None
    expires_at: float = 0.0
    margin: float = 0.0
    flight: int = 0  # the fetch under way (0: none)
    flight_started: float = 0.0
    failed_at: float | None = None
    failure: UniapiError | None = None


class TokenCache:
    """Access tokens per service account, with single-flight refresh (see the module
    docstring). Time is only the ``now`` arguments (monotonic seconds)."""

    def __init__(self, *, backoff: float = 5.0, flight_timeout: float = 40.0,
                 max_entries: int = 10_000) -> None:
        self.backoff = backoff
        self.flight_timeout = flight_timeout
        self._max = max_entries
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._flights = 0

    def _entry(self, key: tuple[str, str, str]) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self._max:  # config-bound in practice; never unbounded
                self._entries.pop(next(iter(self._entries)))
            entry = self._entries[key] = _Entry()
        return entry

    def state(self, key: tuple[str, str, str], now: float) -> tuple[str, int]:
        """``(FRESH | FLYING | BACKOFF | IDLE, flight id)``; see the module docstring."""
        e = self._entries.get(key)
        if e is None:
            return IDLE, 0
        if e.token is not None and now < e.expires_at - e.margin:
            return FRESH, 0
        if e.flight and now < e.flight_started + self.flight_timeout:
            return FLYING, e.flight
        if e.failed_at is not None and e.failed_at <= now < e.failed_at + self.backoff:
            return BACKOFF, 0
        return IDLE, 0

    def fresh(self, key: tuple[str, str, str], now: float) -> bool:
        return self.state(key, now)[0] == FRESH

    def begin(self, key: tuple[str, str, str], now: float) -> int:
        """Claim the fetch for ``key``: returns its flight id (never 0)."""
        e = self._entry(key)
        self._flights += 1
        e.flight, e.flight_started = self._flights, now
        return e.flight

    def succeed(self, key: tuple[str, str, str], flight: int, token: str, expires_in: float,
                now: float) -> None:
        e = self._entry(key)
        if e.flight == flight:
            e.flight = 0
        e.token, e.expires_at = token, now + expires_in
        e.margin = min(MAX_MARGIN, expires_in / 2)
        e.failed_at, e.failure = None, None

    def adopt(self, key: tuple[str, str, str], flight: int, token: str, fresh_for: float,
              now: float) -> None:
        """A token another process fetched (the fleet's, ``--redis-url``), fresh for
        ``fresh_for`` more seconds (its margin already taken by whoever fetched it)."""
        self.succeed(key, flight, token, fresh_for, now)
        self._entry(key).margin = 0.0

    def fail(self, key: tuple[str, str, str], flight: int, error: UniapiError,
             now: float) -> None:
        e = self._entry(key)
        if e.flight != flight:
            return  # a lost flight reporting late: a newer one decides
        e.flight = 0
        e.failed_at, e.failure = now, error
        if e.token is not None and now >= e.expires_at:
            e.token = None

    def abandon(self, key: tuple[str, str, str], flight: int) -> None:
        """The owner of ``flight`` went away before its answer: let someone else fetch."""
        e = self._entries.get(key)
        if e is not None and e.flight == flight:
            e.flight = 0

    def invalidate(self, key: tuple[str, str, str], token: str) -> None:
        """Vertex refused ``token`` (401): forget it, if it is still the cached one."""
        e = self._entries.get(key)
        if e is not None and e.token == token:
            e.token, e.expires_at = None, 0.0

    def current(self, key: tuple[str, str, str]) -> str | UniapiError | None:
        """The token to send (fresh or inside its margin), else the last failure, else None."""
        e = self._entries.get(key)
        if e is None:
            return None
        if e.token is not None:
            return e.token
        return e.failure
