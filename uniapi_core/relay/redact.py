"""Keep an attempt's credentials out of what the client and the logs see (R9).

Upstreams quote what they received in their errors ("Incorrect API key provided: sk-…"),
and some quote it whole. Before an upstream error becomes the client's answer or an error
event, every credential the attempt sent — auth header values (and, of an AWS SigV4 one, the access
key id and the signature on their own), and keys carried in the URL's query (Gemini's
``?key=``) — is replaced by a mask that keeps only its last four characters.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from ..vendors.base import UpstreamRequest

__all__ = ["credentials", "redact"]

_AUTH_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key",
                 "x-goog-api-key", "x-amz-security-token", "cf-aig-authorization"}
_QUERY_KEYS = {"key", "api_key", "api-key", "apikey", "access_token", "token"}
_SCHEMES = ("bearer ", "basic ", "token ")
_SHORTEST = 8  # shorter values would mask ordinary words
#: the parts of an AWS SigV4 ``Authorization`` value an upstream may quote on their own: the
#: access key id (``Credential=AKIA…/date/region/service/aws4_request``) and the signature
_SIGV4_PARTS = re.compile(r"(?:Credential=([^/,\s]+)|Signature=([0-9A-Fa-f]+))")


def credentials(request: UpstreamRequest) -> list[str]:
    """The secret strings ``request`` carries, longest first."""
    found: set[str] = set()
    for name, value in request.headers:
        if name.lower() in _AUTH_HEADERS:
            value = value.strip()
            if value.lower().startswith(_SCHEMES):
                value = value.split(" ", 1)[1].strip()
            found.add(value)
            if value.startswith("AWS4-"):
                found.update(part for pair in _SIGV4_PARTS.findall(value) for part in pair)
    try:
        query = urlsplit(request.url).query
    except ValueError:
        query = ""
    for name, value in parse_qsl(query, keep_blank_values=False):
        if name.lower() in _QUERY_KEYS:
            found.add(value)
    return sorted((s for s in found if len(s) >= _SHORTEST), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***" + secret[-4:])
    return text
