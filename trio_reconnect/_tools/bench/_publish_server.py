"""The servers of the publish figure of ``python -m trio_reconnect bench``, each in its own process.

``python -m trio_reconnect._tools.bench._publish_server --kind KIND`` serves on
127.0.0.1 (``--host``), prints ``PORT <n>`` once it listens, and serves until
its standard input ends:

* ``plain``: the baseline, trio-websocket alone: it answers the resume frame
  with a version 1 ``ready``, then sends every message a client sends to
  every connected websocket (a broadcast without a log and without acks).
* ``redis``: what ``serve --redis`` runs for channels: a
  :class:`~trio_reconnect.server.ReconnectServer` whose channels are a
  :class:`~trio_reconnect.server.redis.RedisChannelStore` (``--redis URL``):
  each ``publish`` is appended to Redis and acknowledged.

The measuring side is :mod:`trio_reconnect._tools.bench._publish`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

import trio
import trio_websocket

from ._server import READY_PREFIX

__all__ = ["PUBLISH_KINDS", "main"]

#: The servers, the baseline first.
PUBLISH_KINDS: Final = ("plain", "redis")


async def _until_stdin_ends(port: int) -> None:
    try:
        print(f"{READY_PREFIX}{port}", flush=True)
    except BrokenPipeError:  # the bench gave up before this server was ready
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        while await stdin.receive_some(4096):
            pass


async def _serve_plain(host: str) -> None:
    from ..._protocol import encode_ready

    clients: dict[trio_websocket.WebSocketConnection, None] = {}

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()  # the resume frame: ready, no replay, no channels
            clients[ws] = None
            await ws.send_message(encode_ready(None, lost=False))
            while True:
                message = await ws.get_message()
                for other in list(clients):
                    with contextlib.suppress(trio_websocket.ConnectionClosed):
                        await other.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            clients.pop(ws, None)

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(trio_websocket.serve_websocket, handler, host, 0, None)
        )
        await _until_stdin_ends(listener.port)
        nursery.cancel_scope.cancel()


async def _serve_redis(host: str, redis_url: str) -> None:
    from ...server import ReconnectServer, ReplayLog
    from ...server.redis import RedisChannelStore

    async with RedisChannelStore(redis_url) as channels:
        server = ReconnectServer(ReplayLog(), channels=channels, ping_interval=None)
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(functools.partial(server.serve, host, 0))
            await _until_stdin_ends(listener.port)
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one publish server until standard input ends; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m trio_reconnect._tools.bench._publish_server")
    parser.add_argument("--kind", choices=PUBLISH_KINDS, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis", default=None, help="the Redis URL (--kind redis)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench, our parent, ends us
    if args.kind == "plain":
        trio.run(_serve_plain, args.host)
    else:
        if args.redis is None:
            parser.error("--kind redis needs --redis URL")
        trio.run(_serve_redis, args.host, args.redis)
    return 0


if __name__ == "__main__":
    sys.exit(main())
