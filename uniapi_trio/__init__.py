"""uniapi's trio transport: the front and the upstream connections, driving the core."""

from .server import handle_connection, serve
from .upstream import UpstreamPool

__all__ = ["serve", "handle_connection", "UpstreamPool"]
