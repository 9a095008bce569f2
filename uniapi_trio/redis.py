"""The shared Redis connection on trio: the I/O of the core's ``RedisLink``, which decides what
is written and whose replies the bytes read are (uniapi_core/redis/link.py).

``run`` is the background task. Per connection, three tasks: the reader (feeds the link, wakes
the callers), the writer (the one task writing the socket, from the queue ``call`` and ``tell``
fill, in the order the link produced the bytes) and the watchdog (drops a wedged server). The
first to fail ends the connection: every caller is woken with ``None`` and ``run`` reconnects
after the core's backoff."""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence

import trio

from uniapi_core.redis.link import (CONNECT_TIMEOUT, MAX_PENDING, WATCH_EVERY, Callers,
                                    Command, Deliver, RedisLink, failure_reason)
from uniapi_core.redis.resp import Reply
from uniapi_core.redis.url import RedisTarget

from .upstream import plain_socket, receive_some

__all__ = ["SharedRedis"]

Queue = trio.MemorySendChannel[bytes]


class SharedRedis:
    """One Redis connection shared by a process's tasks; see the module docstring."""

    def __init__(self, target: RedisTarget, scripts: Sequence[str] = (), *,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.target, self.scripts, self.connect_timeout = target, tuple(scripts), connect_timeout
        self.callers = Callers()  # the core's: who waits for which pipeline
        self._queue: Queue | None = None  # the writer task's, while connected
        self._plain: object | None = None  # the socket, when plain (TCP, Unix): written at once
        self._queued = 0  # writes the writer task still holds: later ones queue behind them

    @property
    def connected(self) -> bool:
        return self.callers.link is not None

    def ask(self, commands: Sequence[Command], timeout: float, deliver: Deliver) -> None:
        """Send a pipeline; ``deliver(replies)`` runs when they are read, or with None at once
        when not connected (or full), or once the connection is lost. No task, no timer: the
        core gives up on its own deadline and ignores a late answer."""
        if (data := self.callers.ask(commands, trio.current_time() + timeout,
                                     deliver)) is not None:
            self._send(data)

    def tell(self, commands: Sequence[Command]) -> None:
        if (data := self.callers.tell(commands, trio.current_time())) is not None:
            self._send(data)

    def _send(self, data: bytes) -> None:
        """Write at once on a plain socket when nothing is queued before it (no task wakes
        for it); else, or for what the socket does not take, queue it for the writer."""
        if self._queued == 0 and self._plain is not None:
            try:
                data = data[os.write(self._plain.fileno(), data):]  # type: ignore[attr-defined]
            except OSError:  # it would block, or the link is failing: the writer finds out
                pass
            if not data:
                return
        self._queued += 1
        self._queue.send_nowait(data)  # type: ignore[union-attr]

    async def call(self, commands: Sequence[Command], timeout: float) -> list[Reply] | None:
        """The replies of a pipeline, or None: not connected, lost, or none within
        ``timeout``."""
        done = trio.Event()
        box: list[list[Reply] | None] = [None]

        def deliver(replies: list[Reply] | None) -> None:
            box[0] = None if done.is_set() else replies
            done.set()

        self.ask(commands, timeout, deliver)
        if not done.is_set():  # refused at once: no checkpoint
            with trio.move_on_after(timeout):
                await done.wait()
        done.set()  # a late answer is not taken
        return box[0]

    async def run(self) -> None:
        try:
            while True:
                await trio.sleep(self.callers.ended(await self._connection()))
        finally:
            self.callers.lost()

    async def _open(self) -> trio.abc.Stream:
        t = self.target
        if t.kind == "unix":
            return await trio.open_unix_socket(t.path)
        tcp = await trio.open_tcp_stream(t.host, t.port)  # trio sets TCP_NODELAY
        if t.kind != "tls":
            return tcp
        context = ssl.create_default_context(cafile=t.ca_file)
        if not t.verify:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        tls = trio.SSLStream(tcp, context, server_hostname=t.host)
        await tls.do_handshake()
        return tls

    async def _connection(self) -> str:
        """One connection, from connect to loss; returns why it ended."""
        link = RedisLink(self.target, self.scripts)
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await self._open()
        except trio.TooSlowError:
            return failure_reason(self.target, TimeoutError())
        except (OSError, trio.BrokenResourceError) as exc:
            return failure_reason(self.target, exc)
        send, receive = trio.open_memory_channel[bytes](math.inf)
        self._queue, self._plain, self._queued = send, plain_socket(stream), 0
        self._send(link.greeting(due=trio.current_time() + self.connect_timeout))
        why: list[str] = []
        try:
            async with trio.open_nursery() as nursery:
                for job, args in ((self._write, (stream, receive)), (self._watch, (link,)),
                                  (self._read, (stream, link))):
                    nursery.start_soon(self._guard, why, nursery.cancel_scope, job, *args)
        finally:
            self.callers.link = None
            await trio.aclose_forcefully(stream)
        return why[0]

    async def _guard(self, why: list[str], scope: trio.CancelScope,
                     job: Callable[..., Awaitable[None]], *args: object) -> None:
        try:
            await job(*args)
            why.append(failure_reason(self.target, None))  # only the reader returns: EOF
        except Exception as exc:  # noqa: BLE001 - any failure ends the connection, not run
            why.append(failure_reason(self.target, exc))
        scope.cancel()

    async def _write(self, stream: trio.abc.Stream, queue: trio.MemoryReceiveChannel[bytes]
                     ) -> None:
        async for data in queue:  # whatever queued meanwhile goes out in the same send
            chunks = [data]
            while len(chunks) < MAX_PENDING:
                try:
                    chunks.append(queue.receive_nowait())
                except trio.WouldBlock:
                    break
            if data := b"".join(chunks):
                await stream.send_all(data)
            self._queued -= len(chunks)

    async def _watch(self, link: RedisLink) -> None:
        while True:
            link.check(trio.current_time())
            await trio.sleep(WATCH_EVERY)

    async def _read(self, stream: trio.abc.Stream, link: RedisLink) -> None:
        while True:
            if self.callers.link is None and link.ready:
                self.callers.up(link)
            data = await receive_some(stream, self._plain)
            if not data:
                return
            self.callers.received(link, data)
