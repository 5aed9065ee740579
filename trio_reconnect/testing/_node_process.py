"""``python -m trio_reconnect serve`` as a real child process, for end-to-end tests and the demo.

A :class:`NodeProcess` runs one node on a fixed loopback port (kept across
restarts, so a client's URL list stays valid), appends the node's stdout and
stderr of every run to two files, counts as started when the node prints its
``serving`` line, and is stopped by its PID with the signal the caller picks
(SIGTERM drains, SIGKILL is a crash).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final

import attrs
import trio

import trio_reconnect

__all__ = ["NodeProcess", "NodeStartError", "child_environment"]

#: Seconds a node has to print its ``serving`` line, and a stopped one to exit.
NODE_TIMEOUT: Final = 20.0
#: How often a starting node's output is looked at, seconds.
_POLL: Final = 0.02
#: The line a node prints once it listens.
SERVING_LINE: Final = "serving the reconnect protocol on "


class NodeStartError(RuntimeError):
    """A node process exited, or did not serve in time, when it was started."""


def child_environment() -> dict[str, str]:
    """This environment, with this copy of trio_reconnect first on ``PYTHONPATH``."""
    env = dict(os.environ)
    root = str(Path(trio_reconnect.__file__).resolve().parent.parent)
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not rest else root + os.pathsep + rest
    return env


@attrs.define(eq=False)
class NodeProcess:
    """One ``serve`` node in a child process on ``127.0.0.1:port``.

    Args:
        name: The node's name (``--node``) and the stem of its output files.
        port: Its port, kept across restarts.
        serve_args: More ``serve`` arguments (``--redis URL``, ``--interval``, ...).
        directory: Where ``NAME.out`` and ``NAME.err`` are written.
    """

    name: str
    port: int
    serve_args: Sequence[str]
    directory: Path
    #: How many times it was started.
    starts: int = attrs.field(default=0, init=False)
    _process: trio.Process | None = attrs.field(default=None, init=False)
    _files: list[IO[bytes]] = attrs.field(factory=list, init=False)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/``."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def out_path(self) -> Path:
        """Its stdout, every run appended."""
        return self.directory / f"{self.name}.out"

    @property
    def err_path(self) -> Path:
        """Its stderr, every run appended."""
        return self.directory / f"{self.name}.err"

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self._process is not None and self._process.returncode is None

    def stdout(self) -> str:
        """Everything it printed on stdout so far."""
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stderr(self) -> str:
        """Everything it printed on stderr so far."""
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    async def start(self) -> None:
        """Start it and wait until it serves.

        Raises:
            NodeStartError: if it exits first or does not serve within
                ``NODE_TIMEOUT`` s, with the last line of its stderr.
        """
        if self.running:
            raise RuntimeError(f"node {self.name} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        before = self.stdout().count(SERVING_LINE)
        out = self.out_path.open("ab")
        err = self.err_path.open("ab")
        self._files = [out, err]
        command = [
            sys.executable, "-m", "trio_reconnect", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--node", self.name,
            *self.serve_args,
        ]  # fmt: skip
        self._process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_environment()
        )
        self.starts += 1
        with trio.move_on_after(NODE_TIMEOUT):
            while self.stdout().count(SERVING_LINE) == before:
                if self._process.poll() is not None:
                    break
                await trio.sleep(_POLL)
            else:
                return
        lines = self.stderr().strip().splitlines()
        await self.stop(signal.SIGKILL)
        last = lines[-1] if lines else "no output"
        raise NodeStartError(f"node {self.name} did not start on port {self.port}: {last}")

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` to its PID and wait for it to exit; return its exit status.

        A node that has not exited within ``NODE_TIMEOUT`` s is killed (and
        :class:`RuntimeError` says so).
        """
        process = self._process
        if process is None:
            raise RuntimeError(f"node {self.name} is not running")
        try:
            if process.returncode is None:
                process.send_signal(signum)
            with trio.move_on_after(NODE_TIMEOUT) as scope:
                await process.wait()
            if scope.cancelled_caught:
                process.kill()
                await process.wait()
                raise RuntimeError(f"node {self.name} did not exit within {NODE_TIMEOUT:g} s")
            status = process.returncode
            assert status is not None
            return status
        finally:
            self._process = None
            for file in self._files:
                file.close()
            self._files = []

    async def aclose(self) -> None:
        """Kill it if it runs (for cleanup)."""
        if self._process is not None:
            with trio.CancelScope(shield=True):
                await self.stop(signal.SIGKILL)
