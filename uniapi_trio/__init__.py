"""uniapi's trio transport: HTTP/1.1 front on h11 and upstream connections, driving the core."""

from .server import handle_connection, serve
from .upstream import UpstreamPool

__all__ = ["serve", "handle_connection", "UpstreamPool"]
