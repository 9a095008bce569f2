"""uniapi's asyncio transport: HTTP/1.1 front and upstream connections, driving the core."""

from .server import handle_connection, serve
from .upstream import UpstreamPool

__all__ = ["serve", "handle_connection", "UpstreamPool"]
