"""The publish pump writes the publishes waiting together in one write (at most 64 a write).

Driven over a real trio-websocket pair on memory streams whose client side
writes through a recording stream (tests/server/test_connection_batching.py),
so what each ``send_all`` carried is known exactly.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import trio
import trio.testing
import trio_websocket
from trio_websocket import WebSocketConnection

from tests.server.test_connection_batching import RecordingStream
from trio_reconnect import _publishing
from trio_reconnect._publishing import Publisher


async def pair(
    nursery: trio.Nursery,
) -> tuple[WebSocketConnection, WebSocketConnection, RecordingStream]:
    """A connected (client, server) pair; the client writes through the recorder."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    recorder = RecordingStream(client_stream)
    server_ws: list[WebSocketConnection] = []

    async def accept() -> None:
        request = await trio_websocket.wrap_server_stream(nursery, cast(Any, server_stream))
        server_ws.append(await request.accept())

    nursery.start_soon(accept)
    client_ws = await trio_websocket.wrap_client_stream(
        nursery, cast(Any, recorder), "localhost", "/"
    )
    while not server_ws:
        await trio.lowlevel.checkpoint()
    return client_ws, server_ws[0], recorder


async def sent_ids(ws: WebSocketConnection, count: int) -> list[str]:
    frames = [json.loads(await ws.get_message()) for _ in range(count)]
    assert {f["type"] for f in frames} == {"publish"}
    return [f["msgId"] for f in frames]


@pytest.mark.parametrize(("count", "writes"), [(1, 1), (3, 1), (64, 1), (65, 2), (130, 3)])
async def test_waiting_publishes_go_out_together(
    nursery: trio.Nursery, count: int, writes: int
) -> None:
    with trio.fail_after(10):
        client_ws, server_ws, recorder = await pair(nursery)
        publisher = Publisher()
        async with trio.open_nursery() as calls:
            for n in range(count):
                calls.start_soon(publisher.publish, "room", n)
            await trio.testing.wait_all_tasks_blocked()
            before = len(recorder.writes)
            await publisher.after_ready(client_ws, v2=True)
            assert len(recorder.writes) - before == writes
            assert await sent_ids(server_ws, count) == [str(n) for n in range(count)]
            assert publisher.outbox.take_unsent() == []  # all of them marked sent
            calls.cancel_scope.cancel()


async def test_without_the_internals_each_publish_is_one_send_message(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_publishing, "can_write_batch", lambda ws: False)
    with trio.fail_after(10):
        client_ws, server_ws, recorder = await pair(nursery)
        publisher = Publisher()
        async with trio.open_nursery() as calls:
            for n in range(3):
                calls.start_soon(publisher.publish, "room", n)
            await trio.testing.wait_all_tasks_blocked()
            before = len(recorder.writes)
            await publisher.after_ready(client_ws, v2=True)
            assert len(recorder.writes) - before == 3
            assert await sent_ids(server_ws, 3) == ["0", "1", "2"]
            calls.cancel_scope.cancel()
