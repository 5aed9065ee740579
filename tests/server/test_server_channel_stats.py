"""The node's channel statistics (``server.statistics().channel_*``), from real raw clients.

Each test drives one situation and checks every channel figure: the ones it
should move by exactly how much, and that the others stayed at zero.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from tests.server.test_server_channels import (
    LossyStore,
    event,
    frames_until,
    make_server,
    no_more_frames,
    send,
    subscribed,
    v2,
)
from tests.support.server_clients import receive_json
from trio_reconnect.server import (
    ChannelEvent,
    ChannelRead,
    ChannelRequest,
    LogUnavailableError,
    MemberChange,
    MemoryChannelStore,
    ReconnectServer,
    ServerStatistics,
)

CHANNEL_FIELDS = tuple(
    f.name for f in attrs.fields(ServerStatistics) if f.name.startswith("channel")
)


def channel_stats(server: ReconnectServer) -> dict[str, int]:
    """The channel figures that are not zero."""
    stats = server.statistics()
    return {name: getattr(stats, name) for name in CHANNEL_FIELDS if getattr(stats, name)}


async def test_subscriptions_and_events_by_kind(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    for i in range(1, 4):
        store.append_nowait("room", i)
    server = make_server(store)
    with trio.fail_after(5):
        assert channel_stats(server) == {}
        ws, _ = await v2(nursery, server, {"room": "1"})  # replays 2 and 3
        assert channel_stats(server) == {
            "channels_held": 1,
            "channel_subscriptions": 1,
            "channel_subscribed": 1,
            "channel_events_replayed": 2,
        }
        other, _ = await v2(nursery, server)
        await send(other, type="subscribe", channel="room", lastEventId=None, history=1)
        await send(other, type="subscribe", channel="lobby", lastEventId=None)
        await frames_until(other, "subscribed")
        await frames_until(other, "subscribed")
        for i in (4, 5):
            await server.publish("room", i)
        assert [await receive_json(ws) for _ in range(2)] == [event("room", i, i) for i in (4, 5)]
        assert [await receive_json(other) for _ in range(2)] == [
            event("room", i, i) for i in (4, 5)
        ]
        assert channel_stats(server) == {
            "channels_held": 2,
            "channel_subscriptions": 3,
            "channel_subscribed": 3,
            "channel_events_replayed": 3,  # 2 for ws, the history of 1 for other
            "channel_events_live": 4,  # 2 events to 2 subscribers
        }
        await send(other, type="unsubscribe", channel="lobby")
        assert (await receive_json(other))["type"] == "unsubscribed"
        assert server.statistics().channels_held == 1
        assert server.statistics().channel_subscriptions == 2
        await other.aclose()
        while len(server.clients) > 1:
            await trio.sleep(0.1)
        assert server.statistics().channel_subscriptions == 1
        await ws.aclose()
        while server.clients:
            await trio.sleep(0.1)
        stats = server.statistics()
        assert (stats.channels_held, stats.channel_subscriptions) == (0, 0)
        assert stats.channel_subscribed == 3  # counters only grow


async def test_snapshots_and_lost_answers(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    store = MemoryChannelStore(start=1, channel_max_len=2)
    for i in range(1, 6):
        store.append_nowait("room", i)
        store.append_nowait("plain", i)

    def snapshot(channel: str) -> tuple[str, Any] | None:
        return ("4", {"state": 4}) if channel == "room" else None

    server = make_server(store, channel_snapshot=snapshot)
    with trio.fail_after(5):
        _ws, frames = await v2(nursery, server, {"room": "1", "plain": "1"})
    assert [f["type"] for f in frames] == ["snapshot", "event", "subscribed", "subscribed", "ready"]
    assert frames[3] == subscribed("plain", 5, lost=True)
    assert channel_stats(server) == {
        "channels_held": 2,
        "channel_subscriptions": 2,
        "channel_subscribed": 2,
        "channel_snapshots": 1,
        "channel_events_replayed": 1,  # event 5, after the snapshot at 4
        "channel_lost": 1,
    }


class DownStore(MemoryChannelStore):
    """A store whose reads fail while ``down`` is set."""

    down: bool = False

    async def read(
        self, requests: Sequence[ChannelRequest], *, max_replay: int
    ) -> Sequence[ChannelRead]:
        if self.down:
            await trio.lowlevel.checkpoint()
            raise LogUnavailableError("the store is down")
        return await super().read(requests, max_replay=max_replay)


async def test_refusals_by_code(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    store = DownStore(start=1)

    def authorize(principal: Any, channel: str, action: str) -> bool:
        return channel != "secret"

    server = make_server(store, authorize=authorize, max_subscriptions=2)
    with trio.fail_after(5):
        ws, frames = await v2(nursery, server, {"secret": "0", "a": "0", "": "0"})
        await send(ws, type="subscribe", channel="b", lastEventId=None)
        await send(ws, type="subscribe", channel="c", lastEventId=None)  # past the limit
        await send(ws, type="subscribe", channel="x" * 300, lastEventId=None)
        answers = [await receive_json(ws) for _ in range(3)]
        store.down = True
        await send(ws, type="subscribe", channel="a", lastEventId="0")  # renewing: no limit
        answers.append(await receive_json(ws))
    codes = [f["code"] for f in frames + answers if f["type"] == "refused"]
    assert sorted(codes) == sorted(["invalid", "forbidden", "limit", "invalid", "unavailable"])
    assert channel_stats(server) == {
        # "a" was dropped by its unavailable renewal; "b" is held.
        "channels_held": 1,
        "channel_subscriptions": 1,
        "channel_subscribed": 2,
        "channel_refused_forbidden": 1,
        "channel_refused_invalid": 2,
        "channel_refused_limit": 1,
        "channel_refused_unavailable": 1,
    }


async def test_a_repaired_gap_and_a_resync(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = LossyStore(start=1, channel_max_len=2)
    store.skip = frozenset({"2"})
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server, {"a": "0", "b": "0"})
        for i in range(1, 4):
            await server.publish("a", i)
            await wait_all_tasks_blocked()
        assert [await receive_json(ws) for _ in range(3)] == [event("a", i, i) for i in (1, 2, 3)]
        assert channel_stats(server) == {
            "channels_held": 2,
            "channel_subscriptions": 2,
            "channel_subscribed": 2,
            "channel_repairs": 1,  # one read of "a" after 1
            "channel_events_live": 3,  # the repair's event 2 included
        }
        store.skip = frozenset({"4", "5", "6"})
        for i in range(4, 7):
            store.append_nowait("a", i)  # skipped live, and trimmed past 3
        await server.publish("a", 7)
        assert await receive_json(ws) == subscribed("a", 7, lost=True)
        await server.publish("b", "b1")
        assert await receive_json(ws) == event("b", 1, "b1")
        await no_more_frames(ws)
    stats = channel_stats(server)
    assert stats["channel_resyncs"] == 1
    assert stats["channel_repairs"] == 2
    assert stats["channel_events_live"] == 4
    assert "channel_lost" not in stats  # a resync is not an answer


class BrokenListenStore(MemoryChannelStore):
    """A store whose live stream fails ``failures`` times before it opens."""

    failures: int = 0

    @asynccontextmanager
    async def listen(
        self, *, wanted: Callable[[str], bool] | None = None
    ) -> AsyncIterator[AsyncIterator[Sequence[ChannelEvent | MemberChange]]]:
        if self.failures:
            self.failures -= 1
            await trio.lowlevel.checkpoint()
            raise LogUnavailableError("no notification connection")
        async with super().listen(wanted=wanted) as stream:
            yield stream


async def test_lost_notifications_and_store_errors(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = BrokenListenStore(start=1, listener_buffer=2)
    store.failures = 2
    server = make_server(store)
    with trio.fail_after(30):
        ws, _ = await v2(nursery, server, {"a": "0"})
        assert server.statistics().channel_store_errors == 2  # retried, then live
        for i in range(1, 6):
            store.append_nowait("a", i)  # no checkpoint: the buffer overflows
        assert [await receive_json(ws) for _ in range(5)] == [event("a", i, i) for i in range(1, 6)]
        await no_more_frames(ws)
    assert channel_stats(server) == {
        "channels_held": 1,
        "channel_subscriptions": 1,
        "channel_subscribed": 1,
        "channel_store_errors": 2,
        "channel_notifications_lost": 1,
        # One read when the stream came up under the answering subscription
        # (what came meanwhile may be missed), one after the overflow.
        "channel_repairs": 2,
        "channel_events_live": 5,
    }
