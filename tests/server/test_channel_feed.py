"""The node's channel feed (trio_reconnect/server/_chanfeed.py) on its own, with a fake sink."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import cast

import attrs
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from trio_reconnect._wire import encode_channel_event
from trio_reconnect.server import ChannelEvent, ChannelStore, MemberChange, MemoryChannelStore
from trio_reconnect.server._chanfeed import ChannelFeed, Subscription


@attrs.define
class Sink:
    frames: list[dict[str, object]] = attrs.Factory(list)
    closed: bool = False

    def feed(self, frames: Sequence[tuple[int | None, str]]) -> None:
        self.frames.extend(json.loads(text) for _, text in frames)

    def close(self, code: int | None, reason: str | None) -> None:
        self.closed = True


def ids(sink: Sink) -> list[str]:
    return [str(f["id"]) for f in sink.frames if f["type"] == "event"]


async def live_subscription(
    feed: ChannelFeed, sink: Sink, channel: str, covered: int, slow: list[int]
) -> Subscription:
    subscription = Subscription(channel, sink, 100, lambda: slow.append(1))
    feed.register(subscription)
    assert not subscription.resume(covered)
    return subscription


async def test_a_handed_over_feed_repairs_what_came_meanwhile(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    feed = ChannelFeed(store, 1_000, 1.0)
    sink, slow = Sink(), list[int]()
    with trio.fail_after(5):
        scope = trio.CancelScope()

        async def run_once() -> None:
            with scope:
                await feed.run()

        nursery.start_soon(run_once)
        await feed.wait_live()
        await live_subscription(feed, sink, "a", 0, slow)
        store.append_nowait("a", 1)
        await wait_all_tasks_blocked()
        scope.cancel()  # the task running the feed is handed over ...
        await wait_all_tasks_blocked()
        assert not feed.live
        store.append_nowait("a", 2)  # ... and nobody listens now
        store.append_nowait("a", 3)
        nursery.start_soon(feed.run)
        await feed.wait_live()
        store.append_nowait("a", 4)
        await wait_all_tasks_blocked()
    assert ids(sink) == ["1", "2", "3", "4"]
    assert slow == []


async def test_a_waiting_subscription_that_overflows_is_too_slow(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    feed = ChannelFeed(store, 1_000, 1.0)
    slow: list[int] = []
    subscription = Subscription("a", Sink(), 3, lambda: slow.append(1))
    nursery.start_soon(feed.run)
    with trio.fail_after(5):
        await feed.wait_live()
        feed.register(subscription)  # answering: it buffers
        for i in range(4):
            store.append_nowait("a", i)
            await wait_all_tasks_blocked()
    assert slow == [1]
    assert subscription.closed


async def test_unregister_sends_nothing_more(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    feed = ChannelFeed(store, 1_000, 1.0)
    sink, slow = Sink(), list[int]()
    nursery.start_soon(feed.run)
    with trio.fail_after(5):
        await feed.wait_live()
        subscription = await live_subscription(feed, sink, "a", 0, slow)
        store.append_nowait("a", 1)
        await wait_all_tasks_blocked()
        feed.unregister(subscription)
        assert feed.held() == 0
        store.append_nowait("a", 2)
        await wait_all_tasks_blocked()
    assert ids(sink) == ["1"]


Batches = AsyncIterator[AsyncIterator[Sequence[ChannelEvent | MemberChange]]]


class OldStore(MemoryChannelStore):
    """A store written before ``listen(wanted=)``: its ``listen`` takes nothing."""

    @asynccontextmanager
    async def listen(self) -> Batches:  # type: ignore[override]
        async with super().listen() as stream:
            yield stream


class AskingStore(MemoryChannelStore):
    """A store that records what the feed says it wants (in ``asked``, set by the test)."""

    asked: list[Callable[[str], bool] | None]

    @asynccontextmanager
    async def listen(self, *, wanted: Callable[[str], bool] | None = None) -> Batches:
        self.asked.append(wanted)
        async with super().listen(wanted=wanted) as stream:
            yield stream


async def test_the_feed_says_what_it_wants_and_a_store_without_the_hint_still_works(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    asking = AskingStore(start=1)
    asking.asked = []
    old = OldStore(start=1)
    sinks = {"asking": Sink(), "old": Sink()}
    with trio.fail_after(5):
        for name, store in (("asking", asking), ("old", old)):
            feed = ChannelFeed(cast(ChannelStore, store), 1_000, 1.0)
            nursery.start_soon(feed.run)
            await feed.wait_live()
            await live_subscription(feed, sinks[name], "a", 0, [])
            store.append_nowait("a", 1)
            await wait_all_tasks_blocked()
            if name == "asking":
                [wanted] = asking.asked
                assert wanted is not None
                assert (wanted("a"), wanted("b")) == (True, False)  # its subscriptions, live
    assert ids(sinks["asking"]) == ids(sinks["old"]) == ["1"]


def test_one_event_offers_match_the_general_path() -> None:
    """A one-event offer with its frame (the feed's usual call) ends as a longer offer does."""

    def offer(covered: int, event_id: str, with_frame: bool) -> tuple[bool, Subscription, Sink]:
        sink = Sink()
        subscription = Subscription("a", sink, 100, lambda: None, covered=covered, waiting=False)
        event = ChannelEvent("a", event_id, {"n": event_id})
        frames = {event_id: encode_channel_event("a", event_id, event.data)} if with_frame else None
        return subscription.offer([event], frames), subscription, sink

    for covered, event_id in ((4, "5"), (4, "4"), (4, "3"), (4, "7"), (4, "x"), (4, "05")):
        fast, fast_sub, fast_sink = offer(covered, event_id, True)
        slow, slow_sub, slow_sink = offer(covered, event_id, False)
        assert (fast, fast_sub.covered, fast_sub.waiting) == (
            slow,
            slow_sub.covered,
            slow_sub.waiting,
        ), event_id
        assert fast_sink.frames == slow_sink.frames, event_id
    gap, subscription, sink = offer(4, "7", True)
    assert gap
    assert subscription.waiting
    assert sink.frames == []
    _, subscription, sink = offer(4, "5", True)
    assert subscription.covered == 5
    assert ids(sink) == ["5"]
    assert subscription.counts.channel_events_live == 1
