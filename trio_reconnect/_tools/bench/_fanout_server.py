"""The fan-out servers of ``python -m trio_reconnect bench``, each run in a process of its own.

``python -m trio_reconnect._tools.bench._fanout_server --kind KIND`` serves on
127.0.0.1 (``--host``) and prints ``PORT <n>`` once it listens:

* ``plain``: the baseline, a minimal broadcast on trio-websocket alone
  (``serve_websocket``): a set of connected websockets, and a publish that
  encodes the event frame once and awaits ``send_message`` on every
  websocket in turn. No log, no queues, no per-client task of its own.
* ``memory``: a :class:`~trio_reconnect.server.ReconnectServer` on a
  :class:`~trio_reconnect.server.ReplayLog`.
* ``redis``: a :class:`~trio_reconnect.server.ReconnectServer` on a
  :class:`~trio_reconnect.server.redis.RedisStreamLog` (``--redis URL``).

All three send the same bytes: ``event`` frames of the protocol (the plain
server numbers them from the clock as the logs do) carrying the same payload.
The child reads commands on its standard input, one per line: ``publish N``
publishes N events back to back (``ReconnectServer.publish``, or the plain
broadcast), then prints ``T <stamp>``, where ``stamp`` is
``time.monotonic()`` taken just before the first publish. End of file on
standard input ends the child. With ``--channels N`` the child serves N
channels instead (:mod:`trio_reconnect._tools.bench._chanserve`). The measuring side is
:mod:`trio_reconnect._tools.bench._fanout`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio
import trio_websocket

from ._server import READY_PREFIX

__all__ = ["EVENT_SIZE", "KINDS", "main"]

#: Characters of every event's payload (a JSON string).
EVENT_SIZE: Final = 100
#: The servers, the baseline first.
KINDS: Final = ("plain", "memory", "redis")
#: The stream key of the Redis server (a fresh redis-server per run).
_STREAM: Final = "trio_reconnect:bench"


async def _commands(publish: Callable[[], Awaitable[object]]) -> None:
    """Serve ``publish N`` lines from standard input until it ends."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            chunk = await stdin.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command, _, count = line.decode().partition(" ")
                if command != "publish":
                    raise SystemExit(f"unknown command {line!r}")
                stamp = time.monotonic()
                for _ in range(int(count)):
                    await publish()
                print(f"T {stamp!r}", flush=True)


async def _serve_plain(host: str, payload: str) -> None:
    from ..._protocol import encode_event, encode_ready
    from ...server import clock_start_id

    clients: dict[trio_websocket.WebSocketConnection, None] = {}
    next_id = clock_start_id()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()  # the resume frame; the baseline answers ready, no replay
            clients[ws] = None
            await ws.send_message(encode_ready(None, lost=False))
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            clients.pop(ws, None)

    async def publish() -> None:
        nonlocal next_id
        frame = encode_event(str(next_id), payload)
        next_id += 1
        for ws in list(clients):
            with contextlib.suppress(trio_websocket.ConnectionClosed):
                await ws.send_message(frame)

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(trio_websocket.serve_websocket, handler, host, 0, None)
        )
        await _announce_and_serve(listener.port, publish)
        nursery.cancel_scope.cancel()


async def _announce_and_serve(port: int, publish: Callable[[], Awaitable[object]]) -> None:
    try:
        print(f"{READY_PREFIX}{port}", flush=True)
    except BrokenPipeError:
        # The bench gave up before this server was ready: nobody to serve.
        # Point stdout at /dev/null so that the exit's flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    await _commands(publish)


async def _serve_reconnect(host: str, payload: str, queue_size: int, redis_url: str | None) -> None:
    from ...server import EventLog, ReconnectServer, ReplayLog

    async with contextlib.AsyncExitStack() as stack:
        log: EventLog
        if redis_url is None:
            log = ReplayLog()
        else:
            from ...server.redis import RedisStreamLog

            log = await stack.enter_async_context(RedisStreamLog(redis_url, stream=_STREAM))
        server = ReconnectServer(log, ping_interval=None, queue_size=queue_size)

        async def publish() -> None:
            await server.publish(payload)

        async with trio.open_nursery() as nursery:
            listener = await nursery.start(functools.partial(server.serve, host, 0))
            await _announce_and_serve(listener.port, publish)
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one fan-out server until standard input ends; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m trio_reconnect._tools.bench._fanout_server")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--size", type=int, default=EVENT_SIZE)
    parser.add_argument("--queue-size", type=int, default=None)
    parser.add_argument("--redis", default=None, help="the Redis URL (--kind redis)")
    parser.add_argument(
        "--channels", type=int, default=0, help="serve this many channels (_chanserve)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench, our parent, ends us
    payload = "e" * args.size
    if args.kind == "redis" and args.redis is None:
        parser.error("--kind redis needs --redis URL")
    if args.channels > 0:
        from ...server import DEFAULT_QUEUE_SIZE
        from ._chanserve import serve_channels

        serve_channels(
            args.kind,
            args.host,
            payload,
            args.channels,
            args.queue_size or DEFAULT_QUEUE_SIZE,
            args.redis if args.kind == "redis" else None,
        )
    elif args.kind == "plain":
        trio.run(_serve_plain, args.host, payload)
    else:
        from ...server import DEFAULT_QUEUE_SIZE

        queue_size = args.queue_size or DEFAULT_QUEUE_SIZE
        trio.run(
            _serve_reconnect,
            args.host,
            payload,
            queue_size,
            args.redis if args.kind == "redis" else None,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
