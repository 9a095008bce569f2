"""uniapi's asyncio transport: the HTTP/1.1 and HTTP/2 front (cleartext or TLS) and the
upstream connections (HTTP/1.1 pool, multiplexed HTTP/2, proxies), driving the core. Byte for
byte it behaves as the trio twin does (``tests/e2e/test_identical_bytes.py``)."""

from .server import handle_connection, serve
from .upstream import UpstreamPool

__all__ = ["serve", "handle_connection", "UpstreamPool"]
