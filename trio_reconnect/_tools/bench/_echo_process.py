"""The echo server of ``bench`` in a child process of its own (:func:`bench_server`).

:mod:`trio_reconnect._tools.bench._server` runs there and announces its port
on its first line; closing its stdin makes it exit.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Final

import trio

from ._echo_clients import BenchError
from ._server import READY_PREFIX

__all__ = ["bench_server"]

#: Seconds the server process has to announce its port.
_SERVER_START_TIMEOUT: Final = 30.0
#: Seconds it has to exit once its stdin is closed (then it is killed).
_SERVER_EXIT_TIMEOUT: Final = 5.0


async def _read_line(stream: trio.abc.ReceiveStream) -> str:
    data = bytearray()
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise BenchError(f"the bench server exited before announcing its port: {data!r}")
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


@contextlib.asynccontextmanager
async def bench_server(host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run :mod:`trio_reconnect._tools.bench._server` in a child process; yield its port.

    On the way out its stdin is closed (it exits on its own), and it is
    killed if it has not exited within a few seconds.
    """
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_reconnect._tools.bench._server", "--host", host],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(_SERVER_START_TIMEOUT):
            line = await _read_line(process.stdout)
        if not line.startswith(READY_PREFIX):
            raise BenchError(f"unexpected first line from the bench server: {line!r}")
        yield int(line[len(READY_PREFIX) :])
    finally:
        with trio.CancelScope(shield=True):
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()  # end of file on stdin: the server exits
            with trio.move_on_after(_SERVER_EXIT_TIMEOUT):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
