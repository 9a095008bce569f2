"""Redis, spoken sans-IO: the RESP2 codec (``resp.py``) a transport's Redis link will drive
for the scale-out of shared state across gateway processes. Bytes in, replies out; no sockets.
"""

from __future__ import annotations

from .resp import Reply, RespError, RespParser, RespProtocolError, encode_command

__all__ = ["Reply", "RespError", "RespParser", "RespProtocolError", "encode_command"]
