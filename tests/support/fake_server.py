"""A scripted protocol server over trio memory streams, for the client's tests.

The client runs for real (trio-websocket over a memory stream pair, injected
through ``open_stream``); each connection it opens is served by a handler the
test writes, so every frame, close code and delay is under the test's control.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
import trio.testing
import trio_websocket
import wsproto.utilities

import trio_reconnect as tr
from trio_reconnect import Target

Handler = Callable[[trio_websocket.WebSocketRequest, int], Awaitable[None]]


@attrs.define(eq=False)
class FakeServer:
    """Serves each connection the client opens with ``handler(request, n)``.

    Attributes:
        connects: ``trio.current_time()`` of every stream the client opened.
        targets: The :class:`Target` of every attempt.
    """

    nursery: trio.Nursery
    handler: Handler
    connects: list[float] = attrs.field(factory=list)
    targets: list[Target] = attrs.field(factory=list)
    refuse: Callable[[int], BaseException | None] | None = None

    async def open_stream(self, target: Target) -> trio.abc.Stream:
        self.connects.append(trio.current_time())
        self.targets.append(target)
        n = len(self.connects)
        if self.refuse is not None:
            error = self.refuse(n)
            if error is not None:
                raise error
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve, server, n)
        return client

    async def _serve(self, stream: trio.abc.Stream, n: int) -> None:
        try:
            async with trio.open_nursery() as nursery:
                try:
                    request = await trio_websocket.wrap_server_stream(nursery, stream)
                    await self.handler(request, n)
                except trio_websocket.ConnectionClosed:
                    pass
                nursery.cancel_scope.cancel()
        except* wsproto.utilities.LocalProtocolError:
            # trio-websocket's server reader crashes when a ping arrives while
            # it is closing (it tries to pong in LOCAL_CLOSING); harmless here.
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def accept_and_resume(
    request: trio_websocket.WebSocketRequest,
) -> tuple[trio_websocket.WebSocketConnection, dict[str, Any]]:
    """Accept, read the resume frame, return the connection and the frame."""
    ws = await request.accept()
    frame = json.loads(await ws.get_message())
    return ws, frame


async def send_ready(
    ws: trio_websocket.WebSocketConnection, event_id: str | None = None, *, lost: bool = False
) -> None:
    await ws.send_message(json.dumps({"type": "ready", "id": event_id, "lost": lost}))


async def send_event(ws: trio_websocket.WebSocketConnection, event_id: str, data: Any) -> None:
    await ws.send_message(json.dumps({"type": "event", "id": event_id, "data": data}))


async def send_snapshot(ws: trio_websocket.WebSocketConnection, event_id: str, data: Any) -> None:
    await ws.send_message(json.dumps({"type": "snapshot", "id": event_id, "data": data}))


async def serve_then_restart(ws: trio_websocket.WebSocketConnection, count: int) -> None:
    """Ready, events "1" .. ``count``, then close with 1012 and ``retryAfter: 0``."""
    await send_ready(ws, None)
    for i in range(1, count + 1):
        await send_event(ws, str(i), i)
    await ws.aclose(1012, json.dumps({"retryAfter": 0}))


async def collect(server: FakeServer, count: int, **options: Any) -> list[tr.Item]:
    """The first ``count`` items a client of ``server`` receives (pings off, under a guard)."""
    items: list[tr.Item] = []
    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, ping_interval=None, **options
        ) as ws:
            while len(items) < count:
                items.append(await ws.get_message())
    return items


def hint(ms: float, code: int = 1012) -> tuple[int, str]:
    return code, json.dumps({"reason": "restarting", "retryAfter": ms})


async def ready_forever(request: trio_websocket.WebSocketRequest, n: int) -> None:
    """The plainest protocol server: accept, read resume, send ready, stay up."""
    ws, _ = await accept_and_resume(request)
    await send_ready(ws, None)
    await trio.sleep_forever()
