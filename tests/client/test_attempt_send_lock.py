"""trio-websocket's send lock on the client's connections (``_attempt._replace_send_lock``).

Once a connection is open, the client puts a :class:`~trio_reconnect._turn.Turn`
in place of trio-websocket's ``trio.StrictFIFOLock``: the same mutual
exclusion and order, without an owner and without a schedule point when it
is free. These tests check that it is put in only where that is safe, and
that writes still never overlap: user messages from several senders and the
pongs of trio-websocket's reader, over a stream whose every write waits for
the peer to read it. Each runs with the replacement and without it.
"""

from __future__ import annotations

from typing import cast

import pytest
import trio
import trio.testing
import trio_websocket

import trio_reconnect as tr
from tests.support.fake_server import FakeServer, accept_and_resume, hint, ready_forever, send_ready
from trio_reconnect import Target, _attempt
from trio_reconnect._turn import Turn

URL = "ws://example.test/"


@pytest.fixture(params=["turn", "trio lock"])
def fast_lock(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    fast: bool = request.param == "turn"
    monkeypatch.setattr(_attempt, "_FAST_SEND_LOCK", fast)
    return fast


class LockstepServer(FakeServer):
    """A :class:`FakeServer` whose streams hand bytes over only as the peer reads
    them (``trio.testing.lockstep_stream_pair``): a write holds the send lock
    until the other side has read all of it."""

    async def open_stream(self, target: Target) -> trio.abc.Stream:
        self.connects.append(trio.current_time())
        self.targets.append(target)
        client, server = trio.testing.lockstep_stream_pair()
        self.nursery.start_soon(self._serve, server, len(self.connects))
        return client


def send_lock(ws: trio_websocket.WebSocketConnection) -> Turn | trio.StrictFIFOLock:
    """trio-websocket's send lock of ``ws``, whichever it is now."""
    lock: Turn | trio.StrictFIFOLock = ws._stream_lock
    return lock


def ready_lock(ws: tr.ReconnectingWebSocket) -> Turn | trio.StrictFIFOLock:
    connection = ws._run.ready_ws
    assert connection is not None
    return send_lock(connection)


async def test_a_ready_connection_sends_under_a_turn(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, fast_lock: bool
) -> None:
    server = FakeServer(nursery, ready_forever)
    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, ping_interval=None
        ) as ws:
            await ws.wait_ready()
            lock = ready_lock(ws)
            assert type(lock) is (Turn if fast_lock else trio.StrictFIFOLock)
            await ws.send_message("through the lock")
            assert not lock.locked()


