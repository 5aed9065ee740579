"""A burst's publish frames written by the publishing task itself (trio_reconnect/_directsend.py).

Real loopback TCP: our client against our ReconnectServer for the burst, a
trio-websocket server that stops reading for the write that does not go
through whole. Every wait has a ``fail_after`` guard; nothing is timed.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from wsproto.connection import ConnectionState

import trio_reconnect as tr
from trio_reconnect import _tws
from trio_reconnect._directsend import FlushingTurn, send_turn_for
from trio_reconnect._turn import Turn
from trio_reconnect.server import ChannelRequest, MemoryChannelStore, ReconnectServer, ReplayLog


@contextlib.asynccontextmanager
async def served(server: ReconnectServer) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(server.serve, "127.0.0.1", 0)
        yield listener.port
        nursery.cancel_scope.cancel()


async def test_a_burst_is_written_by_its_publishers_in_order_and_acked_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[int] = []
    original = FlushingTurn.write_now

    def counted(self: FlushingTurn, ws: Any, messages: Sequence[str]) -> None:
        writes.append(len(messages))
        original(self, ws, messages)

    monkeypatch.setattr(FlushingTurn, "write_now", counted)
    store = MemoryChannelStore(start=1)
    server = ReconnectServer(ReplayLog(start=1), channels=store, rng=random.Random(0))
    count = 200
    acked: dict[int, str] = {}
    called: list[int] = []  # the order the publishes entered the outbox (their msgIds' order)
    with trio.fail_after(30):
        async with (
            served(server) as port,
            tr.open_reconnecting_websocket(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws,
        ):
            await ws.wait_ready()

            async def publish(n: int) -> None:
                called.append(n)
                acked[n] = await ws.publish("room", n)

            async with trio.open_nursery() as burst:
                for n in range(count):
                    burst.start_soon(publish, n)
            assert ws.statistics().reconnects == 0
    # Three full writes from the publishers (the 64th, 128th and 192nd), the rest by the pump.
    assert writes == [64, 64, 64]
    [read] = await store.read([ChannelRequest("room", None, 1000)], max_replay=1000)
    assert read.events is not None
    assert [event.data for event in read.events] == called  # once each, in order
    assert sorted(called) == list(range(count))
    assert [acked[n] for n in called] == [event.id for event in read.events]


async def test_a_lone_publish_goes_through_the_pump(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    monkeypatch.setattr(FlushingTurn, "write_now", lambda self, ws, m: writes.append(len(m)))
    store = MemoryChannelStore(start=1)
    server = ReconnectServer(ReplayLog(start=1), channels=store, rng=random.Random(0))
    with trio.fail_after(30):
        async with (
            served(server) as port,
            tr.open_reconnecting_websocket(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws,
        ):
            for n in range(3):
                assert await ws.publish("room", n) == str(n + 1)
    assert writes == []


async def test_the_send_lock_is_a_flushing_turn_only_on_tcp() -> None:
    client_stream, _ = trio.testing.memory_stream_pair()
    holder: Any = type("Holder", (), {})()
    holder._stream = client_stream
    assert type(send_turn_for(holder)) is Turn
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, _ignore, 0)
            port = listeners[0].socket.getsockname()[1]
            holder._stream = await trio.open_tcp_stream("127.0.0.1", port)
            assert isinstance(send_turn_for(holder), FlushingTurn)
            await holder._stream.aclose()
            nursery.cancel_scope.cancel()


async def _ignore(stream: trio.SocketStream) -> None:
    async with stream:
        await trio.sleep_forever()


async def test_what_a_write_left_behind_goes_out_first_with_the_next_send() -> None:
    """A write bigger than the socket buffers leaves bytes behind; the next send writes them."""
    # trio-websocket's server reader stops reading the socket once "second" waits
    # for the handler: the big ones stay in the socket buffers, and what they
    # cannot hold stays with the turn.
    big = ["h" * 900_000, "i" * 900_000, "j" * 900_000, "k" * 900_000]
    sent: list[str | bytes] = ["first", "second", *big]
    received: list[str | bytes] = []
    reading = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        server_ws = await request.accept()
        await reading.wait()
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            for _ in range(len(sent) + 1):
                received.append(await server_ws.get_message())
            await server_ws.get_message()  # until the client closes

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None
            )
            async with trio_websocket.open_websocket(
                "127.0.0.1", listener.port, "/", use_ssl=False
            ) as ws:
                stream = _tws.socket_stream(ws)
                assert stream is not None
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                turn = send_turn_for(ws)
                assert isinstance(turn, FlushingTurn)
                assert _tws.swap_send_lock(ws, turn)
                assert turn.can_write_now(ws)
                turn.write_now(ws, [str(m) for m in sent])
                assert turn.has_left  # the server does not read yet
                assert not turn.can_write_now(ws)  # nothing is written before the rest
                async with trio.open_nursery() as sends:
                    sends.start_soon(ws.send_message, "after")
                    await trio.testing.wait_all_tasks_blocked()
                    assert turn.locked()  # the sender holds the turn, flushing the rest
                    reading.set()
                assert not turn.has_left
                assert turn.can_write_now(ws)
                with trio.fail_after(10):
                    while len(received) < len(sent) + 1:
                        await trio.sleep(0.01)
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()
    assert received == [*sent, "after"]


async def test_a_flushing_turn_is_not_written_while_held_or_awaited() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, _ignore, 0)
            port = listeners[0].socket.getsockname()[1]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            turn = FlushingTurn(stream.socket)
            ws: Any = type("Open", (), {})()
            ws._close_reason = None
            ws._wsproto = type("P", (), {"state": ConnectionState.OPEN})()
            assert turn.can_write_now(ws)
            async with turn:
                assert not turn.can_write_now(ws)
            ws._close_reason = object()
            assert not turn.can_write_now(ws)  # closing
            await stream.aclose()
            nursery.cancel_scope.cancel()
