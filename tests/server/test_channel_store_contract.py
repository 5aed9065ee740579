"""The ChannelStore contract (trio_reconnect/server/_channelbase.py), run against every backend.

Each backend is one entry of STORES: an async context manager factory
``(request, channel_max_len, listener_buffer) -> ChannelStore``. A new
backend passes the same suite by adding one line there.

Nothing here assumes small ids (a backend may count from the clock): every
expectation is arithmetic on the ids the store issued. No test uses the
autojump clock (a backend may run on a real store); every wait is under
``fail_after``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio

from tests.support.redis_fixtures import redis_server  # noqa: F401  (the fixture)
from trio_reconnect.server import (
    ChannelEvent,
    ChannelRead,
    ChannelRequest,
    ChannelStore,
    LogUnavailableError,
    NotificationsLost,
    PublishRequest,
)
from trio_reconnect.server._logbase import parse_event_id
from trio_reconnect.server._pubplan import MAX_BATCH

#: Generous bound for anything one test waits on (real time).
GUARD = 10.0

Factory = Callable[[pytest.FixtureRequest, int, int], AbstractAsyncContextManager[ChannelStore]]


@asynccontextmanager
async def _memory_store(
    request: pytest.FixtureRequest, channel_max_len: int, listener_buffer: int
) -> AsyncIterator[ChannelStore]:
    from trio_reconnect.server import MemoryChannelStore

    yield MemoryChannelStore(channel_max_len=channel_max_len, listener_buffer=listener_buffer)


@asynccontextmanager
async def _redis_store(
    request: pytest.FixtureRequest, channel_max_len: int, listener_buffer: int
) -> AsyncIterator[ChannelStore]:
    from trio_reconnect.server.redis import RedisChannelStore

    server = request.getfixturevalue("redis_server")
    store = RedisChannelStore(
        server.url, channel_max_len=channel_max_len, listener_buffer=listener_buffer
    )
    async with store:
        yield store


#: Every backend the suite runs against: add one line for another.
STORES: dict[str, Factory] = {
    "memory": _memory_store,
    "redis": _redis_store,
}

#: Small enough that a test overfills a channel (Redis trims ``MAXLEN ~``: allow ~100 more).
SMALL = 10


@pytest.fixture(params=sorted(STORES))
def backend(
    request: pytest.FixtureRequest,
) -> Callable[..., AbstractAsyncContextManager[ChannelStore]]:
    factory = STORES[request.param]

    def open_store(
        channel_max_len: int = 1_000, listener_buffer: int = 10_000
    ) -> AbstractAsyncContextManager[ChannelStore]:
        return factory(request, channel_max_len, listener_buffer)

    return open_store


def seq(event_id: str) -> int:
    number = parse_event_id(event_id)
    assert number is not None, event_id
    return number


def ids_of(events: Any) -> list[str]:
    return [event.id for event in events]


def consecutive(ids: Sequence[str]) -> bool:
    return all(seq(b) == seq(a) + 1 for a, b in itertools.pairwise(ids))


async def fill(store: ChannelStore, channel: str, n: int) -> list[str]:
    return [await store.append(channel, {"c": channel, "n": i}) for i in range(n)]


async def read_one(
    store: ChannelStore, channel: str, after: str | None, history: int = 0, max_replay: int = 1_000
) -> ChannelRead:
    [answer] = await store.read([ChannelRequest(channel, after, history)], max_replay=max_replay)
    return answer


async def test_starting_point_is_fixed_at_first_read(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            first = await read_one(store, "room", None)
            assert first.newest is not None
            assert first.events == []
            assert parse_event_id(first.newest) is not None
            again = await read_one(store, "room", None)
            assert again.newest == first.newest
            ids = await fill(store, "room", 3)
            assert seq(ids[0]) == seq(first.newest) + 1
            assert consecutive(ids)
            resumed = await read_one(store, "room", first.newest)
            assert resumed.newest == ids[-1]
            assert resumed.events is not None
            assert ids_of(resumed.events) == ids
            assert [e.data for e in resumed.events] == [{"c": "room", "n": i} for i in range(3)]


async def test_ids_are_consecutive_per_channel(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            a, b = [], []
            for _ in range(10):
                a.append(await store.append("a", 1))
                b.append(await store.append("b", 2))
            assert consecutive(a)
            assert consecutive(b)
            assert len(set(a)) == 10
            assert await store.heads(["a", "b"]) == {"a": a[-1], "b": b[-1]}


async def test_one_read_answers_many_channels_in_order(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            channels = [f"ch:{i}" for i in range(100)]
            starts = {c: (await read_one(store, c, None)).newest for c in channels}
            written = {c: await fill(store, c, i % 4) for i, c in enumerate(channels)}
            answers = await store.read(
                [ChannelRequest(c, starts[c]) for c in channels], max_replay=10
            )
            assert [a.channel for a in answers] == channels
            for answer in answers:
                ids = written[answer.channel]
                assert answer.newest == (ids[-1] if ids else starts[answer.channel])
                assert answer.events is not None
                assert ids_of(answer.events) == ids


async def test_history_gives_the_newest_events(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            ids = await fill(store, "h", 10)
            for history, expected in ((0, []), (3, ids[-3:]), (10, ids), (50, ids)):
                answer = await read_one(store, "h", None, history=history)
                assert answer.newest == ids[-1]
                assert answer.events is not None
                assert ids_of(answer.events) == expected
            fresh = await read_one(store, "new", None, history=5)
            assert fresh.events == []


async def test_after_the_newest_is_empty(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            ids = await fill(store, "x", 4)
            answer = await read_one(store, "x", ids[-1])
            assert answer == ChannelRead("x", ids[-1], [])
            middle = await read_one(store, "x", ids[1])
            assert middle.events is not None
            assert ids_of(middle.events) == ids[2:]


async def test_trimmed_gap_is_not_held(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend(channel_max_len=SMALL) as store:
            start = (await read_one(store, "t", None)).newest
            ids = await fill(store, "t", SMALL + 300)
            answer = await read_one(store, "t", start)
            assert answer.newest == ids[-1]
            assert answer.events is None
            recent = await read_one(store, "t", ids[-3])
            assert recent.events is not None
            assert ids_of(recent.events) == ids[-2:]


@pytest.mark.parametrize(
    "hostile", ["", "-1", "abc", "01", " 1", "\u0663", "9" * 1000, "9" * 40, "1.0"]
)
async def test_unknown_ids_are_not_held(backend: Any, hostile: str) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            ids = await fill(store, "u", 3)
            assert await read_one(store, "u", hostile) == ChannelRead("u", ids[-1], None)


async def test_ids_around_the_channel_are_not_held(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            start = (await read_one(store, "u", None)).newest
            ids = await fill(store, "u", 3)
            for unknown in (str(seq(start) - 1), str(seq(ids[-1]) + 1), str(seq(ids[-1]) + 99)):
                assert await read_one(store, "u", unknown) == ChannelRead("u", ids[-1], None)


async def test_a_gap_over_max_replay_is_not_held(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            start = (await read_one(store, "m", None)).newest
            ids = await fill(store, "m", 10)
            assert (await read_one(store, "m", start, max_replay=9)).events is None
            exact = await read_one(store, "m", start, max_replay=10)
            assert exact.events is not None
            assert ids_of(exact.events) == ids
            assert (await read_one(store, "m", ids[-1], max_replay=0)).events == []


async def test_heads_leave_out_channels_without_a_starting_point(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            start = (await read_one(store, "read-only", None)).newest
            ids = await fill(store, "written", 2)
            heads = await store.heads(["read-only", "written", "never"])
            assert heads == {"read-only": start, "written": ids[-1]}
            assert await store.heads([]) == {}


async def collect(stream: AsyncIterator[Sequence[ChannelEvent]], n: int) -> list[ChannelEvent]:
    got: list[ChannelEvent] = []
    while len(got) < n:
        got.extend(await stream.__anext__())
    return got


async def test_listen_is_live_when_entered(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store, store.listen() as stream:
            event_id = await store.append("live", {"x": 1})
            assert await collect(stream, 1) == [ChannelEvent("live", event_id, {"x": 1})]


async def test_listen_gives_every_channel_in_order(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store, store.listen() as one, store.listen() as two:
            written: dict[str, list[str]] = {"a": [], "b": [], "c": []}
            for i in range(60):
                channel = "abc"[i % 3]
                written[channel].append(await store.append(channel, i))
            for stream in (one, two):
                got = await collect(stream, 60)
                for channel, ids in written.items():
                    assert [e.id for e in got if e.channel == channel] == ids


async def test_listen_raises_notifications_lost_on_overflow(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend(listener_buffer=SMALL) as store, store.listen() as stream:
            for i in range(SMALL * 20):
                await store.append("flood", i)
            with pytest.raises(NotificationsLost):
                for _ in range(SMALL * 20 + 1):
                    await stream.__anext__()


async def test_listen_waits_for_an_append(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store, store.listen() as stream:
            got: list[ChannelEvent] = []

            async def reader() -> None:
                got.extend(await stream.__anext__())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.01)
                assert got == []
                event_id = await store.append("late", None)
            assert got == [ChannelEvent("late", event_id, None)]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
async def test_bad_max_replay_is_rejected(backend: Any, bad: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            with pytest.raises(ValueError, match="max_replay"):
                await store.read([ChannelRequest("c", None)], max_replay=bad)


@pytest.mark.parametrize("bad", ["", "a\x00b", "x" * 257, "\ud800", None, 5])
async def test_bad_channel_names_are_rejected(backend: Any, bad: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            with pytest.raises(ValueError, match="channel"):
                await store.read([ChannelRequest(bad, None)], max_replay=10)
            with pytest.raises(ValueError, match="channel"):
                await store.append(bad, 1)


@pytest.mark.parametrize("bad", [-1, 2.5, False])
async def test_bad_history_is_rejected(backend: Any, bad: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            with pytest.raises(ValueError, match="history"):
                await store.read([ChannelRequest("c", None, bad)], max_replay=10)


# -- acknowledged publish (PROTOCOL 4.5): ChannelStore.publish ---------------------------------


def req(channel: str, key: str, data: Any = None) -> PublishRequest:
    return PublishRequest(channel, key, {"k": key} if data is None else data)


async def test_publish_applies_items_in_order_and_notifies(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store, store.listen() as stream:
            items = [req("room", f"k{i}", {"n": i}) for i in range(20)]
            got = await store.publish(items, dedupe_ttl=600)
            ids = [r.id for r in got]
            assert not any(r.duplicate for r in got)
            assert len(ids) == 20
            assert consecutive(ids)
            read = await read_one(store, "room", None, history=100)
            assert read.events is not None
            assert [(e.id, e.data) for e in read.events] == [
                (i, {"n": n}) for n, i in enumerate(ids)
            ]
            seen: list[ChannelEvent] = []
            while len(seen) < 20:
                seen += await stream.__anext__()
            assert [(e.channel, e.id, e.data) for e in seen] == [
                ("room", i, {"n": n}) for n, i in enumerate(ids)
            ]


async def test_a_duplicate_key_gets_the_first_id_and_appends_nothing(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            [first] = await store.publish([req("room", "a", {"v": 1})], dedupe_ttl=600)
            assert not first.duplicate
            await store.publish([req("room", "b")], dedupe_ttl=600)
            heads = await store.heads(["room"])
            # the re-send carries other data (a client bug): still the first append's id
            [again] = await store.publish([req("room", "a", {"v": 2})], dedupe_ttl=600)
            assert again.id == first.id
            assert again.duplicate
            assert await store.heads(["room"]) == heads
            read = await read_one(store, "room", None, history=100)
            assert read.events is not None
            assert [e.data for e in read.events] == [{"v": 1}, {"k": "b"}]


async def test_duplicates_within_one_batch_and_keys_per_channel(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            got = await store.publish(
                [req("a", "k1"), req("a", "k2"), req("a", "k1"), req("b", "k1")],
                dedupe_ttl=600,
            )
            assert [r.duplicate for r in got] == [False, False, True, False]
            assert got[2].id == got[0].id
            assert seq(got[1].id) == seq(got[0].id) + 1
            # the same key on another channel is another record (dedupe per channel, A3)
            assert (await store.heads(["b"]))["b"] == got[3].id


async def test_a_full_batch_of_the_nodes_group_commit_keeps_order_and_dedupe(
    backend: Any,
) -> None:
    # As big as the node's worker makes one call (MAX_BATCH): three channels
    # interleaved, every tenth item a re-send of the key three items back (its channel's).
    items = [
        req("abc"[i % 3], f"k{i - 3}" if i % 10 == 9 else f"k{i}", {"n": i})
        for i in range(MAX_BATCH)
    ]
    with trio.fail_after(GUARD):
        async with backend() as store:
            got = await store.publish(items, dedupe_ttl=600)
            assert len(got) == MAX_BATCH
            assert [r.duplicate for r in got] == [i % 10 == 9 for i in range(MAX_BATCH)]
            assert all(got[i].id == got[i - 3].id for i in range(9, MAX_BATCH, 10))
            for channel in "abc":
                fresh = [
                    r.id
                    for item, r in zip(items, got, strict=True)
                    if item.channel == channel and not r.duplicate
                ]
                assert consecutive(fresh)
                read = await read_one(store, channel, None, history=1000)
                assert read.events is not None
                assert [e.id for e in read.events] == fresh


async def test_publish_after_a_read_continues_the_channels_ids(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            start = await read_one(store, "room", None)
            [appended] = await store.publish([req("room", "k")], dedupe_ttl=600)
            [published] = [await store.append("room", 1)]
            assert seq(appended.id) == seq(start.newest) + 1
            assert seq(published) == seq(appended.id) + 1


async def test_publish_of_nothing_and_bad_arguments(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            assert list(await store.publish([], dedupe_ttl=600)) == []
            with pytest.raises(ValueError, match="channel"):
                await store.publish([req("", "k")], dedupe_ttl=600)
            for ttl in (0, -1, float("nan")):
                with pytest.raises(ValueError, match="dedupe_ttl"):
                    await store.publish([req("room", "k")], dedupe_ttl=ttl)
            assert await store.heads(["room"]) == {}


def _break_memory(store: Any, channel: str) -> None:
    store.break_channel(channel)


def _break_redis(store: Any, channel: str) -> None:
    from tests.redis.test_redis_channels import command
    from trio_reconnect.server._redis._channel_plan import channel_keys

    port = int(store.url.rsplit(":", 1)[1].split("/")[0])
    command(port, "SET", channel_keys(store.prefix, channel)[1], "not a stream")


#: How each backend makes one channel's appends fail (for "stops at the first failure").
BREAKERS: dict[str, Callable[[Any, str], None]] = {
    "memory": _break_memory,
    "redis": _break_redis,
}


@pytest.fixture
def breaker(request: pytest.FixtureRequest, backend: Any) -> Callable[[Any, str], None]:
    return BREAKERS[request.node.callspec.params["backend"]]


async def test_publish_stops_at_the_first_failure(backend: Any, breaker: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as store:
            await store.publish([req("good", "warm"), req("bad", "warm")], dedupe_ttl=600)
            breaker(store, "bad")
            items = [req("good", "1"), req("good", "2"), req("bad", "3"), req("good", "4")]
            got = await store.publish(items, dedupe_ttl=600)
            assert len(got) == 2  # the prefix that ran
            heads = await store.heads(["good"])
            assert heads["good"] == got[1].id  # "4" did not run
            with pytest.raises(LogUnavailableError):
                await store.publish([req("bad", "5"), req("good", "6")], dedupe_ttl=600)
            assert await store.heads(["good"]) == heads
            # what ran is recorded: a re-send of the batch is answered, then goes on
            again = await store.publish(
                [req("good", "1"), req("good", "2"), req("good", "4")], dedupe_ttl=600
            )
            assert [r.duplicate for r in again] == [True, True, False]
            assert [r.id for r in again[:2]] == [r.id for r in got]
