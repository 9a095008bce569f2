"""A throwaway Redis server for the Redis link tests.

``start()`` runs ``redis-server`` on a random free 127.0.0.1 port with no persistence
(``--save "" --appendonly no``), in the foreground (``--daemonize no``), in a fresh temporary
directory, and waits until it answers PING. Options: ``password`` (``--requirepass``), ``tls``
(a ``(cert, key)`` pair: the port is then TLS-only, ``--port 0 --tls-port N``), ``unix`` (a
Unix socket path, served as well as the port). ``RedisServer.stop()`` stops it by its PID
(SIGTERM, then SIGKILL), waits and removes its directory; ``restart()`` starts a fresh one
(empty data, no cached scripts) on the same port; ``url`` is the URL a client uses (``unix_url``
the socket's). ``missing()`` says why no server can be started here (Debian's package
``redis-server`` is not installed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import attrs

DEBIAN_PACKAGE = "redis-server"


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if shutil.which("redis-server") is None:
        return f"redis-server not found on PATH: install the Debian package {DEBIAN_PACKAGE!r}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@attrs.define
class RedisServer:
    proc: subprocess.Popen | None
    root: Path
    port: int
    password: str | None = None
    tls: tuple[str, str] | None = None
    unix: str | None = None

    @property
    def url(self) -> str:
        """``redis://`` (``rediss://`` with TLS, trusting the test certificate) on the port."""
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        if self.tls is not None:
            return (f"rediss://{auth}127.0.0.1:{self.port}"
                    f"?ssl_ca_certs={quote(self.tls[0], safe='/')}")
        return f"redis://{auth}127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        assert self.unix is not None
        pw = f"?password={quote(self.password, safe='')}" if self.password is not None else ""
        return f"unix://{self.unix}{pw}"

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-4000:]
        return ""

    def _args(self) -> list[str]:
        args = ["redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
                "--daemonize", "no", "--dir", str(self.root), "--logfile", "",
                "--protected-mode", "no"]
        if self.tls is not None:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                     self.tls[0], "--tls-key-file", self.tls[1], "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password is not None:
            args += ["--requirepass", self.password]
        if self.unix is not None:
            args += ["--unixsocket", self.unix, "--unixsocketperm", "700"]
        return args

    def ping(self) -> bool:
        """True when the server answers PING (after AUTH when it has a password)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                sock: socket.socket = raw
                if self.tls is not None:
                    ctx = ssl.create_default_context(cafile=self.tls[0])
                    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                if self.password is not None:
                    pw = self.password.encode()
                    sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw))
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                data = b""
                while b"PONG" not in data and len(data) < 1000:
                    chunk = sock.recv(1000)
                    if not chunk:
                        return False
                    data += chunk
                return True
        except OSError:
            return False

    def _launch(self, timeout: float = 20.0) -> None:
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.ping():
                return
            time.sleep(0.02)
        self._kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.log()}")

    def _kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        """Stop the server by its PID and remove its directory; ``restart`` may follow."""
        self._kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        """A fresh server (no data, no cached scripts) on the same port."""
        self.stop()
        self.root.mkdir(parents=True, exist_ok=True)
        self._launch()


def start(port: int | None = None, password: str | None = None,
          tls: tuple[str, str] | None = None, unix: str | None = None) -> RedisServer:
    """A running server on 127.0.0.1 (a random free port unless ``port``)."""
    why = missing()
    if why:
        raise RuntimeError(why)
    root = Path(tempfile.mkdtemp(prefix="uniapi-redis-"))
    for attempt in range(5):  # the port may be taken between picking and binding
        server = RedisServer(None, root, port or _free_port(), password, tls, unix)
        try:
            server._launch()
            return server
        except RuntimeError:
            if port is not None or attempt == 4:
                shutil.rmtree(root, ignore_errors=True)
                raise
    raise AssertionError("unreachable")
