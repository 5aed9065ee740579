"""Adversarial tests of the fan-out's direct writes (trio_reconnect/server/_direct.py).

Real loopback TCP, a raw client whose every received byte is parsed by
wsproto (see :mod:`tests.server.test_direct_writes`), small socket buffers
and a client that stops reading, so that a direct write leaves bytes behind
and somebody else has to write them: the write loop, trio-websocket's reader
answering a ping or a close, the close frame. No timed assertions; every
wait has a ``fail_after`` guard.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
from typing import Any

import pytest
import trio
import wsproto
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from trio_reconnect._protocol import encode_event
from trio_reconnect.server import ClientState, ConnectedClient, ReconnectServer, ReplayLog

from .test_direct_writes import (
    _BIG,
    RawClient,
    _is_ready,
    _small_send_buffer,
    fill,
    published,
    raw_client,
    ready_client,
    served,
)

#: An event far bigger than the small socket buffers: a direct write of it
#: leaves most of it behind, and nothing takes it while the client does not read.
_HUGE = "y" * 1_000_000


async def _fill(server: ReconnectServer, client: ConnectedClient) -> int:
    """Publish events until a direct write leaves bytes behind; how many were published.

    The last one is huge: what is left of it stays left while the client does not read.
    """
    total = await fill(server, client, _HUGE)
    assert client._direct is not None
    assert client._direct.events_left
    return total


async def _stalled(server: ReconnectServer, raw: RawClient) -> tuple[ConnectedClient, int]:
    """A ready client that stopped reading, its write loop waiting to flush what is left."""
    client = await ready_client(server, raw)
    _small_send_buffer(client)
    total = await _fill(server, client)
    while not client._sending:  # the write loop flushes the rest, and waits
        await trio.sleep(0.001)
    return client, total


async def _pong_waiting(raw: RawClient, client: ConnectedClient) -> None:
    """The client pings: trio-websocket's reader waits for the send lock to answer."""
    await raw.send(Ping(payload=b"ping"))
    await _lock_waiters(client, 1)


async def _lock_waiters(client: ConnectedClient, count: int) -> None:
    """Wait until ``count`` tasks wait for the connection's send lock."""
    lock = client._ws._stream_lock._lock  # type: ignore[attr-defined]
    while lock.statistics().tasks_waiting < count:
        await trio.sleep(0.001)


def _whole_frames_in_order(raw: RawClient) -> None:
    ids = raw.event_ids()
    assert ids == list(range(1, len(ids) + 1))
    assert all(f["data"] in (_BIG, _HUGE) for f in raw.frames() if f["type"] == "event")


@pytest.fixture
def direct_only(write_path: str) -> None:
    if write_path != "batched":
        pytest.skip("direct writes only")


async def test_a_pong_waiting_behind_the_rest_when_the_close_times_out(
    direct_only: None, caplog: pytest.LogCaptureFixture
) -> None:
    """trio-websocket's reader takes the lock over from a flush cut short, then the stream closes.

    The reader waits (in the lock's flush) for the socket to take the rest
    when our close gives up and closes the stream: that must end the
    connection quietly, as a ``send_all`` on a closed stream does in
    trio-websocket, not crash its reader task.
    """
    server = ReconnectServer(
        ReplayLog(start=1), rng=random.Random(0), queue_size=10_000, close_timeout=0.2
    )
    with trio.fail_after(30):
        async with served(server) as port, raw_client(port, small_buffers=True) as raw:
            client, _ = await _stalled(server, raw)
            await _pong_waiting(raw, client)
            await server.restart()
            assert client.state is ClientState.CLOSED
            await raw.receive_until(lambda events: False)
            _whole_frames_in_order(raw)
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not errors, errors


async def test_a_close_frame_from_the_peer_while_bytes_are_left(direct_only: None) -> None:
    """The peer closes while the rest waits: trio-websocket's answer goes out after the rest."""
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(0), queue_size=10_000)
    with trio.fail_after(30):
        async with served(server) as port, raw_client(port, small_buffers=True) as raw:
            client, total = await _stalled(server, raw)
            await raw.send(CloseConnection(code=1000, reason="bye"))
            await _lock_waiters(client, 1)  # the reader's answer waits for the lock
            await raw.receive_until(
                lambda events: any(isinstance(e, CloseConnection) for e in events)
            )
            assert raw.event_ids() == list(range(1, total + 1))
            _whole_frames_in_order(raw)
            (answer,) = [e for e in raw.events if isinstance(e, CloseConnection)]
            assert answer.code == 1000
            await client.wait_closed()
            stats = client.statistics()
            assert (stats.events_sent, stats.queued) == (total, 0)
            assert (stats.close_code, stats.close_reason) == (1000, "bye")


