"""A throwaway PostgreSQL server for the stats-store tests.

``start()`` runs ``initdb`` in a fresh temporary directory and starts ``postgres`` on a random
loopback port (no Unix socket, password authentication, fsync off), as the ``postgres`` user
(or ``nobody``) when the tests run as root, since the server refuses to run as root.
``PgServer.stop()`` stops it by its PID (SIGINT: fast shutdown, then SIGKILL) and removes the
directory. The binaries come from PATH or ``/usr/lib/postgresql/<version>/bin`` (Debian's
``postgresql`` package); ``missing()`` says why they cannot be used.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import attrs

USER = "uniapi"
PASSWORD = "stats-test-secret"
DEBIAN_PACKAGE = "postgresql"


def bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, newest version first."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(os.path.realpath(found)).parent
    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                       key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                       else 0, reverse=True):
        if (Path(path) / "initdb").exists() and (Path(path) / "postgres").exists():
            return Path(path)
    return None


def _run_as() -> str | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if bindir() is None:
        return (f"PostgreSQL binaries (initdb, postgres) not found on PATH or in "
                f"/usr/lib/postgresql/*/bin: install the Debian package {DEBIAN_PACKAGE!r}")
    if os.geteuid() == 0 and _run_as() is None:
        return "running as root and no 'postgres' or 'nobody' user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@attrs.define
class PgServer:
    proc: subprocess.Popen
    root: Path
    port: int
    user: str = USER
    password: str = PASSWORD
    host: str = "127.0.0.1"

    def env(self, dbname: str) -> dict[str, str]:
        """The stats store's environment variables for database ``dbname``."""
        return {"DB_TYPE": "postgres", "DB_USER": self.user, "DB_PASSWORD": self.password,
                "DB_HOST": self.host, "DB_PORT": str(self.port), "DB_NAME": dbname}

    def connect_kwargs(self, dbname: str) -> dict[str, object]:
        """``psycopg.connect`` keyword arguments for database ``dbname``."""
        return {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password, "dbname": dbname}

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def start(timeout: float = 60.0) -> PgServer:
    """A running server with the superuser ``USER``/``PASSWORD`` on 127.0.0.1."""
    import psycopg

    why = missing()
    if why:
        raise RuntimeError(why)
    bins = bindir()
    assert bins is not None
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="uniapi-pg-"))
    data = root / "data"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_user is not None:
        info = pwd.getpwnam(as_user)
        os.chown(root, info.pw_uid, info.pw_gid)
        os.chown(pwfile, info.pw_uid, info.pw_gid)
    try:
        subprocess.run([str(bins / "initdb"), "-D", str(data), "-U", USER, "--pwfile",
                        str(pwfile), "-A", "scram-sha-256", "-E", "UTF8", "--no-instructions"],
                       user=as_user, check=True, capture_output=True, timeout=120, cwd=root)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
    last = ""
    for _ in range(5):  # the port may be taken between picking and binding
        port = _free_port()
        with open(root / "server.log", "wb") as log:
            proc = subprocess.Popen(
                [str(bins / "postgres"), "-D", str(data), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off"],
                user=as_user, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        server = PgServer(proc, root, port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                psycopg.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD,
                                dbname="postgres", connect_timeout=2).close()
                return server
            except psycopg.OperationalError as exc:
                last = str(exc)
                time.sleep(0.1)
        last = server.log() or last
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL did not start: {last}")
