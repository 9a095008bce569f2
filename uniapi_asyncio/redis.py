"""The shared Redis connection on asyncio: the I/O of the core's ``RedisLink``, which decides
what is written and whose replies the bytes read are (uniapi_core/redis/link.py).

``run`` is the background task. Per connection it reads (feeding the link, waking the callers)
while a watchdog task drops a wedged server; ``call`` and ``tell`` write with the transport's
synchronous ``write``, so pipelines go out whole and in the order the link produced them. Any
failure wakes every caller with ``None`` and ``run`` reconnects after the core's backoff."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence

from uniapi_core.redis.link import (CONNECT_TIMEOUT, READ_SIZE, WATCH_EVERY, Callers,
                                    Command, Deliver, LinkFailed, RedisLink, failure_reason)
from uniapi_core.redis.resp import Reply
from uniapi_core.redis.url import RedisTarget

__all__ = ["SharedRedis"]


class SharedRedis:
    """One Redis connection shared by a process's tasks; see the module docstring."""

    def __init__(self, target: RedisTarget, scripts: Sequence[str] = (), *,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.target, self.scripts, self.connect_timeout = target, tuple(scripts), connect_timeout
        self.callers = Callers()  # the core's: who waits for which pipeline
        self._writer: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        return self.callers.link is not None

    def ask(self, commands: Sequence[Command], timeout: float, deliver: Deliver) -> None:
        """Send a pipeline; ``deliver(replies)`` runs when they are read, or with None at once
        when not connected (or full), or once the connection is lost. No task, no timer: the
        core gives up on its own deadline and ignores a late answer."""
        due = asyncio.get_running_loop().time() + timeout
        if (data := self.callers.ask(commands, due, deliver)) is not None:
            self._writer.write(data)  # type: ignore[union-attr]

    async def call(self, commands: Sequence[Command], timeout: float) -> list[Reply] | None:
        """The replies of a pipeline, or None: not connected, lost, or none within
        ``timeout``."""
        waiter = asyncio.get_running_loop().create_future()
        self.ask(commands, timeout,
                 lambda replies: None if waiter.done() else waiter.set_result(replies))
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None

    def tell(self, commands: Sequence[Command]) -> None:
        due = asyncio.get_running_loop().time()
        if (data := self.callers.tell(commands, due)) is not None:
            self._writer.write(data)  # type: ignore[union-attr]

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.callers.ended(await self._connection()))
        finally:
            self.callers.lost()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        t = self.target
        if t.kind == "unix":
            return await asyncio.open_unix_connection(t.path, limit=READ_SIZE)
        context = None
        if t.kind == "tls":
            context = ssl.create_default_context(cafile=t.ca_file)
            if not t.verify:
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(
            t.host, t.port, ssl=context, server_hostname=t.host if context else None,
            limit=READ_SIZE)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def _connection(self) -> str:
        """One connection, from connect to loss; returns why it ended."""
        link = RedisLink(self.target, self.scripts)
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await self._open()
        except (OSError, TimeoutError) as exc:
            return failure_reason(self.target, exc)
        loop = asyncio.get_running_loop()
        why: list[str] = []
        watch = asyncio.ensure_future(self._watch(link, writer, why))
        try:
            writer.write(link.greeting(due=loop.time() + self.connect_timeout))
            while True:
                if self.callers.link is None and link.ready:
                    self._writer = writer
                    self.callers.up(link)
                data = await reader.read(READ_SIZE)
                if not data:
                    return why[0] if why else failure_reason(self.target, None)
                self.callers.received(link, data)
        except Exception as exc:  # noqa: BLE001 - any failure ends the connection, not run
            return why[0] if why else failure_reason(self.target, exc)
        finally:
            self.callers.link = None
            watch.cancel()
            writer.transport.abort()

    async def _watch(self, link: RedisLink, writer: asyncio.StreamWriter, why: list[str]
                     ) -> None:
        try:
            while True:
                link.check(asyncio.get_running_loop().time())
                await asyncio.sleep(WATCH_EVERY)
        except LinkFailed as exc:
            why.append(failure_reason(self.target, exc))
            writer.transport.abort()  # the reader sees the end of the stream
