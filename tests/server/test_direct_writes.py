"""Direct writes from the fan-out to an idle client's socket (trio_reconnect/server/_direct.py).

Over real loopback TCP, since a direct write needs a real socket. The client
here is a raw TCP stream read through wsproto, so that every byte the server
wrote is parsed: a frame written in two parts with something else in between,
or a close frame after half a frame, is a protocol error. To make the
server's writes go through only in part, the server socket's send buffer and
the client's receive buffer are made small and the client stops reading.

Real sockets run on the real clock, so these tests wait on I/O and on the
server's own progress, never on timers; each has a ``fail_after`` guard.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import wsproto
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from trio_reconnect._protocol import encode_event
from trio_reconnect.server import (
    ClientState,
    ConnectedClient,
    ReconnectServer,
    ReplayLog,
    _connection,
    _direct,
)
from trio_reconnect.server._outbox import Outbox as _Outbox

#: A payload big enough for a few events to fill the small buffers.
_BIG = "x" * 8000


@pytest.fixture(params=["direct", "queued"])
def direct_writes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test runs with direct writes on and off: the same bytes must reach the client."""
    monkeypatch.setattr(_direct, "_DIRECT_WRITES", request.param == "direct")
    return bool(request.param == "direct")


class RawClient:
    """A websocket client on a raw TCP stream: every byte received goes through wsproto."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.events: list[wsproto.events.Event] = []
        self._text: list[str] = []

    async def open(self, last_event_id: str | None) -> None:
        await self.stream.send_all(self.ws.send(Request(host="127.0.0.1", target="/")))
        while not any(isinstance(e, AcceptConnection) for e in self.events):
            await self._receive()
        resume = {"type": "resume", "lastEventId": last_event_id}
        await self.send(TextMessage(data=json.dumps(resume)))

    async def send(self, event: wsproto.events.Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def _receive(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.events.append(TextMessage(data="".join(self._text)))
                    self._text.clear()
            else:
                self.events.append(event)
                closing = self.ws.state is ConnectionState.REMOTE_CLOSING
                if isinstance(event, CloseConnection) and closing:  # answer, as a client does
                    with contextlib.suppress(trio.BrokenResourceError):
                        await self.stream.send_all(self.ws.send(event.response()))
        return bool(data)

    async def receive_until(self, done: Any) -> None:
        """Read (and parse) until ``done(events)`` holds, or the server closes the stream."""
        while not done(self.events):
            if not await self._receive():
                return

    def frames(self) -> list[dict[str, Any]]:
        return [json.loads(e.data) for e in self.events if isinstance(e, TextMessage)]

    def event_ids(self) -> list[int]:
        return [int(f["id"]) for f in self.frames() if f["type"] == "event"]


@asynccontextmanager
async def served(server: ReconnectServer) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(server.serve, "127.0.0.1", 0)
        yield listener.port
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def raw_client(port: int, *, small_buffers: bool = False) -> AsyncIterator[RawClient]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    if small_buffers:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        yield RawClient(stream)
    finally:
        await stream.aclose()


async def ready_client(server: ReconnectServer, raw: RawClient) -> ConnectedClient:
    await raw.open(None)
    await raw.receive_until(lambda events: any(_is_ready(e) for e in events))
    (client,) = server.clients
    return client


def _is_ready(event: wsproto.events.Event) -> bool:
    return isinstance(event, TextMessage) and json.loads(event.data)["type"] == "ready"


async def published(server: ReconnectServer, count: int) -> None:
    """Wait until the node's fan-out has fed ``count`` events to its clients."""
    while server._parts.fanout.delivered < count:
        await trio.sleep(0.001)


async def fill(
    server: ReconnectServer, client: ConnectedClient, payload: str = _BIG, *, limit: int = 500
) -> int:
    """Publish ``payload`` until a direct write leaves bytes behind; how many were published.

    Without direct writes nothing is left behind: it stops at ``limit``.
    """
    total = 0
    while total < limit:
        total += 1
        await server.publish(payload)
        await published(server, total)
        if client._direct is not None and client._direct.events_left:
            break
    return total


def _small_send_buffer(client: ConnectedClient) -> None:
    client._ws._stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # type: ignore[attr-defined]


async def test_events_reach_an_idle_client_directly(direct_writes: bool) -> None:
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(0))
    with trio.fail_after(20):
        async with served(server) as port, raw_client(port) as raw:
            client = await ready_client(server, raw)
            assert (client._direct is not None) is direct_writes
            for n in range(1, 31):
                await server.publish(n)
                await raw.receive_until(lambda events, n=n: len(raw.event_ids()) >= n)
            assert raw.event_ids() == list(range(1, 31))
            assert [f["data"] for f in raw.frames() if f["type"] == "event"] == list(range(1, 31))
            while client.statistics().events_sent < 30:  # the write loop counts after its send
                await trio.sleep(0.001)
            assert client.statistics().events_sent == 30
            assert client.statistics().queued == 0
            if direct_writes:
                # The write loop never woke for them: every one was written by the fan-out.
                assert client._direct is not None
                assert client._direct.events_written == 30


