"""The echo server of ``python -m trio_reconnect bench``, run in its own process.

``python -m trio_reconnect._tools.bench._server [--host HOST] [--port N]`` serves a
:class:`~trio_reconnect.server.ReconnectServer` whose ``on_message`` echoes
every message back to its sender, except :data:`DROP`: that one makes the
server close the sender's connection with 1012 and a ``retryAfter`` of 0.

It prints ``PORT <n>`` on a line of its own once it listens, and exits with
status 0 when its standard input reaches end of file (the benchmark closes
the pipe when it is done). It ignores SIGINT: a Ctrl-C in the terminal reaches
the whole process group, and the benchmark (its parent) ends it.

The server sends no pings (``ping_interval=None``), so no keepalive traffic
disturbs the throughput figures.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

import trio

from ..._hints import SERVICE_RESTART, format_close_reason
from ...server import ConnectedClient, ReconnectServer, ReplayLog

__all__ = ["DROP", "DROP_CODE", "READY_PREFIX", "main", "serve_echo"]

#: The message that makes the server drop its sender (1012, ``retryAfter: 0``).
DROP: Final = "__drop__"
#: What the line announcing the port starts with.
READY_PREFIX: Final = "PORT "
#: The close code of a drop: Service Restart, one of the hinted codes.
DROP_CODE: Final = SERVICE_RESTART
_DROP_REASON: Final = format_close_reason(0, "bench drop")


async def _echo(client: ConnectedClient, message: str | bytes) -> None:
    if message == DROP:
        # aclose() cancels this handler's connection scope; the server then
        # sends the close frame. Nothing after this line runs.
        await client.aclose(DROP_CODE, _DROP_REASON)
    else:
        await client.send(message)


async def _stdin_closed() -> None:
    """Return once standard input reaches end of file."""
    fd = sys.stdin.fileno()
    while await trio.to_thread.run_sync(os.read, fd, 4096, abandon_on_cancel=True):
        pass


async def serve_echo(host: str, port: int) -> None:
    """Serve the echo protocol server until standard input is closed."""
    server = ReconnectServer(ReplayLog(max_events=16), on_message=_echo, ping_interval=None)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(functools.partial(server.serve, host, port))
        try:
            print(f"{READY_PREFIX}{listener.port}", flush=True)
        except BrokenPipeError:
            # The bench gave up (its --timeout) before this server was ready:
            # nobody to serve. Point stdout at /dev/null so that the exit's
            # flush does not complain either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        else:
            await _stdin_closed()
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m trio_reconnect._tools.bench._server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (default)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    trio.run(serve_echo, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
