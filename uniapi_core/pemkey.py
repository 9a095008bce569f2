"""PEM text to an RSA private key, for the Vertex service-account JWT.

On the lowest floor because two floors need it: the config loader checks a Vertex
``private_key`` when the file is read (a warning with its YAML path and line, not a surprise at
the first request), and ``vendors/gauth.py`` signs with it. Keys pasted into YAML often carry
literal ``\\n``; they become newlines first.

``cryptography`` is a required dependency but is imported on first use: its OpenSSL bindings
cost about 7 MB of resident memory, which a gateway without a Vertex provider never needs.
"""

from __future__ import annotations

from typing import Any

from .errors import GatewayError

__all__ = ["load_private_key"]


def load_private_key(pem: str) -> Any:
    """The RSA private key of a PEM text; ``GatewayError`` 500 (``provider_misconfigured``)
    for anything that is not a readable, unencrypted RSA private key."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    text = pem.replace("\\n", "\n").strip() + "\n"
    try:
        key = load_pem_private_key(text.encode("utf-8"), password=None)
    except Exception:  # ValueError, TypeError, UnicodeError, UnsupportedAlgorithm and friends
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GatewayError("the Vertex service account's private_key is not a readable RSA "
                           "private key in PEM form", status=500, code="provider_misconfigured")
    return key