async def open_pair(
    nursery: trio.Nursery,
) -> tuple[trio_websocket.WebSocketConnection, trio_websocket.WebSocketConnection]:
    """A client and a server websocket of trio-websocket over a memory stream pair."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    accepted: list[trio_websocket.WebSocketConnection] = []
    done = trio.Event()

    async def serve() -> None:
        request = await trio_websocket.wrap_server_stream(nursery, server_stream)
        accepted.append(await request.accept())
        done.set()

    nursery.start_soon(serve)
    client = await trio_websocket.wrap_client_stream(
        nursery, cast(trio.SocketStream, client_stream), "example.test", "/"
    )
    await done.wait()
    return client, accepted[0]


async def test_a_held_lock_is_not_replaced(nursery: trio.Nursery) -> None:
    """Swapping a held lock would let the next send write while its holder still
    does (it gives back the lock it took); it stays until a later chance."""
    with trio.fail_after(10):
        client, _ = await open_pair(nursery)
        original = send_lock(client)
        async with original:
            _attempt._replace_send_lock(client)
            assert send_lock(client) is original
        _attempt._replace_send_lock(client)
        assert type(send_lock(client)) is Turn
        await client.aclose()


async def test_a_lock_of_another_kind_is_left_alone(nursery: trio.Nursery) -> None:
    """A trio-websocket whose send lock is not the ``StrictFIFOLock`` of 0.12
    keeps its own: the client does not guess what else it may rely on."""
    with trio.fail_after(10):
        client, _ = await open_pair(nursery)
        other: object = trio.Lock()
        client._stream_lock = other  # type: ignore[assignment]
        _attempt._replace_send_lock(client)
        assert send_lock(client) is other
        del client._stream_lock
        _attempt._replace_send_lock(client)  # no attribute at all: nothing happens
        assert not hasattr(client, "_stream_lock")


async def test_senders_and_pongs_never_write_at_the_same_time(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, fast_lock: bool
) -> None:
    """Three senders and the reader's pongs share a stream on which each write
    waits for the server to read it, and the server reads slowly while it
    pings: any overlap of two writes would raise ``BusyResourceError`` out of
    the stream and drop the connection. Every frame arrives, each sender's in
    its order, every ping is answered, on the first connection."""
    senders, per_sender, pings = 3, 30, 40
    received: list[str | bytes] = []
    answered: list[int] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)

        async def pinger() -> None:
            for i in range(pings):
                await ws.ping(f"ping {i}".encode())
                answered.append(i)
                await trio.sleep(0.003)

        async with trio.open_nursery() as tasks:
            tasks.start_soon(pinger)
            while len(received) < senders * per_sender:
                received.append(await ws.get_message())
                await trio.sleep(0.001)
            while len(answered) < pings:
                await trio.sleep(0.01)
        await trio.sleep_forever()

    server = LockstepServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, ping_interval=None
        ) as ws:

            async def send(sender: int) -> None:
                for i in range(per_sender):
                    await ws.send_message(f"{sender}-{i}")

            async with trio.open_nursery() as tasks:
                for sender in range(senders):
                    tasks.start_soon(send, sender)
            while len(answered) < pings:
                await trio.sleep(0.01)
            assert type(ready_lock(ws)) is (Turn if fast_lock else trio.StrictFIFOLock)
    assert len(server.connects) == 1
    assert sorted(received) == sorted(f"{s}-{i}" for s in range(senders) for i in range(per_sender))
    for sender in range(senders):
        mine = [m for m in received if isinstance(m, str) and m.startswith(f"{sender}-")]
        assert mine == [f"{sender}-{i}" for i in range(per_sender)]
    assert answered == list(range(pings))


async def test_a_lock_held_when_the_websocket_opens_is_replaced_at_ready(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chance comes as the websocket opens, when trio-websocket's
    reader may be writing a pong; the second at ``ready``. Here the lock is
    held at the first one (taken without waiting, in the attempt's task)."""
    replace = _attempt._replace_send_lock
    seen: list[str] = []

    def held_the_first_time(ws: trio_websocket.WebSocketConnection) -> None:
        lock = ws._stream_lock
        if not seen:
            lock.acquire_nowait()
            try:
                replace(ws)
            finally:
                lock.release()
        else:
            replace(ws)
        seen.append(type(send_lock(ws)).__name__)

    monkeypatch.setattr(_attempt, "_replace_send_lock", held_the_first_time)
    server = FakeServer(nursery, ready_forever)
    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, ping_interval=None
        ) as ws:
            await ws.wait_ready()
            await ws.send_message("through the turn")
    assert seen == ["StrictFIFOLock", "Turn"]


async def test_every_connection_gets_its_own_turn(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n == 1:
            await ws.get_message()
            await ws.aclose(*hint(0))
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    locks: list[object] = []
    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, ping_interval=None
        ) as ws:
            await ws.wait_ready()
            locks.append(ready_lock(ws))
            await ws.send_message("on the first connection")
            while len(server.connects) < 2 or ws.state is not tr.ConnectionState.OPEN:
                await trio.sleep(0.01)
            locks.append(ready_lock(ws))
            await ws.send_message("on the second")
    assert [type(lock) for lock in locks] == [Turn, Turn]
    assert locks[0] is not locks[1]
