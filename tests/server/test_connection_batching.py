"""The write loop's batched writes: several queued frames in ONE write.

A :class:`ConnectedClient` is driven directly over a real trio-websocket
connection pair whose server side writes through a recording stream, so the
frames queued at once, and what each ``send_all`` carried, are known exactly.
Every test runs on both write paths (``write_path``, tests/server/conftest.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest
import trio
import trio.lowlevel
import trio.testing
import trio_websocket
from trio.testing import MockClock
from trio_websocket import ConnectionClosed, WebSocketConnection

from trio_reconnect import _tws
from trio_reconnect._protocol import HandshakeOutcome
from trio_reconnect.server import _connection
from trio_reconnect.server._clientbase import ClientState, ConnectionSettings
from trio_reconnect.server._connection import ConnectedClient

CLOSE_TIMEOUT = 2.0


class RecordingStream(trio.abc.Stream):
    """A stream that records every ``send_all`` and can hold writes at a gate."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.writes: list[bytes] = []
        self.gate: trio.Event | None = None
        self.held = trio.Event()
        self.broken = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.broken:
            raise trio.BrokenResourceError("broken on purpose")
        self.writes.append(bytes(data))
        if self.gate is not None:
            self.held.set()
            await self.gate.wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Hooks:
    def __init__(self) -> None:
        self.slow = 0

    def hint_reason(self, reason: str) -> str:
        return reason

    async def received(self, client: ConnectedClient, message: str | bytes) -> None:
        pass

    def too_slow(self, client: ConnectedClient) -> None:
        self.slow += 1

    def half_open(self, client: ConnectedClient) -> None:
        raise AssertionError("no pings here")

    def leaving(self, client: ConnectedClient) -> None:
        pass

    def gone(self, client: ConnectedClient) -> None:
        pass


