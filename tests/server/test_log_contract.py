"""The EventLog contract (trio_reconnect/server/_logbase.py), run against every backend.

Each backend is one entry of BACKENDS: an async context manager factory
``(request, max_events) -> EventLog``. A new backend (the in-memory log,
one a user writes) passes the same suite by adding one line there; see
docs/howto/redis.md, "How to write another log backend".

The Redis backend runs on a real redis-server (tests/support/redis_fixtures.py)
in real time, so no test here uses the autojump clock; every wait is under
``fail_after``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio

from tests.support.redis_fixtures import redis_server  # noqa: F401  (the fixture)
from trio_reconnect.server._logbase import (
    EventLog,
    LogDiscontinuityError,
    LoggedEvent,
    LogRead,
    parse_event_id,
)

#: Generous bound for anything one test waits on (real time).
GUARD = 10.0

Backend = Callable[[pytest.FixtureRequest, int], AbstractAsyncContextManager[EventLog]]


@asynccontextmanager
async def _redis_log(request: pytest.FixtureRequest, max_events: int) -> AsyncIterator[EventLog]:
    from trio_reconnect.server.redis import RedisStreamLog

    server = request.getfixturevalue("redis_server")
    async with RedisStreamLog(server.url, max_len=max_events, timeout=2.0) as log:
        yield log


@asynccontextmanager
async def _memory_log(request: pytest.FixtureRequest, max_events: int) -> AsyncIterator[EventLog]:
    from trio_reconnect.server import ReplayLog

    yield ReplayLog(max_events)


BACKENDS: dict[str, Backend] = {
    "memory": _memory_log,
    "redis": _redis_log,
}

#: Small enough that a test overfills it (Redis trims ``MAXLEN ~``: up to ~100 more).
SMALL = 10


@pytest.fixture(params=sorted(BACKENDS))
def backend(
    request: pytest.FixtureRequest,
) -> Callable[[int], AbstractAsyncContextManager[EventLog]]:
    factory = BACKENDS[request.param]

    def open_log(max_events: int = 1_000) -> AbstractAsyncContextManager[EventLog]:
        return factory(request, max_events)

    return open_log


def ids_of(events: Any) -> list[str]:
    return [event.id for event in events]


async def fill(log: EventLog, n: int, tag: str = "e") -> list[str]:
    return [await log.append({"n": i, "tag": tag}) for i in range(n)]


def consecutive(ids: list[str]) -> bool:
    seqs = [parse_event_id(i) for i in ids]
    numbers = [s for s in seqs if s is not None]
    return len(numbers) == len(ids) and all(b == a + 1 for a, b in itertools.pairwise(numbers))


async def test_empty_log(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            assert await log.newest() is None
            assert await log.read_after(None, limit=10) == LogRead(None, [])
            assert await log.read_after("1", limit=10) == LogRead(None, None)
            assert await log.tail(None, limit=10, block=0) == []


async def test_ids_are_canonical_and_consecutive(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 20)
            assert consecutive(ids)
            assert all(parse_event_id(i) is not None for i in ids)
            assert len(set(ids)) == 20
            assert await log.newest() == ids[-1]


async def test_read_after_returns_the_gap_and_newest(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 10)
            whole = await log.read_after(None, limit=100)
            assert whole.newest == ids[-1]
            assert whole.events is not None
            assert ids_of(whole.events) == ids
            assert [e.data for e in whole.events] == [{"n": i, "tag": "e"} for i in range(10)]
            after = await log.read_after(ids[3], limit=100)
            assert after.newest == ids[-1]
            assert after.events is not None
            assert ids_of(after.events) == ids[4:]
            assert await log.read_after(ids[-1], limit=100) == LogRead(ids[-1], [])
            assert await log.read_after(ids[-1], limit=0) == LogRead(ids[-1], [])


async def test_read_after_limit_is_inclusive(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 10)
            exact = await log.read_after(ids[4], limit=5)
            assert exact.events is not None
            assert ids_of(exact.events) == ids[5:]
            assert await log.read_after(ids[4], limit=4) == LogRead(ids[-1], None)
            assert await log.read_after(None, limit=9) == LogRead(ids[-1], None)
            whole = await log.read_after(None, limit=10)
            assert whole.events is not None
            assert ids_of(whole.events) == ids


HOSTILE = [
    "",
    "-1",
    "abc",
    "1e9",
    "1.0",
    " 1",
    "1 ",
    "+1",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "9" * 1000,
    "9" * 40,
    "1-0",
]


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_ids_are_unknown(backend: Any, hostile: str) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 3)
            assert await log.read_after(hostile, limit=100) == LogRead(ids[-1], None)
            assert await log.newest() == ids[-1]


async def test_ids_around_the_log_are_unknown(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 3)
            first = parse_event_id(ids[0])
            last = parse_event_id(ids[-1])
            assert first is not None
            assert last is not None
            for unknown in (str(first - 1), str(last + 1), str(last + 1000), "0" + ids[0]):
                assert await log.read_after(unknown, limit=100) == LogRead(ids[-1], None)


async def test_payloads_round_trip(backend: Any) -> None:
    payloads: list[Any] = [
        None,
        0,
        -1.5,
        "",
        "h\u00e9llo \u2603 \U0001f600",
        [1, [2, [3]]],
        {"a": {"b": None}, "c": [True, False]},
        "x" * 10_000,
    ]
    with trio.fail_after(GUARD):
        async with backend() as log:
            for data in payloads:
                await log.append(data)
            read = await log.read_after(None, limit=100)
            assert read.events is not None
            assert [e.data for e in read.events] == payloads


async def test_tail_reads_in_log_order_with_limit(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 10)
            assert ids_of(await log.tail(None, limit=4, block=0)) == ids[:4]
            assert ids_of(await log.tail(ids[3], limit=4, block=0)) == ids[4:8]
            assert ids_of(await log.tail(ids[7], limit=100, block=0)) == ids[8:]
            tailed = await log.tail(ids[0], limit=100, block=0.5)
            assert all(isinstance(e, LoggedEvent) for e in tailed)
            assert [e.data for e in tailed] == [{"n": i, "tag": "e"} for i in range(1, 10)]


async def test_tail_blocks_then_returns_empty(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 2)
            start = trio.current_time()
            assert await log.tail(ids[-1], limit=10, block=0.3) == []
            assert trio.current_time() - start >= 0.29


async def test_tail_wakes_on_append(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 1)
            got: list[LoggedEvent] = []

            async def reader() -> None:
                got.extend(await log.tail(ids[-1], limit=10, block=5.0))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.05)
                new = await log.append("late")
            assert ids_of(got) == [new]
            assert got[0].data == "late"


async def test_tail_on_an_empty_log_wakes_on_first_append(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            got: list[LoggedEvent] = []

            async def reader() -> None:
                while not got:
                    got.extend(await log.tail(None, limit=10, block=0.2))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.05)
                first = await log.append("first")
            assert ids_of(got) == [first]


async def test_cancelled_tail_is_harmless(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            ids = await fill(log, 1)
            for _ in range(20):
                with trio.move_on_after(0.01):
                    await log.tail(ids[-1], limit=10, block=5.0)
            new = await log.append("after")
            assert ids_of(await log.tail(ids[-1], limit=10, block=1.0)) == [new]
            assert (await log.read_after(ids[-1], limit=10)).events == [LoggedEvent(new, "after")]


async def test_trimmed_history(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend(SMALL) as log:
            ids = await fill(log, 1_000)
            assert consecutive(ids)
            assert await log.read_after(None, limit=10_000) == LogRead(ids[-1], None)
            assert await log.read_after(ids[0], limit=10_000) == LogRead(ids[-1], None)
            recent = await log.read_after(ids[-SMALL - 1], limit=10_000)
            assert recent.events is not None
            assert ids_of(recent.events) == ids[-SMALL:]
            with pytest.raises(LogDiscontinuityError) as caught:
                await log.tail(ids[0], limit=10, block=0)
            assert caught.value.after == ids[0]
            assert caught.value.newest == ids[-1]
            assert caught.value.oldest is not None
            assert caught.value.oldest in ids[1:]
            assert ids_of(await log.tail(ids[-3], limit=10, block=0)) == ids[-2:]


async def test_concurrent_appends_get_unique_consecutive_ids(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            got: list[str] = []

            async def writer(tag: str) -> None:
                got.extend(await fill(log, 40, tag))

            async with trio.open_nursery() as nursery:
                for tag in "abcde":
                    nursery.start_soon(writer, tag)
            ordered = sorted(got, key=int)
            assert len(set(got)) == 200
            assert consecutive(ordered)
            assert await log.newest() == ordered[-1]
            whole = await log.read_after(None, limit=1_000)
            assert whole.events is not None
            assert ids_of(whole.events) == ordered


async def test_read_after_is_one_instant_under_concurrent_appends(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            start = (await fill(log, 1))[0]
            done = trio.Event()

            async def writer() -> None:
                await fill(log, 200)
                done.set()

            reads = 0
            read = LogRead(None, None)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                while True:
                    finished = done.is_set()
                    read = await log.read_after(start, limit=1_000)
                    assert read.events is not None
                    assert read.newest is not None
                    # newest and the events are from the same instant: no more, no fewer.
                    expected = int(read.newest) - int(start)
                    assert len(read.events) == expected
                    if read.events:
                        assert read.events[-1].id == read.newest
                    reads += 1
                    if finished:
                        break
            assert read.newest is not None
            assert int(read.newest) == int(start) + 200


@pytest.mark.parametrize("block", [-1.0, math.inf, -math.inf, math.nan, None, True, "1"])
async def test_a_block_must_be_a_non_negative_finite_number(backend: Any, block: Any) -> None:
    """One contract: a store cannot block forever, so no backend accepts ``inf``."""
    with trio.fail_after(GUARD):
        async with backend() as log:
            with pytest.raises(ValueError, match="block"):
                await log.tail(None, limit=10, block=block)


@pytest.mark.parametrize("limit", [0, -1, 1.5, None, True])
async def test_a_tail_limit_must_be_a_whole_number_of_at_least_one(
    backend: Any, limit: Any
) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            with pytest.raises(ValueError, match="limit"):
                await log.tail(None, limit=limit, block=0)


@pytest.mark.parametrize("limit", [-1, 1.5, None, True])
async def test_a_read_limit_must_be_a_whole_number(backend: Any, limit: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as log:
            with pytest.raises(ValueError, match="limit"):
                await log.read_after(None, limit=limit)