async def test_bytes_left_behind_go_out_first_whole_and_in_order(direct_writes: bool) -> None:
    """A partial direct write, then queued events, a pong and a close frame: all well formed."""
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(0), queue_size=10_000)
    with trio.fail_after(30):
        async with served(server) as port, raw_client(port, small_buffers=True) as raw:
            client = await ready_client(server, raw)
            _small_send_buffer(client)
            # The client stops reading; publish until the socket is full.
            total = await fill(server, client, limit=500 if direct_writes else 40)
            if direct_writes:
                assert client._direct is not None
                assert client._direct.events_left == 1, total
            # Queued behind the bytes left: more events, and a ping whose pong
            # the server's websocket reader sends under the send lock.
            for _ in range(5):
                total += 1
                await server.publish(_BIG)
            await published(server, total)
            await raw.send(Ping(payload=b"are you there"))
            await trio.sleep(0.05)  # let the server's reader take the ping (it sends nothing yet)
            # Now read everything, then close.
            await raw.receive_until(lambda events: len(raw.event_ids()) >= total)
            await raw.receive_until(lambda events: any(isinstance(e, Pong) for e in events))
            assert raw.event_ids() == list(range(1, total + 1))
            assert all(f["data"] == _BIG for f in raw.frames() if f["type"] == "event")
            assert [e.payload for e in raw.events if isinstance(e, Pong)] == [b"are you there"]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.restart)
                await raw.receive_until(
                    lambda events: any(isinstance(e, CloseConnection) for e in events)
                )
            (close,) = [e for e in raw.events if isinstance(e, CloseConnection)]
            assert close.code == 1012
            assert client.statistics().events_sent == total


async def test_a_close_waits_for_the_bytes_left_behind(direct_writes: bool) -> None:
    """A drain while a direct write's rest is still unwritten: the close frame comes after it."""
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(0), queue_size=10_000)
    with trio.fail_after(30):
        async with served(server) as port, raw_client(port, small_buffers=True) as raw:
            client = await ready_client(server, raw)
            _small_send_buffer(client)
            total = await fill(server, client, limit=500 if direct_writes else 40)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.restart)
                await trio.sleep(0.05)  # the close is requested, and waits on the socket
                await raw.receive_until(
                    lambda events: any(isinstance(e, CloseConnection) for e in events)
                )
            ids = raw.event_ids()
            if direct_writes:  # every event written directly, the last one in part
                assert ids == list(range(1, total + 1))
            else:  # a close drops what is still queued (the client resumes after it)
                assert ids == list(range(1, len(ids) + 1))
            (close,) = [e for e in raw.events if isinstance(e, CloseConnection)]
            assert close.code == 1012


async def test_a_client_that_never_reads_is_aborted_cleanly(direct_writes: bool) -> None:
    """Its close times out while bytes are left: the connection ends, without half a frame."""
    server = ReconnectServer(
        ReplayLog(start=1), rng=random.Random(0), queue_size=10_000, close_timeout=0.2
    )
    with trio.fail_after(30):
        async with served(server) as port, raw_client(port, small_buffers=True) as raw:
            client = await ready_client(server, raw)
            _small_send_buffer(client)
            await fill(server, client, limit=500 if direct_writes else 40)
            await server.restart()  # the client does not read: the close times out
            assert client.state is ClientState.CLOSED
            # Whatever the server wrote before it gave up is whole frames, in order.
            await raw.receive_until(lambda events: False)
            ids = raw.event_ids()
            assert ids == list(range(1, len(ids) + 1))


async def test_a_reset_during_direct_writes_closes_the_client_quietly(
    direct_writes: bool, caplog: pytest.LogCaptureFixture
) -> None:
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(0))
    with trio.fail_after(20):
        async with served(server) as port:
            async with raw_client(port) as raw:
                client = await ready_client(server, raw)
                raw.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The client reset the connection (linger 0). Publishing goes on.
            for _ in range(50):
                await server.publish("after the reset")
                await trio.sleep(0.001)
                if client.state is ClientState.CLOSED:
                    break
            with trio.fail_after(5):
                await client.wait_closed()
            assert server.clients == ()
            assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_the_outbox_is_not_idle_while_its_reader_holds_frames() -> None:
    """A direct write must not overtake frames the write loop took and is about to write."""
    outbox = _Outbox(10)
    assert outbox.idle()
    assert outbox.put_many_nowait([(1, "one"), (2, "two")])
    assert not outbox.idle()
    taken = await outbox.get_many(_connection._WRITE_BATCH)
    assert taken == [(1, "one"), (2, "two")]
    assert not outbox.idle()  # taken, not written: a direct write now would overtake them
    outbox.written()
    assert outbox.idle()


async def test_a_wake_returns_the_reader_empty_handed() -> None:
    outbox = _Outbox(10)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            got: list[list[Any]] = []

            async def reader() -> None:
                got.append(await outbox.get_many(4))
                got.append(await outbox.get_many(4))

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            outbox.wake()
            await trio.testing.wait_all_tasks_blocked()
            assert got == [[]]
            outbox.wake()  # a wake with frames queued: the frames are returned
            outbox.put_many_nowait([(3, "three")])
    assert got == [[], [(3, "three")]]


async def test_an_event_does_not_overtake_what_is_queued(direct_writes: bool) -> None:
    """Fed while a message waits in the queue (its write loop not yet woken): it goes after it."""
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(0))
    with trio.fail_after(20):
        async with served(server) as port, raw_client(port) as raw:
            client = await ready_client(server, raw)
            while client.state is not ClientState.READY:  # the server is past its ready
                await trio.sleep(0.001)
            await trio.testing.wait_all_tasks_blocked()  # its write loop waits on the queue
            # No checkpoint between the two: the write loop has not run.
            assert client._outbox.put_many_nowait([(None, "queued first")])
            client.feed([(7, encode_event("7", "fed second"))])

            def texts() -> list[str]:
                return [e.data for e in raw.events if isinstance(e, TextMessage)]

            await raw.receive_until(lambda events: len(texts()) >= 3)
            assert texts()[1:] == ["queued first", encode_event("7", "fed second")]
