"""The channel servers of ``python -m trio_reconnect bench`` (``_fanout_server --channels N``).

Run in a child process by :mod:`trio_reconnect._tools.bench._fanout_server`
with ``--channels N``: the same three kinds as the default stream's fan-out,
serving N channels named by :func:`channel_name`:

* ``plain``: the baseline, a pub/sub server on trio-websocket alone written
  the obvious way: a dict channel -> set of websockets; it answers the
  client's ``resume`` with ``ready`` and each ``subscribe`` with
  ``subscribed`` (it reads nothing else of them); a publish encodes the
  event frame once and awaits ``send_message`` on every subscriber in turn.
* ``memory``: a :class:`~trio_reconnect.server.ReconnectServer` on a
  :class:`~trio_reconnect.server.MemoryChannelStore`.
* ``redis``: a :class:`~trio_reconnect.server.ReconnectServer` on a
  :class:`~trio_reconnect.server.redis.RedisChannelStore` (``--redis URL``).

All three send the same frames (``event`` frames of protocol version 2 with
the same payload). Commands on standard input, one per line:
``publish START COUNT`` publishes COUNT events, the i-th on channel
``(START + i) % N``, by :data:`PUBLISHERS` concurrent publisher tasks (the
highest rate they reach), then prints ``T <stamp>`` (``time.monotonic()``
just before the first publish).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Final

import trio
import trio_websocket

from ._server import READY_PREFIX

__all__ = ["PUBLISHERS", "channel_name", "serve_channels"]

#: Concurrent publisher tasks of a ``publish`` command.
PUBLISHERS: Final = 8

Publish = Callable[[str], Awaitable[object]]


def channel_name(index: int) -> str:
    """The name of channel number ``index``."""
    return f"c{index:05d}"


async def _commands(channels: int, publish: Publish) -> None:
    """Serve ``publish START COUNT`` lines from standard input until it ends."""
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
                command, *numbers = line.decode().split()
                if command != "publish" or len(numbers) != 2:
                    raise SystemExit(f"unknown command {line!r}")
                start, count = int(numbers[0]), int(numbers[1])
                stamp = time.monotonic()
                await _publish_all(channels, publish, start, count)
                print(f"T {stamp!r}", flush=True)


async def _publish_all(channels: int, publish: Publish, start: int, count: int) -> None:
    """Publish ``count`` events round robin over the channels, by concurrent publishers."""
    numbers = iter(range(start, start + count))

    async def publisher() -> None:
        for number in numbers:
            await publish(channel_name(number % channels))

    async with trio.open_nursery() as nursery:
        for _ in range(min(PUBLISHERS, count)):
            nursery.start_soon(publisher)


async def _announce_and_serve(port: int, channels: int, publish: Publish) -> None:
    try:
        print(f"{READY_PREFIX}{port}", flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    await _commands(channels, publish)


async def _serve_plain(host: str, payload: str, channels: int) -> None:
    import json

    from ..._wire import Subscribed, encode_channel_event, encode_ready_v2
    from ...server import clock_start_id

    subscribers: dict[str, set[trio_websocket.WebSocketConnection]] = {}
    next_id = clock_start_id()  # ids as long as the stores' (the same bytes go out)

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        held: list[str] = []
        try:
            await ws.get_message()  # the resume frame
            await ws.send_message(encode_ready_v2(None, lost=False, channels=[]))
            while True:
                frame = json.loads(await ws.get_message())
                if frame.get("type") == "subscribe":
                    channel = frame["channel"]
                    subscribers.setdefault(channel, set()).add(ws)
                    held.append(channel)
                    await ws.send_message(Subscribed(channel, str(next_id - 1)).encode())
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            for channel in held:
                subscribers.get(channel, set()).discard(ws)

    async def publish(channel: str) -> None:
        nonlocal next_id
        frame = encode_channel_event(channel, str(next_id), payload)
        next_id += 1
        for ws in list(subscribers.get(channel, ())):
            with contextlib.suppress(trio_websocket.ConnectionClosed):
                await ws.send_message(frame)

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(trio_websocket.serve_websocket, handler, host, 0, None)
        )
        await _announce_and_serve(listener.port, channels, publish)
        nursery.cancel_scope.cancel()


async def _serve_reconnect(
    host: str, payload: str, channels: int, queue_size: int, redis_url: str | None
) -> None:
    from ...server import ChannelStore, EventLog, MemoryChannelStore, ReconnectServer, ReplayLog

    async with contextlib.AsyncExitStack() as stack:
        log: EventLog
        store: ChannelStore
        if redis_url is None:
            log, store = ReplayLog(), MemoryChannelStore()
        else:
            from ...server.redis import RedisChannelStore, RedisStreamLog

            log = await stack.enter_async_context(
                RedisStreamLog(redis_url, stream="trio_reconnect:bench-channels")
            )
            store = await stack.enter_async_context(RedisChannelStore(redis_url))
        server = ReconnectServer(log, channels=store, ping_interval=None, queue_size=queue_size)

        async def publish(channel: str) -> None:
            await server.publish(channel, payload)

        async with trio.open_nursery() as nursery:
            listener = await nursery.start(functools.partial(server.serve, host, 0))
            await _announce_and_serve(listener.port, channels, publish)
            nursery.cancel_scope.cancel()


def serve_channels(
    kind: str, host: str, payload: str, channels: int, queue_size: int, redis_url: str | None
) -> None:
    """Run the channel server of ``kind`` until standard input ends."""
    if kind == "plain":
        trio.run(_serve_plain, host, payload, channels)
    else:
        trio.run(_serve_reconnect, host, payload, channels, queue_size, redis_url)