class _AnsweringClient(RawClient):
    """A raw client that reads in a task of its own, at its own pace, and answers pings."""

    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__(stream)
        self.send_lock = trio.Lock()
        self.binary: list[bytes] = []

    async def send(self, event: wsproto.events.Event) -> None:
        async with self.send_lock:
            await self.stream.send_all(self.ws.send(event))

    async def read_forever(self, rng: random.Random) -> None:
        while True:
            data = await self.stream.receive_some(rng.choice((512, 4096, 65536)))
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, TextMessage | BytesMessage):
                    self.events.append(event)
                elif isinstance(event, Ping):
                    self.events.append(event)
                    with contextlib.suppress(trio.BrokenResourceError):
                        await self.send(event.response())
                else:
                    self.events.append(event)
                    closing = self.ws.state is ConnectionState.REMOTE_CLOSING
                    if isinstance(event, CloseConnection) and closing:
                        with contextlib.suppress(trio.BrokenResourceError):
                            await self.send(event.response())
            if not data:
                return
            if rng.random() < 0.2:
                await trio.sleep(rng.choice((0.0005, 0.001, 0.003)))

    def received(self) -> list[tuple[str, Any]]:
        """What arrived after ``ready``: ``("event", id)`` and ``("message", text or bytes)``."""
        out: list[tuple[str, Any]] = []
        text: list[str] = []
        data: list[bytes] = []
        for event in self.events:
            if isinstance(event, TextMessage):
                text.append(event.data)
                if event.message_finished:
                    whole = "".join(text)
                    text.clear()
                    if whole.startswith("{"):
                        frame = json.loads(whole)
                        if frame["type"] == "event":
                            out.append(("event", int(frame["id"])))
                    else:
                        out.append(("message", whole))
            elif isinstance(event, BytesMessage):
                data.append(bytes(event.data))
                if event.message_finished:
                    out.append(("message", b"".join(data)))
                    data.clear()
        return out


@pytest.mark.parametrize("seed", range(4))
async def test_events_messages_pings_and_pongs_interleaved(seed: int) -> None:
    """Events fed (directly or queued), messages sent, pings both ways: all whole, in order.

    The client reads at a random pace through small buffers, so direct
    writes go through whole, in part, or not at all, and the write loop, the
    ping loop and trio-websocket's reader all take turns at the send lock.
    """
    rng = random.Random(seed)
    server = ReconnectServer(
        ReplayLog(start=1),
        rng=random.Random(0),
        queue_size=100_000,
        ping_interval=0.003,
        ping_timeout=20,
    )
    expected: list[tuple[str, Any]] = []
    with trio.fail_after(30):
        async with served(server) as port:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            raw = _AnsweringClient(stream)
            client = await ready_client(server, raw)
            _small_send_buffer(client)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(raw.read_forever, random.Random(seed + 100))
                seq = pings = 0
                for step in range(300):
                    roll = rng.random()
                    if roll < 0.45:
                        frames = []
                        for _ in range(rng.choice((1, 1, 1, 2, 5))):
                            seq += 1
                            size = rng.choice((10, 10, 1000, 1000, 30_000))
                            frames.append((seq, encode_event(str(seq), "e" * size)))
                            expected.append(("event", seq))
                        client.feed(frames)
                    elif roll < 0.6:
                        message: str | bytes = (
                            f"m{step}" * rng.choice((1, 2000))
                            if rng.random() < 0.7
                            else f"b{step}".encode()
                        )
                        await client.send(message)
                        expected.append(("message", message))
                    elif roll < 0.7:
                        await raw.send(Ping(payload=step.to_bytes(4, "big")))
                        pings += 1
                    else:
                        await trio.sleep(rng.choice((0, 0.001, 0.001, 0.003)))
                    assert client.statistics().queued <= 10_000
                while len(raw.received()) < len(expected):
                    await trio.sleep(0.001)
                assert raw.received() == expected
                events = sum(1 for kind, _ in expected if kind == "event")
                while client.statistics().events_sent < events or client.statistics().queued:
                    await trio.sleep(0.001)
                stats = client.statistics()
                assert stats.events_sent == events
                assert stats.messages_sent == len(expected) - events
                assert client.state is ClientState.READY
                # Every ping of ours answered first: a ping that reaches the server
                # after its close frame trips trio-websocket issue #184.
                while sum(1 for e in raw.events if isinstance(e, Pong)) < pings:
                    await trio.sleep(0.001)
                await server.restart()  # the reader answers the close, then reads to the end
            await stream.aclose()
    # The close frame, after everything (then wsproto reports the end of the stream).
    first = next(i for i, e in enumerate(raw.events) if isinstance(e, CloseConnection))
    close = raw.events[first]
    assert isinstance(close, CloseConnection)
    assert close.code == 1012
    assert not [e for e in raw.events[first:] if isinstance(e, TextMessage | BytesMessage)]
    assert raw.received() == expected


