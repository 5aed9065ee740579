"""A client that publishes and never reads the default stream still gets its acks.

The rule is trio_reconnect/_overflow.py: while a publish waits for its answer,
the reader goes on past ``max_queue`` default-stream items, up to
``outbox_bytes`` bytes of frames, so that the acks behind them are read; with
no publish pending the buffer stops at ``max_queue`` as before. The client
runs for real over the memory network against tests/support/fake_channels.py,
and once against our own ``ReconnectServer``; virtual time
(``autojump_clock``) and ``fail_after`` guards.
"""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

import trio_reconnect as tr
from tests.client.test_subscriptions import client
from tests.client.test_subscriptions_real_server import Network, make_server
from tests.client.test_subscriptions_real_server import client as real_client
from tests.support.fake_channels import ChannelStore, default_event
from tests.support.fake_server import FakeServer
from trio_reconnect import _delivery
from trio_reconnect._wire import Publish
from trio_reconnect.server import MemoryChannelStore


@pytest.fixture(params=["direct", "get_message"], autouse=True)
def delivery(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a ready connection's messages reach the inbox (trio_reconnect/_delivery.py)."""
    monkeypatch.setattr(_delivery, "_DIRECT_DELIVERY", request.param == "direct")
    return str(request.param)


def flood(store: ChannelStore, ids: itertools.count[int], count: int, pad: str = "") -> None:
    """Send ``count`` default-stream events (ids from ``ids``) on every connection."""
    for _ in range(count):
        n = next(ids)
        store.send_raw(default_event(str(n), {"n": n, "pad": pad}))


async def test_200_publishes_return_behind_500_unread_default_events(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    event_ids = itertools.count(1)

    def events_before_each_ack(frame: Publish) -> None:  # then applied and acked, behind them
        flood(store, event_ids, 3 if int(frame.msg_id) % 2 == 0 else 2)  # 500 for 200

    store = ChannelStore(publish_script=events_before_each_ack)
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(100):
        async with client(server) as ws:  # max_queue: 64
            returned = [await ws.publish("c", n) for n in range(200)]
            inbox = ws._inbox
            assert (len(inbox), inbox.stalls) == (500, 0)  # never waited: nothing lost either
            assert inbox.overflows == 500 - 64 + 1
            got = [await ws.get_message() for _ in range(500)]
    assert returned == [str(101 + n) for n in range(200)]
    assert got == [tr.ServerEvent(str(n), {"n": n, "pad": ""}) for n in range(1, 501)]
    assert len(server.connects) == 1


async def test_without_a_publish_pending_the_reader_stops_at_max_queue(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(100):
        async with client(server) as ws:
            await ws.wait_ready()
            flood(store, itertools.count(1), 500)
            await trio.sleep(10)  # the application does not read
            inbox = ws._inbox
            assert len(inbox) == 64
            assert inbox.stalled
            assert (inbox.stalls, inbox.overflows) == (1, 0)
            got = [await ws.get_message() for _ in range(500)]
    assert [item.id for item in got if isinstance(item, tr.ServerEvent)] == [
        str(n) for n in range(1, 501)
    ]


async def test_the_overflow_stops_at_outbox_bytes_then_the_reader_waits(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    bound = 4096
    store = ChannelStore(publish_script=lambda frame: "silent")  # never answered: stays pending
    server = FakeServer(nursery, store.serve)
    frame = len(default_event("100", {"n": 100, "pad": "x" * 80}))
    with trio.fail_after(100):
        # Pings on: a missed pong while the reader waits is a slow consumer, not a dead server.
        async with client(
            server, max_queue=8, outbox_bytes=bound, ping_interval=5.0, ping_timeout=5.0
        ) as ws:
            await ws.wait_ready()
            async with trio.open_nursery() as inner:
                inner.start_soon(ws.publish, "c", 1)
                await trio.sleep(1)
                flood(store, itertools.count(100), 500, pad="x" * 80)
                await trio.sleep(60)
                inbox = ws._inbox
                assert inbox.stalled
                assert inbox.size >= bound  # it waits at the bound...
                assert inbox.size < bound + frame  # ...and went past it by one frame at most
                assert 8 < len(inbox) < 500
                assert inbox.stalls == 1
                inner.cancel_scope.cancel()  # the publish stays in the outbox (sent)
            assert len(server.connects) == 1


async def test_a_publish_made_after_the_buffer_filled_returns(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(100):
        async with client(server) as ws:
            await ws.wait_ready()
            flood(store, itertools.count(1), 300)
            await trio.sleep(10)
            assert ws._inbox.stalled  # the reader waits in put, on a full buffer
            assert len(ws._inbox) == 64
            # The publish frame goes out; its ack is read once the waiting put
            # is released, behind the 236 events still unread.
            assert await ws.publish("c", "late") == "101"
            assert len(ws._inbox) == 300
            assert await ws.publish("c", "again") == "102"


async def test_against_our_server_publishes_return_while_the_default_stream_is_unread(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = MemoryChannelStore(start=1)
    server = make_server(store)
    with trio.fail_after(100):
        async with real_client(Network(nursery, [server])) as ws:
            await ws.wait_ready()
            for n in range(300):
                await server.publish({"tick": n})
            await trio.sleep(1)
            assert ws._inbox.stalled  # full at max_queue, no publish pending
            returned = []
            for n in range(200):
                returned.append(await ws.publish("room", n))
                await server.publish({"tick": 300 + n})
            await trio.sleep(1)
            assert len(ws._inbox) == 500  # nothing lost; the reader waits again
            assert ws._inbox.stalled
            ticks = [await ws.get_message() for _ in range(500)]
    assert returned == [str(n) for n in range(1, 201)]
    assert [getattr(t, "data", None) for t in ticks] == [{"tick": n} for n in range(500)]
