"""HTTP framing for the core: sans-IO HTTP/1.1 (h11) and HTTP/2 (h2) connections, and URLs.

``server`` turns client bytes into whole HTTP/1.1 requests under the front's limits and renders
responses, ``h2server`` does the same for HTTP/2 (h2c prior knowledge and ALPN ``h2``);
``client`` and ``h2client`` do it for upstream connections (HTTP/1.1, and multiplexed HTTP/2
where the origin's ALPN picks ``h2``); ``stall`` bounds slow peers; ``url`` parses upstream URLs;
``proxy`` parses outbound proxy URLs and opens tunnels (HTTP ``CONNECT``, SOCKS5).
Nothing here does I/O: transports feed bytes and ``now`` in and write the bytes that come out.
"""

from .client import (
    ClientConnection,
    ClientEvent,
    ResponseData,
    ResponseEnd,
    ResponseHead,
    UpstreamProtocolError,
)
from .proxy import (
    ConnectHandshake,
    ProxyError,
    ProxySpec,
    Socks5Handshake,
    handshake_for,
    parse_proxy,
)
from .server import (
    ClientClosed,
    ProtocolFailure,
    RequestReceived,
    ServerConnection,
    ServerEvent,
    ServerLimits,
    clean_headers,
)
from .url import Url, parse_url, replace_path_suffix

__all__ = [
    "ClientClosed",
    "ClientConnection",
    "ClientEvent",
    "ConnectHandshake",
    "ProtocolFailure",
    "ProxyError",
    "ProxySpec",
    "RequestReceived",
    "ResponseData",
    "ResponseEnd",
    "ResponseHead",
    "ServerConnection",
    "ServerEvent",
    "ServerLimits",
    "Socks5Handshake",
    "UpstreamProtocolError",
    "Url",
    "clean_headers",
    "handshake_for",
    "parse_proxy",
    "parse_url",
    "replace_path_suffix",
]