async def test_a_flush_cut_short_by_the_close_goes_on_before_the_close_frame(
    direct_only: None,
) -> None:
    """The close's deadline cuts the write loop's flush; the close frame's send finishes it.

    A cancelled flush knows what is left, so the close frame can still
    follow it (within its own ``close_timeout``): a client that reads again
    in time gets every event whole, then the close frame.
    """
    server = ReconnectServer(
        ReplayLog(start=1), rng=random.Random(0), queue_size=10_000, close_timeout=1.0
    )
    with trio.fail_after(30):
        async with served(server) as port, raw_client(port, small_buffers=True) as raw:
            client, total = await _stalled(server, raw)
            lock = client._ws._stream_lock
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.restart)
                # The write loop's flush is cut; the close frame's send takes the lock.
                while client._closing is None or not lock.locked():
                    await trio.sleep(0.001)
                assert client._direct is not None
                assert client._direct.events_left == 1
                await raw.receive_until(
                    lambda events: any(isinstance(e, CloseConnection) for e in events)
                )
            assert raw.event_ids() == list(range(1, total + 1))
            _whole_frames_in_order(raw)
            (close,) = [e for e in raw.events if isinstance(e, CloseConnection)]
            assert close.code == 1012
            assert client.statistics().events_sent == total


async def test_a_restart_of_many_clients_some_stuck_with_bytes_left(
    direct_only: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Readers and stalled clients (each with a pong waiting behind its rest) on one node.

    The readers get every event and the close frame; the stalled ones, whole
    frames in order until the server gives up on them. Nothing is logged as
    an error, and the restart returns with every client gone.
    """
    server = ReconnectServer(
        ReplayLog(start=1), rng=random.Random(0), queue_size=10_000, close_timeout=0.3
    )
    with trio.fail_after(30):
        async with served(server) as port, contextlib.AsyncExitStack() as stack:
            readers: list[_AnsweringClient] = []
            stalled: list[RawClient] = []
            for n in range(16):
                stream = await stack.enter_async_context(
                    await trio.open_tcp_stream("127.0.0.1", port)
                )
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                raw = _AnsweringClient(stream) if n % 2 else RawClient(stream)
                await raw.open(None)
                await raw.receive_until(lambda events: any(_is_ready(e) for e in events))
                (readers if n % 2 else stalled).append(raw)  # type: ignore[arg-type]
            clients = {c.remote: c for c in server.clients}
            by_raw = {}
            for raw in [*readers, *stalled]:
                local = raw.stream.socket.getsockname()
                by_raw[id(raw)] = clients[f"{local[0]}:{local[1]}"]
            for client in clients.values():
                _small_send_buffer(client)
            async with trio.open_nursery() as nursery:
                for raw in readers:
                    nursery.start_soon(raw.read_forever, random.Random(id(raw)))
                total = 0
                while not all(by_raw[id(r)]._direct.events_left for r in stalled):  # type: ignore[union-attr]
                    total += 1
                    await server.publish(_HUGE if total % 3 == 0 else _BIG)
                    await published(server, total)
                    assert total < 200
                for raw in stalled:
                    client = by_raw[id(raw)]
                    while not client._sending:
                        await trio.sleep(0.001)
                    await raw.send(Ping(payload=b"stalled"))
                for raw in stalled:
                    await _lock_waiters(by_raw[id(raw)], 1)
                summary = await server.restart()
                assert server.clients == ()
                assert summary.drained == 16
            for raw in stalled:
                await raw.receive_until(lambda events: False)
                _whole_frames_in_order(raw)
            for reader in readers:
                assert reader.received() == [("event", n) for n in range(1, total + 1)]
                (close, *_) = [e for e in reader.events if isinstance(e, CloseConnection)]
                assert close.code == 1012
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not errors, errors


async def test_a_shutdown_aborts_a_stalled_client_while_its_reader_flushes(
    direct_only: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The drain's deadline aborts the client while trio-websocket's reader waits in the flush."""
    server = ReconnectServer(
        ReplayLog(start=1), rng=random.Random(0), queue_size=10_000, close_timeout=60
    )
    with trio.fail_after(30):
        async with served(server) as port, raw_client(port, small_buffers=True) as raw:
            client, _ = await _stalled(server, raw)
            await _pong_waiting(raw, client)
            summary = await server.shutdown(drain_timeout=0.2)
            assert (summary.drained, summary.aborted) == (1, 1)
            assert client.state is ClientState.CLOSED
            await raw.receive_until(lambda events: False)
            _whole_frames_in_order(raw)
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not errors, errors
