"""ReplayLog: the bounded in-memory implementation of the async EventLog."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from trio_reconnect.server import (
    DEFAULT_MAX_EVENTS,
    EventLog,
    LogDiscontinuityError,
    LoggedEvent,
    LogRead,
    ReplayLog,
    clock_start_id,
    parse_event_id,
)

BIG: int = 10**9


def ids(events: Sequence[LoggedEvent] | None) -> list[str] | None:
    return None if events is None else [event.id for event in events]


async def after(log: ReplayLog, event_id: str | None, limit: int = BIG) -> list[str] | None:
    return ids((await log.read_after(event_id, limit=limit)).events)


def filled(n: int, *, max_events: int = DEFAULT_MAX_EVENTS, start: int = 1) -> ReplayLog:
    log = ReplayLog(max_events=max_events, start=start)
    for i in range(n):
        log.append_nowait(i)
    return log


async def test_empty_log() -> None:
    log = ReplayLog(start=1)
    assert log.max_events == DEFAULT_MAX_EVENTS
    assert len(log) == 0
    assert await log.newest() is None
    assert await log.read_after(None, limit=0) == LogRead(None, [])
    assert await after(log, "1") is None  # never issued


async def test_append_returns_increasing_decimal_ids() -> None:
    log = ReplayLog(start=1)
    assert [await log.append(n) for n in range(12)] == [str(n) for n in range(1, 13)]
    assert await log.newest() == "12"
    assert len(log) == 12
    read = await log.read_after("9", limit=3)
    expected = [LoggedEvent("10", 9), LoggedEvent("11", 10), LoggedEvent("12", 11)]
    assert read == LogRead("12", expected)
    assert await log.read_after("12", limit=0) == LogRead("12", [])
    assert await after(log, None) == [str(n) for n in range(1, 13)]


async def test_limit_is_exact() -> None:
    log = filled(12)
    assert await after(log, "2", limit=10) == [str(n) for n in range(3, 13)]
    assert await log.read_after("2", limit=9) == LogRead("12", None)  # one too many
    assert await log.read_after(None, limit=11) == LogRead("12", None)
    assert await after(log, None, limit=12) == [str(n) for n in range(1, 13)]


async def test_bounded_drops_oldest() -> None:
    log = filled(5, max_events=3)
    assert len(log) == 3
    assert await log.newest() == "5"
    # The gap after "2" is fully held (3, 4, 5) although "2" itself is gone.
    assert await after(log, "2") == ["3", "4", "5"]
    # After "1", event 2 is missing.
    assert await log.read_after("1", limit=BIG) == LogRead("5", None)
    # The whole history is no longer held.
    assert await after(log, None) is None
    assert await after(log, "5") == []
    assert (await log.read_after("4", limit=1)).events == [LoggedEvent("5", 4)]


async def test_ring_wraps_many_times() -> None:
    log = filled(1000, max_events=7)
    assert await after(log, "995") == ["996", "997", "998", "999", "1000"]
    read = await log.read_after("993", limit=BIG)
    assert [event.data for event in read.events or []] == list(range(993, 1000))
    assert await after(log, "992") is None


async def test_start_offsets_ids() -> None:
    log = ReplayLog(max_events=5, start=1_000)
    assert await log.newest() is None
    assert await after(log, "999") is None  # never issued by this log
    assert await log.append("a") == "1000"
    assert await log.append("b") == "1001"
    assert await after(log, None) == ["1000", "1001"]
    assert await after(log, "1000") == ["1001"]
    # A lastEventId from before a restart that started the log afresh is unknown.
    assert await after(log, "57") is None
    assert await after(log, "1002") is None


async def test_default_start_comes_from_the_clock() -> None:
    # PROTOCOL.md section 2: a log that starts empty never reissues an id.
    before = clock_start_id()
    first = int(await ReplayLog().append("x"))
    assert before <= first <= clock_start_id()
    assert first >= int((time.time() - 60) * 1_000_000)
    # A second incarnation starts above every id the first one issued.
    earlier = ReplayLog()
    issued = [await earlier.append(n) for n in range(100)]
    assert int(await ReplayLog().append("y")) > int(issued[-1])


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "-1",
        "+1",
        " 1",
        "1 ",
        "abc",
        "1e9",
        "1.0",
        "0x1",
        "01",
        "00",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: str.isdigit() is True
        "\uff13",  # FULLWIDTH DIGIT THREE
        "1_000",
        "9" * 41,
        "1" + "0" * 5000,  # would exceed int()'s digit limit
        "2" * 1_000_000,
    ],
)
async def test_hostile_ids_are_unknown(bad: str) -> None:
    log = filled(10)
    assert parse_event_id(bad) is None
    assert await log.read_after(bad, limit=BIG) == LogRead("10", None)
    with pytest.raises(LogDiscontinuityError):
        await log.tail(bad, limit=10, block=0)


@pytest.mark.parametrize("bad", [None, 3, 3.0, b"3", ["3"]])
def test_non_string_ids_are_unknown(bad: Any) -> None:
    assert parse_event_id(bad) is None


async def test_ids_beyond_newest_are_unknown() -> None:
    log = filled(1)
    assert await after(log, "2") is None
    assert await after(log, "9" * 40) is None
    assert await after(log, "0") is None  # before the first id: never issued


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_events_validation(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_events"):
        ReplayLog(max_events=bad)


async def test_start_validation() -> None:
    with pytest.raises(ValueError, match="start"):
        ReplayLog(start=-1)
    assert await ReplayLog(start=0).append(None) == "0"


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
async def test_limit_validation(bad: Any) -> None:
    log = filled(3)
    with pytest.raises(ValueError, match="limit"):
        await log.read_after(None, limit=bad)
    with pytest.raises(ValueError, match="limit"):
        await log.tail(None, limit=bad, block=0)
    with pytest.raises(ValueError, match="limit"):
        await log.tail(None, limit=0, block=0)  # a tail read returns at least one


@pytest.mark.parametrize("bad", [-1.0, float("nan"), True, None])
async def test_block_validation(bad: Any) -> None:
    with pytest.raises(ValueError, match="block"):
        await filled(3).tail(None, limit=1, block=bad)


async def test_replay_log_is_an_event_log() -> None:
    log: EventLog = ReplayLog(max_events=2, start=1)
    assert await log.append("x") == "1"
    assert await log.newest() == "1"
    assert await log.read_after("1", limit=0) == LogRead("1", [])
    assert await log.tail(None, limit=5, block=0) == [LoggedEvent("1", "x")]


def test_logged_event_is_frozen() -> None:
    event = LoggedEvent("1", {"a": 1})
    with pytest.raises(AttributeError):
        event.id = "2"  # type: ignore[misc]
    assert event == LoggedEvent("1", {"a": 1})


# ------------------------------------------------------------------- the tail


async def test_tail_returns_what_is_there_at_once(autojump_clock: MockClock) -> None:
    log = filled(5)
    assert ids(await log.tail(None, limit=10, block=30)) == ["1", "2", "3", "4", "5"]
    assert ids(await log.tail("2", limit=2, block=30)) == ["3", "4"]
    assert trio.current_time() == 0.0


async def test_tail_blocks_until_an_append(autojump_clock: MockClock) -> None:
    log = filled(2)
    got: list[tuple[float, list[str] | None]] = []

    async def reader() -> None:
        events = await log.tail("2", limit=10, block=30)
        got.append((trio.current_time(), ids(events)))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(4)
            await log.append("three")
    assert got == [(4.0, ["3"])]


async def test_tail_times_out_empty(autojump_clock: MockClock) -> None:
    log = filled(2)
    with trio.fail_after(60):
        assert await log.tail("2", limit=10, block=2.5) == []
        assert trio.current_time() == 2.5
        assert await log.tail("2", limit=10, block=0) == []
    assert trio.current_time() == 2.5


async def test_tail_of_an_empty_log_waits_for_the_first_event(autojump_clock: MockClock) -> None:
    log = ReplayLog(start=7)
    got: list[tuple[float, list[str] | None]] = []

    async def reader() -> None:
        events = await log.tail(None, limit=3, block=10)
        got.append((trio.current_time(), ids(events)))

    with trio.fail_after(60):
        assert await log.tail(None, limit=3, block=1) == []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(2)
            await log.append("a")
    assert got == [(3.0, ["7"])]


async def test_every_tail_reader_is_woken(autojump_clock: MockClock) -> None:
    log = filled(1)
    got: list[list[str] | None] = []

    async def reader() -> None:
        got.append(ids(await log.tail("1", limit=10, block=30)))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(reader)
            await trio.sleep(1)
            log.append_nowait("two")
            log.append_nowait("three")
    assert got == [["2", "3"]] * 3


async def test_tail_behind_the_ring_is_a_discontinuity() -> None:
    log = filled(10, max_events=3)  # holds 8..10
    assert ids(await log.tail("7", limit=10, block=0)) == ["8", "9", "10"]
    with pytest.raises(LogDiscontinuityError) as caught:
        await log.tail("6", limit=10, block=0)
    assert (caught.value.after, caught.value.oldest, caught.value.newest) == ("6", "8", "10")
    with pytest.raises(LogDiscontinuityError):
        await log.tail(None, limit=10, block=0)  # the start was trimmed
    with pytest.raises(LogDiscontinuityError):
        await log.tail("11", limit=10, block=0)  # ahead of the log: not this log's id


async def test_a_reader_left_behind_while_it_waits(autojump_clock: MockClock) -> None:
    log = filled(3, max_events=3)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def overrun() -> None:
                await trio.sleep(1)
                for i in range(3):
                    log.append_nowait(i)  # 4, 5, 6: "3" falls out of the ring

            nursery.start_soon(overrun)
            # Woken by the appends; "3" is still the last event before the
            # oldest held one (4), so the gap after it is whole.
            assert ids(await log.tail("3", limit=10, block=30)) == ["4", "5", "6"]
        log.append_nowait("seven")
        with pytest.raises(LogDiscontinuityError):
            await log.tail("3", limit=10, block=30)


async def test_tail_is_cancellable(autojump_clock: MockClock) -> None:
    log = filled(1)
    with trio.move_on_after(5) as scope:
        await log.tail("1", limit=10, block=30)
    assert scope.cancelled_caught
    assert trio.current_time() == 5.0
    # Nothing left behind: the next reader sees the next event.
    log.append_nowait("two")
    assert ids(await log.tail("1", limit=10, block=0)) == ["2"]


async def test_append_is_atomic_under_cancellation() -> None:
    log = filled(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await log.append("never")  # cancelled before it stores anything
    assert await log.newest() == "1"
