"""A ready connection's pings: one in flight at a time, a silent client found half-open.

:class:`~trio_reconnect.server._connection.ConnectedClient` runs
:func:`ping_loop` next to its read and write loops. The rule of when a
missing pong means half-open is :func:`~._verdicts.half_open` (the
application holding the reader up is not the client's silence).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ._verdicts import half_open

__all__ = ["ping_loop"]


async def ping_loop(
    ws: WebSocketConnection,
    interval: float,
    pong_timeout: float,
    handler: Callable[[], tuple[bool, float]],
    on_half_open: Callable[[], None],
) -> None:
    """Ping every ``interval`` s; no pong within ``pong_timeout``: ``on_half_open()``, return.

    ``handler()`` tells whether the application's handler is running and
    when it was last left (the read loop's state).
    """
    # One ping in flight at a time, in a task of its own: a ping's send is
    # never cancelled midway (half a frame would garble the close frame),
    # only the wait for its pong is bounded. Payloads are unique per
    # connection anyway (a ping that never got its pong stays in flight).
    number = 0
    async with trio.open_nursery() as pings:
        while True:
            await trio.sleep(interval)
            number += 1
            answered = trio.Event()
            pings.start_soon(_ping, ws, number.to_bytes(8, "big"), answered)
            window_start = trio.current_time()
            while not answered.is_set():
                with trio.move_on_after(pong_timeout):
                    await answered.wait()
                if answered.is_set():
                    break
                in_handler, left_at = handler()
                if not half_open(
                    in_handler=in_handler, handler_left_at=left_at, window_start=window_start
                ):
                    window_start = trio.current_time()  # the application held us up
                    continue
                on_half_open()
                return


async def _ping(ws: WebSocketConnection, payload: bytes, answered: trio.Event) -> None:
    with contextlib.suppress(ConnectionClosed):  # the read loop sees the close
        await ws.ping(payload)
        answered.set()
