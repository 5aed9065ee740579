"""How received messages reach the application, both ways the client can do it.

On a ready connection trio-websocket's reader task puts every message
straight into the client's inbox (no task of ours in between); where that is
not possible, the client reads with ``get_message()`` in its own task. Both
ways must behave the same: order kept across the handshake boundary and
across reconnects, nothing after a close, duplicates dropped, the inbox
bounded, a slow consumer told apart from a dead server, and an oversized
message closed with 1009 and retried. Every test runs in both modes.
"""

from __future__ import annotations

import json
import random

import pytest
import trio
import trio.testing
import trio_websocket
from wsproto.events import TextMessage

import trio_reconnect as tr
from tests.support.fake_server import FakeServer, accept_and_resume, hint, send_event, send_ready
from trio_reconnect import _delivery
from trio_reconnect.server import ReconnectServer, ReplayLog
from trio_reconnect.testing import MemoryNetwork

URL = "ws://example.test/"


@pytest.fixture(params=["direct", "get_message"], autouse=True)
def delivery(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_delivery, "_DIRECT_DELIVERY", request.param == "direct")
    return str(request.param)


def events(prefix: str, count: int) -> list[tr.ServerEvent]:
    return [tr.ServerEvent(f"{prefix}{i}", i) for i in range(count)]


async def test_events_right_behind_ready_and_across_a_close_come_in_order(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The server sends ready and a burst in one go: the burst waits in
    trio-websocket's queue while the handshake ends, and must come first."""
    resumes: list[str | None] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        resumes.append(frame["lastEventId"])
        await send_ready(ws, frame["lastEventId"])
        for i in range(30):
            await send_event(ws, f"{n}-{i}", i)
        if n == 1:
            await send_event(ws, "1-5", "duplicate")  # dropped by the dedupe window
            await ws.aclose(*hint(0))
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, ping_interval=None, random=random.Random(1)
        ) as ws:
            got = [await ws.get_message() for _ in range(60)]
            with trio.move_on_after(10):
                extra = await ws.get_message()
                pytest.fail(f"unexpected item {extra!r}")
            assert ws.last_event_id == "2-29"
    assert got == events("1-", 30) + events("2-", 30)
    assert resumes == [None, "1-29"]


async def test_raw_messages_sent_with_the_accept_come_first(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws = await request.accept()
        for i in range(40):
            await ws.send_message(f"m{i}")
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, ping_interval=None, resume=False
        ) as ws:
            got = [await ws.get_message() for _ in range(40)]
    assert got == [f"m{i}" for i in range(40)]


async def test_a_slow_consumer_is_not_a_dead_server(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    max_queue, flood = 4, 100

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws)
        for i in range(flood):
            await send_event(ws, str(i), i)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(1000):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            max_queue=max_queue,
            ping_interval=5,
            ping_timeout=2,
        ) as ws:
            await ws.wait_ready()
            await trio.sleep(120)  # many pings time out: the reader waits for room
            assert ws.state is tr.ConnectionState.OPEN
            got = [await ws.get_message() for _ in range(flood)]
            await trio.sleep(60)  # reading again: pongs flow again
            assert ws.state is tr.ConnectionState.OPEN
    assert got == [tr.ServerEvent(str(i), i) for i in range(flood)]
    assert len(server.connects) == 1


async def test_a_dead_server_is_noticed_by_the_pinger(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A black-holed link (bytes vanish both ways): only the pinger notices."""
    network = MemoryNetwork(random=random.Random(1))
    server = ReconnectServer(ReplayLog(), rng=random.Random(2))
    transitions: list[tr.Transition] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve_listeners, [network.listen("server", 80)])
        with trio.fail_after(1000):
            async with tr.open_reconnecting_websocket(
                "ws://server/",
                open_stream=network.client("c"),
                ping_interval=5,
                ping_timeout=2,
                on_transition=transitions.append,
                random=random.Random(3),
            ) as ws:
                await ws.wait_ready()
                await server.publish("before")
                first = await ws.get_message()
                blackholed_at = trio.current_time()
                network.blackhole("c")
                await server.publish("lost with the link")
                await server.publish("after")
                # Only a reconnect, after a ping timed out, brings them (replayed).
                rest = [await ws.get_message(), await ws.get_message()]
        nursery.cancel_scope.cancel()
    assert isinstance(first, tr.ServerEvent)
    assert first.data == "before"
    assert [item.data for item in rest if isinstance(item, tr.ServerEvent)] == [
        "lost with the link",
        "after",
    ]
    (lost,) = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert isinstance(lost.error, tr.PingTimeout)
    assert blackholed_at < lost.time <= blackholed_at + 5 + 2


async def test_live_events_queued_behind_a_slow_replay_keep_their_place(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The replay overfills the inbox while the application does not read
    (the handshake never waits for the application), and the live events
    behind ``ready`` wait for room; they must come in order, before anything
    that arrives later."""

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        assert frame["lastEventId"] == "r5"
        for i in range(6, 12):
            await send_event(ws, f"r{i}", i)  # replayed
        await send_ready(ws, "r11")
        for i in range(10):
            await send_event(ws, f"live{i}", i)
        await trio.sleep(50)
        await send_event(ws, "later", None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            ping_interval=None,
            max_queue=4,
            last_event_id="r5",
        ) as ws:
            await trio.sleep(10)  # not reading: the replay is taken whatever max_queue
            assert ws.state is tr.ConnectionState.OPEN
            got = [await ws.get_message() for _ in range(17)]
    assert got == [
        *(tr.ServerEvent(f"r{i}", i) for i in range(6, 12)),
        *events("live", 10),
        tr.ServerEvent("later", None),
    ]


async def _send_together(ws: trio_websocket.WebSocketConnection, *messages: str) -> None:
    """Several text frames in one write, so the client reads them in one go."""
    data = b"".join(ws._wsproto.send(TextMessage(data=m)) for m in messages)
    await ws._stream.send_all(data)


async def test_an_oversized_message_closes_1009_and_nothing_after_it_arrives(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        await send_ready(ws, frame["lastEventId"])
        if n == 1:
            big = json.dumps({"type": "event", "id": "big", "data": "x" * 500})
            after = json.dumps({"type": "event", "id": "1b", "data": "after the big one"})
            small = json.dumps({"type": "event", "id": "1a", "data": "small"})
            await _send_together(ws, small, big, after)
        else:
            await send_event(ws, f"{n}a", "small")
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            ping_interval=None,
            max_message_size=200,
            on_transition=transitions.append,
            random=random.Random(1),
        ) as ws:
            got = [await ws.get_message(), await ws.get_message()]
    assert got == [tr.ServerEvent("1a", "small"), tr.ServerEvent("2a", "small")]
    (lost,) = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert (lost.close_code, lost.delay_source) == (1009, tr.DelaySource.BACKOFF)