async def pair(
    nursery: trio.Nursery,
) -> tuple[WebSocketConnection, WebSocketConnection, RecordingStream]:
    """A connected (server, client) trio-websocket pair; the server writes through the recorder."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    recorder = RecordingStream(server_stream)
    client_ws: list[WebSocketConnection] = []

    async def open_client() -> None:
        client_ws.append(
            await trio_websocket.wrap_client_stream(
                nursery, cast(Any, client_stream), "localhost", "/"
            )
        )

    nursery.start_soon(open_client)
    request = await trio_websocket.wrap_server_stream(nursery, recorder)
    server_ws = await request.accept()
    while not client_ws:
        await trio.lowlevel.checkpoint()
    return server_ws, client_ws[0], recorder


def make_client(
    ws: WebSocketConnection, queue_size: int = 100, hooks: Hooks | None = None
) -> ConnectedClient:
    settings = ConnectionSettings(
        queue_size=queue_size,
        close_timeout=CLOSE_TIMEOUT,
        handshake_timeout=10.0,
        ping_interval=None,
        ping_timeout=10.0,
    )
    return ConnectedClient(1, "peer", "/", 0.0, ws, settings, hooks or Hooks())


def start(
    nursery: trio.Nursery,
    client: ConnectedClient,
    frames: Sequence[tuple[int | None, str | bytes]],
    covered: int | None = None,
) -> None:
    """Run ``client`` with ``frames`` queued (bypassing ``feed``) once ``ready``."""

    async def handshake(client: ConnectedClient) -> bool:
        client.set_ready(HandshakeOutcome.REPLAYED, covered)
        assert client._outbox.put_many_nowait(list(frames))
        return True

    nursery.start_soon(client.run, handshake)


async def receive(ws: WebSocketConnection, count: int) -> list[str | bytes]:
    return [await ws.get_message() for _ in range(count)]


async def test_real_connections_take_the_batched_path(
    write_path: str, nursery: trio.Nursery
) -> None:
    # The suites run both ways only if the guard accepts trio-websocket's objects.
    with trio.fail_after(10):
        server_ws, _, _ = await pair(nursery)
    assert _connection._can_write_batched(server_ws) is (write_path == "batched")
    # Anything without the internals takes the public path.
    assert not _connection._can_write_batched(cast(Any, object()))


async def test_queued_frames_go_out_in_order_in_one_write(
    write_path: str, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        server_ws, client_ws, recorder = await pair(nursery)
        client = make_client(server_ws)
        frames: list[tuple[int | None, str | bytes]] = [(i, f"e{i}") for i in range(1, 6)]
        frames.insert(2, (None, b"\x00binary"))
        frames.append((None, "text"))
        before = len(recorder.writes)
        start(nursery, client, frames)
        assert await receive(client_ws, len(frames)) == [m for _, m in frames]
        writes = recorder.writes[before:]
        assert len(writes) == (1 if write_path == "batched" else len(frames))
        stats = client.statistics()
        assert (stats.events_sent, stats.messages_sent) == (5, 2)
        assert stats.queued == 0
        await client.aclose()


async def test_batches_are_bounded(write_path: str, nursery: trio.Nursery) -> None:
    count = 2 * _connection._WRITE_BATCH + 1
    with trio.fail_after(10):
        server_ws, client_ws, recorder = await pair(nursery)
        client = make_client(server_ws, queue_size=count)
        frames: list[tuple[int | None, str | bytes]] = [(i, str(i)) for i in range(count)]
        before = len(recorder.writes)
        start(nursery, client, frames)
        assert await receive(client_ws, count) == [m for _, m in frames]
        writes = len(recorder.writes) - before
        assert writes == (3 if write_path == "batched" else count)
        await client.aclose()


async def test_filter_holds_inside_a_batch(write_path: str, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        server_ws, client_ws, _recorder = await pair(nursery)
        client = make_client(server_ws)
        # Queued behind set_ready's purge (as a lagging fan-out could): the
        # write loop's own filter must drop 4 and 5, and keep the message.
        frames: list[tuple[int | None, str | bytes]] = [
            (4, "e4"),
            (None, "m"),
            (5, "e5"),
            (6, "e6"),
            (7, "e7"),
        ]
        start(nursery, client, frames, covered=5)
        assert await receive(client_ws, 3) == ["m", "e6", "e7"]
        await client.aclose()
        with pytest.raises(ConnectionClosed) as closed:
            await client_ws.get_message()  # nothing else came before the close
        assert closed.value.reason is not None
        assert closed.value.reason.code == 1000
        stats = client.statistics()
        assert (stats.events_sent, stats.messages_sent) == (2, 1)


async def test_nothing_left_after_the_filter_writes_nothing(
    write_path: str, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        server_ws, _client_ws, recorder = await pair(nursery)
        client = make_client(server_ws)
        before = len(recorder.writes)
        start(nursery, client, [(1, "e1"), (2, "e2")], covered=2)
        await trio.testing.wait_all_tasks_blocked()
        assert len(recorder.writes) == before
        assert client.statistics().events_sent == 0
        await client.aclose()


async def test_close_during_a_batched_write_takes_effect_after_it(
    write_path: str, autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        server_ws, client_ws, recorder = await pair(nursery)
        client = make_client(server_ws)
        frames: list[tuple[int | None, str | bytes]] = [(i, f"e{i}") for i in range(1, 5)]
        recorder.gate = trio.Event()
        start(nursery, client, frames)
        await recorder.held.wait()  # the first write is under way
        client.close(4001, "bye")
        assert client.state is ClientState.CLOSING
        await trio.sleep(CLOSE_TIMEOUT / 2)
        recorder.gate.set()
        recorder.gate = None
        if write_path == "batched":
            # The whole batch was one write: all of it goes out, then the close.
            assert await receive(client_ws, 4) == ["e1", "e2", "e3", "e4"]
            expected = 4
        else:
            # One frame at a time: the one in progress finishes, the queue is dropped.
            assert await receive(client_ws, 1) == ["e1"]
            expected = 1
        with pytest.raises(ConnectionClosed) as closed:
            await client_ws.get_message()
        assert closed.value.reason is not None
        assert (closed.value.reason.code, closed.value.reason.reason) == (4001, "bye")
        await client.wait_closed()
        assert client.statistics().events_sent == expected


async def test_a_batched_write_that_never_ends_is_dropped_after_close_timeout(
    write_path: str, autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        server_ws, _client_ws, recorder = await pair(nursery)
        client = make_client(server_ws)
        recorder.gate = trio.Event()  # never set
        before = len(recorder.writes)
        start(nursery, client, [(i, f"e{i}") for i in range(1, 5)])
        await recorder.held.wait()
        closing_at = trio.current_time()
        client.close(1000, None)
        await client.wait_closed()
        assert trio.current_time() == closing_at + CLOSE_TIMEOUT
        # Half a frame may be out: no close frame was written after it.
        assert len(recorder.writes) == before + 1
        assert client.statistics().events_sent == 0


async def test_writing_on_a_closing_connection_raises_and_writes_nothing(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(10):
        server_ws, _client_ws, recorder = await pair(nursery)
        nursery.start_soon(server_ws.aclose)
        await trio.testing.wait_all_tasks_blocked()
        before = len(recorder.writes)
        with pytest.raises(ConnectionClosed):
            await _tws.write_batch(server_ws, ["a", "b"])
        assert len(recorder.writes) == before


async def test_a_broken_stream_closes_the_connection(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        server_ws, _client_ws, recorder = await pair(nursery)
        recorder.broken = True
        with pytest.raises(ConnectionClosed) as closed:
            await _tws.write_batch(server_ws, ["a", "b"])
        assert closed.value.reason is not None
        assert closed.value.reason.code == 1006
        assert server_ws.closed is not None
        assert server_ws.closed.code == 1006


async def test_frames_taken_for_a_batch_still_count_against_the_queue(
    write_path: str, nursery: trio.Nursery
) -> None:
    # Both ways, the frame being written is not counted and the rest are:
    # a batch does not make room for more than one frame at a time did.
    with trio.fail_after(10):
        server_ws, _client_ws, recorder = await pair(nursery)
        hooks = Hooks()
        client = make_client(server_ws, queue_size=4, hooks=hooks)
        recorder.gate = trio.Event()
        start(nursery, client, [(i, f"e{i}") for i in range(1, 5)])
        await recorder.held.wait()
        assert client.statistics().queued == 3
        client.feed([(5, "e5")])
        assert hooks.slow == 0
        client.feed([(6, "e6")])
        assert hooks.slow == 1
        recorder.gate.set()
        client.abort()
        await client.wait_closed()


async def test_send_many_goes_out_in_order_in_one_write(
    write_path: str, nursery: trio.Nursery
) -> None:
    # The publish worker's answers: one step into the queue, one write out.
    with trio.fail_after(10):
        server_ws, client_ws, recorder = await pair(nursery)
        client = make_client(server_ws)
        start(nursery, client, [])
        await trio.testing.wait_all_tasks_blocked()
        before = len(recorder.writes)
        messages: list[str | bytes] = [f"a{i}" for i in range(10)]
        messages.insert(3, b"\x01bytes")
        await client.send_many(messages)
        assert await receive(client_ws, len(messages)) == messages
        writes = len(recorder.writes) - before
        assert writes == (1 if write_path == "batched" else len(messages))
        assert client.statistics().messages_sent == len(messages)
        await client.aclose()


async def test_send_many_waits_for_room_and_keeps_the_order(
    write_path: str, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        server_ws, client_ws, recorder = await pair(nursery)
        client = make_client(server_ws, queue_size=4)
        recorder.gate = trio.Event()
        start(nursery, client, [(1, "e1")])
        await recorder.held.wait()  # e1 is being written: 4 free places
        messages = [f"m{i}" for i in range(11)]
        sent = trio.Event()

        async def send_them() -> None:
            await client.send_many(messages)
            sent.set()

        nursery.start_soon(send_them)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()  # 4 queued, waiting for room for the rest
        assert client.statistics().queued == 4
        recorder.gate.set()
        recorder.gate = None
        assert await receive(client_ws, 12) == ["e1", *messages]
        await sent.wait()
        assert client.statistics().messages_sent == len(messages)
        await client.aclose()


async def test_send_many_refuses_bad_messages_and_closed_clients(
    write_path: str, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        server_ws, _client_ws, _recorder = await pair(nursery)
        client = make_client(server_ws)
        with pytest.raises(TypeError, match="int"):
            await client.send_many(["fine", cast(Any, 3)])
        assert client.statistics().queued == 0  # nothing of a refused batch is queued
        client.close(1000, None)
        with pytest.raises(ConnectionClosed):
            await client.send_many(["late"])
