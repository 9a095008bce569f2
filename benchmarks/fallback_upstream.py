"""The "python fallback upstream": the mock upstream in pure Python, for machines without nginx.

``python benchmarks/fallback_upstream.py --port P`` serves on 127.0.0.1:P, HTTP/1.1 keep-alive,
the same two answers as the nginx mock of ``run.py``:

* ``POST /v1/chat/completions`` → the fixed ``chat.completion`` JSON;
* ``POST /sse/chat/completions`` → the 52-event stream (``text/event-stream``), whole.

It is much slower than nginx (one Python process), so figures taken against it measure the
mock as much as the gateway; ``run.py`` labels them "python fallback upstream".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from payloads import JSON_MODEL, SSE_MODEL, completion_bytes, sse_body  # noqa: E402


def _response(content_type: str, body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nServer: bench-fallback\r\nContent-Type: " + content_type.encode()
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


ANSWERS = {
    b"/v1/chat/completions": _response("application/json", completion_bytes(JSON_MODEL)),
    b"/sse/chat/completions": _response("text/event-stream", sse_body(SSE_MODEL)),
}
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            target = parts[1] if len(parts) > 1 else b""
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            writer.write(ANSWERS.get(target, NOT_FOUND))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    try:
        asyncio.run(main(ap.parse_args().port))
    except KeyboardInterrupt:
        pass
