"""Redis, spoken sans-IO, for the shared state of a fleet of gateway processes
(docs/scale-out.md): the RESP2 codec (``resp.py``), ``REDIS_URL`` parsing (``url.py``), one
connection's protocol state (``link.py``: greeting, pipelining, NOSCRIPT reload) that a
transport's ``SharedRedis`` drives, and the one Lua script of every shared decision
(``script.py``). Bytes in, replies out; no sockets.
"""

from __future__ import annotations

from .link import LinkFailed, RedisLink
from .resp import Reply, RespError, RespParser, RespProtocolError, encode_command
from .script import SHA, SOURCE
from .url import RedisTarget, parse_redis_url

__all__ = ["Reply", "RespError", "RespParser", "RespProtocolError", "encode_command",
           "LinkFailed", "RedisLink", "RedisTarget", "parse_redis_url", "SHA", "SOURCE"]
