"""AWS Signature Version 4 for request headers, pure (docs/vendor-rules.md, "SigV4 canonical
request"; docs/contracts.md, REQ-6).

Theory of operation
-------------------
``sign`` computes the headers that authenticate one HTTP request against an AWS service
(Bedrock by default). It is a pure function of its arguments: the signing time is passed in
as ``amz_date`` (``YYYYMMDDTHHMMSSZ``, see ``amz_date``), so the core never reads a clock.

1. The URL is parsed with the gateway's own strict parser (``uniapi_core.http.url``), the same
   one the transports use, so the ``host`` that is signed is byte-for-byte the ``Host`` header
   that is sent (default port omitted, IPv6 bracketed; a ``base_url`` override signs correctly).
2. Canonical URI (step 2 of the docs section): the path *as it appears on the wire*, dot
   segments and repeated slashes removed (as botocore does), then every byte except the
   unreserved characters and ``/`` percent-encoded once more. A path that carries ``%3A`` (a
   Bedrock model id such as ``anthropic.claude-3-5-sonnet-20240620-v1:0`` quoted for the URL)
   is therefore signed as ``%253A`` — the double encoding AWS requires for every service
   except S3.
3. Canonical query: ``key=value`` pairs, each side decoded then re-encoded with the strict AWS
   alphabet (``A-Z a-z 0-9 - _ . ~``), sorted by key then value.
4. Canonical headers: every header given (lower-cased names; values trimmed with inner runs of
   whitespace collapsed; repeated names joined with ``,``) except hop-by-hop ones and
   ``user-agent`` (the list botocore leaves unsigned, ``UNSIGNED_HEADERS``), plus ``host``,
   ``x-amz-date`` and, with temporary credentials, ``x-amz-security-token``. All of them are
   signed, sorted by name (SignedHeaders).
5. String to sign, signing-key derivation (``AWS4``+secret → date → region → service →
   ``aws4_request``) and the ``Authorization`` header, as in steps 3–5 of the docs section.

``x-amz-content-sha256`` is optional for non-S3 services; pass ``content_sha256=True`` to send
(and sign) it. The published AWS test-suite vectors and botocore's ``SigV4Auth`` are the test
oracles (``tests/core/vendors/test_sigv4.py``).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import quote, unquote

from ..http.url import parse_url

__all__ = ["ALGORITHM", "UNSIGNED_HEADERS", "amz_date", "sign", "signing_key",
           "canonical_request", "canonical_uri", "canonical_query"]

ALGORITHM = "AWS4-HMAC-SHA256"
#: headers never signed (hop-by-hop, or rewritten by proxies); botocore's list
UNSIGNED_HEADERS = frozenset({"authorization", "connection", "expect", "keep-alive",
                              "proxy-authenticate", "proxy-authorization", "te", "trailer",
                              "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id"})
_UNRESERVED = "-_.~"


def amz_date(epoch_seconds: int) -> str:
    """``YYYYMMDDTHHMMSSZ`` (UTC) for integer Unix seconds; pure date arithmetic."""
    t = datetime.datetime.fromtimestamp(int(epoch_seconds), datetime.timezone.utc)
    return t.strftime("%Y%m%dT%H%M%SZ")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The derived SigV4 key for ``date`` (``YYYYMMDD``), region and service
    (docs/vendor-rules.md, "SigV4 canonical request", step 4)."""
    k = _hmac(("AWS4" + secret_key).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 plus AWS's removal of empty segments (botocore ``remove_dot_segments``)."""
    if not path:
        return "/"
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
        else:
            out.append(seg)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and out else ""
    return first + "/".join(out) + last


def canonical_uri(path: str) -> str:
    """The canonical URI of a wire path: normalised, then URI-encoded once more
    (docs/vendor-rules.md, "SigV4 canonical request", step 2)."""
    return quote(_remove_dot_segments(path), safe="/~")


def canonical_query(query: str) -> str:
    """The canonical query string of a raw query (without ``?``): encoded pairs, sorted."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        key, _, value = item.partition("=")
        pairs.append((quote(unquote(key), safe=_UNRESERVED),
                      quote(unquote(value), safe=_UNRESERVED)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        lname = name.lower().strip()
        if lname in UNSIGNED_HEADERS:
            continue
        v = " ".join(str(value).split())
        out[lname] = f"{out[lname]},{v}" if lname in out else v
    return out


def canonical_request(method: str, url: str, headers: Iterable[tuple[str, str]],
                      payload_hash: str) -> tuple[str, str]:
    """``(canonical request, SignedHeaders)`` for a request whose headers already include
    ``x-amz-date`` (and the token); ``host`` comes from the URL (docs/vendor-rules.md, "SigV4
    canonical request", step 2)."""
    u = parse_url(url)
    path, _, query = u.target.partition("?")
    hmap = _header_map(headers)
    hmap["host"] = u.host_header  # what the transport sends, whatever the caller passed
    names = sorted(hmap)
    signed = ";".join(names)
    lines = [method.upper(), canonical_uri(path), canonical_query(query),
             "".join(f"{n}:{hmap[n]}\n" for n in names), signed, payload_hash]
    return "\n".join(lines), signed


def sign(method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes, *,
         access_key: str, secret_key: str, session_token: str | None = None, region: str,
         service: str = "bedrock", amz_date: str, content_sha256: bool = False,
         ) -> list[tuple[str, str]]:
    """The headers to add to the request so that AWS accepts it (docs/vendor-rules.md,
    "SigV4 canonical request").

    ``headers`` are the headers that will be sent (all of them are signed, except
    ``UNSIGNED_HEADERS``; ``host`` is derived from ``url``), ``body`` the exact bytes sent.
    Returns ``x-amz-date``, ``x-amz-security-token`` (when given), ``x-amz-content-sha256``
    (when asked for) and ``authorization``, in that order. ``ValueError`` for an unusable URL.
    """
    headers = list(headers)
    payload_hash = hashlib.sha256(body).hexdigest()
    added = [("x-amz-date", amz_date)]
    if session_token:
        added.append(("x-amz-security-token", session_token))
    if content_sha256:
        added.append(("x-amz-content-sha256", payload_hash))
    added_names = {k for k, _ in added}
    base = [h for h in headers if h[0].lower() not in added_names]
    creq, signed = canonical_request(method, url, base + added, payload_hash)
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([ALGORITHM, amz_date, scope,
                                hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    signature = hmac.new(signing_key(secret_key, date, region, service),
                         string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    added.append(("authorization", f"{ALGORITHM} Credential={access_key}/{scope}, "
                                   f"SignedHeaders={signed}, Signature={signature}"))
    return added
