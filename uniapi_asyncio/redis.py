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
from collections.abc import Callable, Sequence
from itertools import count

from uniapi_core.redis.link import (CONNECT_TIMEOUT, READ_SIZE, WATCH_EVERY, Backoff, Command,
                                    LinkFailed, RedisLink, failure_reason)
from uniapi_core.redis.resp import Reply
from uniapi_core.redis.url import RedisTarget

__all__ = ["SharedRedis"]

#: what receives one pipeline's replies (None: not connected, or the connection was lost)
Deliver = Callable[[list[Reply] | None], None]


class SharedRedis:
    """One Redis connection shared by a process's tasks; see the module docstring."""

    def __init__(self, target: RedisTarget, scripts: Sequence[str] = (), *,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.target, self.scripts, self.connect_timeout = target, tuple(scripts), connect_timeout
        self.on_state: Callable[[bool, str], None] | None = None
        self._up: tuple[RedisLink, asyncio.StreamWriter] | None = None  # connected, greeted
        self._waiting: dict[object, Deliver] = {}
        self._tags = count()

    @property
    def connected(self) -> bool:
        return self._up is not None

    def ask(self, commands: Sequence[Command], timeout: float, deliver: Deliver) -> None:
        """Send a pipeline; ``deliver(replies)`` runs when they are read, or with None at once
        when not connected (or full), or once the connection is lost. No task, no timer: the
        core gives up on its own deadline and ignores a late answer."""
        if self._up is None or self._up[0].full:
            deliver(None)
            return
        link, writer = self._up
        tag = next(self._tags)
        self._waiting[tag] = deliver
        writer.write(link.request(tag, commands,
                                  due=asyncio.get_running_loop().time() + timeout))

    async def call(self, commands: Sequence[Command], timeout: float) -> list[Reply] | None:
        """The replies of a pipeline, or None: not connected, lost, or none within
        ``timeout``."""
        if self._up is None or self._up[0].full:
            return None
        waiter = asyncio.get_running_loop().create_future()
        self.ask(commands, timeout,
                 lambda replies: None if waiter.done() else waiter.set_result(replies))
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None

    def tell(self, commands: Sequence[Command]) -> None:
        if self._up is not None and not self._up[0].full:
            link, writer = self._up
            writer.write(link.tell(commands, due=asyncio.get_running_loop().time()))

    async def run(self) -> None:
        backoff = Backoff()
        try:
            while True:
                reason = await self._connection(backoff)
                self._drop()
                if self.on_state is not None:
                    self.on_state(False, reason)
                await asyncio.sleep(backoff.next())
        finally:
            self._drop()

    def _drop(self) -> None:
        self._up = None
        waiting, self._waiting = self._waiting, {}
        for deliver in waiting.values():
            deliver(None)

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

    async def _connection(self, backoff: Backoff) -> str:
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
                if self._up is None and link.ready:
                    self._up = (link, writer)
                    backoff.reset()
                    if self.on_state is not None:
                        self.on_state(True, "")
                data = await reader.read(READ_SIZE)
                if not data:
                    return why[0] if why else failure_reason(self.target, None)
                for tag, replies in link.receive(data):
                    if (deliver := self._waiting.pop(tag, None)) is not None:
                        deliver(replies)
        except Exception as exc:  # noqa: BLE001 - any failure ends the connection, not run
            return why[0] if why else failure_reason(self.target, exc)
        finally:
            self._up = None
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
