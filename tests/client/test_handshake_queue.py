"""The client handshake takes the frames trio-websocket already queued without a checkpoint each.

A resume of many channels is answered in one write (tests/server/test_handshake_batching.py);
the client then reads what its reader queued, in order, without a pass of the
scheduler per frame, and waits (``get_message()``) only when the queue is empty.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing
import trio_websocket

from tests.client.test_subscriptions_real_server import Network, client, make_server
from tests.client.test_tws import open_pair
from trio_reconnect import _handshake, _tws
from trio_reconnect.server import MemoryChannelStore


async def test_queued_frames_come_in_order_without_a_checkpoint(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        client, server = await open_pair(nursery)
        queue = _tws.message_queue(client)
        await _tws.write_batch(server, ["a", "b", "c"])
        first = await _handshake._next_message(client, queue)  # waits: nothing queued yet
        await trio.testing.wait_all_tasks_blocked()  # the reader queued the rest
        with trio.testing.assert_no_checkpoints():
            rest = [await _handshake._next_message(client, queue) for _ in range(2)]
        assert [first, *rest] == ["a", "b", "c"]
        # Nothing queued: it waits for the next frame, as get_message() does.
        async with trio.open_nursery() as waiting:
            got: list[str | bytes] = []

            async def take() -> None:
                got.append(await _handshake._next_message(client, queue))

            waiting.start_soon(take)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await server.send_message("d")
        assert got == ["d"]
        # Without trio-websocket's queue (another version): get_message() alone.
        await server.send_message("e")
        assert await _handshake._next_message(client, None) == "e"


async def test_a_closed_connection_is_connection_closed(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        client, server = await open_pair(nursery)
        queue = _tws.message_queue(client)
        await server.aclose(1001, "going away")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio_websocket.ConnectionClosed) as info:
            await _handshake._next_message(client, queue)
        assert info.value.reason is not None
        assert info.value.reason.code == 1001


async def test_a_resume_of_many_channels_is_queued_without_the_reader_waiting(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The answer of a resume of 40 channels (a frame each, in one write) fits
    # the connection's message queue: the reader never waits for room on it.
    waits: list[int] = []
    eager_send = _tws.EagerSend.send

    async def send(self: _tws.EagerSend, message: str | bytes) -> None:
        stats = self.channel.statistics()
        if stats.current_buffer_used >= stats.max_buffer_size:
            waits.append(stats.current_buffer_used)
        await eager_send(self, message)

    monkeypatch.setattr(_tws.EagerSend, "send", send)
    network = Network(nursery, [make_server(MemoryChannelStore(start=1))])
    names = [f"c{n}" for n in range(40)]
    with trio.fail_after(60):
        async with client(network) as ws, contextlib.AsyncExitStack() as stack:
            for name in names:
                await stack.enter_async_context(ws.subscribe(name))
            await trio.sleep(1)  # every subscribe answered
            ws.reconnect_now()
            await trio.sleep(1)
            await ws.wait_ready()
            assert network.connects == 2
    assert waits == []
