"""The Node peers of the interop tests: how to find, start and read them.

``node/ws.mjs``, ``node/client.mjs`` and ``node/server.mjs`` were written from
the protocol page alone (``docs/reference/protocol.md``); each prints one JSON
line per thing it saw and exits on its own hard timeout. These helpers run them
as real processes on 127.0.0.1 and hand their lines to the tests.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio

from trio_reconnect.testing._node_process import SERVING_LINE, child_environment

NODE_DIR: Final = Path(__file__).parent / "node"
#: The ``node`` executable, or None (then every interop test is skipped).
NODE: Final = shutil.which("node")
#: Seconds a Node program may run before it exits by itself.
NODE_HARD_TIMEOUT: Final = 40.0
#: Seconds ``serve`` has to print its serving line.
SERVE_START_TIMEOUT: Final = 20.0

needs_node = pytest.mark.skipif(
    NODE is None, reason="node is not on PATH (the interop tests run Node peers)"
)

Line = dict[str, Any]


def _read_line(stream: Any, deadline: float) -> str:
    """One line of a child's pipe, or "" at its end or at the deadline (monotonic)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return ""
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            return str(stream.readline())


@attrs.define(eq=False)
class Serve:
    """``python -m trio_reconnect serve`` in a child process on a free port."""

    process: subprocess.Popen[str]
    url: str

    def stop(self, timeout: float = 20.0) -> tuple[int, str]:
        """SIGTERM (a drain); its exit status and the rest of its output."""
        self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return self.process.returncode, out


def start_serve(*args: str) -> Serve:
    """Start ``serve --port 0 ARGS`` and wait for its serving line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_reconnect", "serve", "--host", "127.0.0.1", "--port", "0",
         *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_environment(),
    )  # fmt: skip
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    while (line := _read_line(process.stdout, deadline)) and SERVING_LINE not in line:
        pass
    if SERVING_LINE not in line:
        process.kill()
        rest, _ = process.communicate()
        raise RuntimeError(f"serve did not start: {line}{rest}")
    return Serve(process, line.split(SERVING_LINE)[1].strip())


def serving(*args: str) -> Iterator[Serve]:
    """A fixture body: ``serve ARGS`` for the fixture's scope, killed at the end."""
    serve = start_serve(*args)
    try:
        yield serve
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
        serve.process.communicate()


@attrs.define(eq=False)
class NodeClient:
    """``node client.mjs SCENARIO URL`` running, its lines read as they come."""

    process: subprocess.Popen[str]
    lines: list[Line] = attrs.field(factory=list)

    @classmethod
    def start(cls, scenario: str, url: str) -> NodeClient:
        assert NODE is not None
        limit = str(int(NODE_HARD_TIMEOUT * 1000))
        command = [NODE, str(NODE_DIR / "client.mjs"), scenario, url, limit]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        return cls(process)

    def read_until(self, key: str, timeout: float = NODE_HARD_TIMEOUT) -> Line:
        """Read lines until one has ``key``; that line."""
        deadline = time.monotonic() + timeout
        while line := _read_line(self.process.stdout, deadline):
            self.lines.append(json.loads(line))
            assert "error" not in self.lines[-1], self.lines[-1]
            if key in self.lines[-1]:
                return self.lines[-1]
        raise AssertionError(f"no line with {key!r}; saw {self.lines}")

    def finish(self) -> list[Line]:
        """Every line, once the program said ``done`` and exited 0."""
        self.read_until("done")
        assert self.process.wait(timeout=NODE_HARD_TIMEOUT) == 0
        return self.lines

    def close(self) -> None:
        """Kill it if it still runs, and close its pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def run_client(scenario: str, url: str) -> list[Line]:
    """Run one scenario of the Node client to its end; its lines."""
    client = NodeClient.start(scenario, url)
    try:
        return client.finish()
    finally:
        client.close()


def one(lines: list[Line], key: str) -> Any:
    """The value of ``key`` in the one line that has it."""
    (found,) = [line[key] for line in lines if key in line]
    return found


@attrs.define(eq=False)
class NodeServer:
    """``node server.mjs`` running under trio: commands in, lines out."""

    process: trio.Process
    port: int = 0
    lines: list[Line] = attrs.field(factory=list)
    _changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def read(self) -> None:
        """Take its lines until its stdout ends (run in a task)."""
        assert self.process.stdout is not None
        pending = b""
        async for chunk in self.process.stdout:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                self.lines.append(json.loads(raw))
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, match: Callable[[Line], bool], count: int = 1) -> list[Line]:
        """Wait until ``count`` lines match; those lines (bound by the caller's guard)."""
        while True:
            assert not any("error" in line for line in self.lines), self.lines
            found = [line for line in self.lines if match(line)]
            if len(found) >= count:
                return found
            await self._changed.wait()

    async def command(self, **command: Any) -> None:
        """Send one command (see server.mjs) and wait for nothing."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(command).encode() + b"\n")

    def events(self, ev: str) -> list[Line]:
        """Its lines of one kind (``open``, ``recv``, ``publish`` ...)."""
        return [line for line in self.lines if line.get("ev") == ev]
