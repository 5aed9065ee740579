"""ReplayLog: the pure, bounded event log."""

from __future__ import annotations

import time
from typing import Any

import pytest

from trio_reconnect.server import DEFAULT_MAX_EVENTS, EventLog, LoggedEvent, ReplayLog
from trio_reconnect.server._log import parse_event_id
from trio_reconnect.server._logbase import clock_start_id


def ids(events: list[LoggedEvent] | None) -> list[str] | None:
    return None if events is None else [event.id for event in events]


def test_empty_log() -> None:
    log = ReplayLog(start=1)
    assert log.max_events == DEFAULT_MAX_EVENTS
    assert len(log) == 0
    assert log.newest is None
    assert log.oldest is None
    assert log.after(None) == []
    assert log.count_after(None) == 0
    assert log.after("1") is None  # never issued
    assert not log.holds("1")


def test_append_returns_increasing_decimal_ids() -> None:
    log = ReplayLog(start=1)
    assert [log.append(n) for n in range(12)] == [str(n) for n in range(1, 13)]
    assert log.newest == "12"
    assert log.oldest == "1"
    assert len(log) == 12
    assert log.after("9") == [LoggedEvent("10", 9), LoggedEvent("11", 10), LoggedEvent("12", 11)]
    assert log.after("12") == []
    assert log.count_after("12") == 0
    assert log.count_after("2") == 10
    assert ids(log.after(None)) == [str(n) for n in range(1, 13)]


def test_bounded_drops_oldest() -> None:
    log = ReplayLog(max_events=3, start=1)
    for n in range(5):
        log.append({"n": n})
    assert len(log) == 3
    assert log.oldest == "3"
    assert log.newest == "5"
    assert [log.holds(str(n)) for n in range(1, 7)] == [False, False, True, True, True, False]
    # The gap after "2" is fully held (3, 4, 5) although "2" itself is gone.
    assert ids(log.after("2")) == ["3", "4", "5"]
    assert log.count_after("2") == 3
    # After "1", event 2 is missing.
    assert log.after("1") is None
    assert log.count_after("1") is None
    # The whole history is no longer held.
    assert log.after(None) is None
    assert log.count_after(None) is None
    assert log.after("5") == []
    assert log.after("4") == [LoggedEvent("5", {"n": 4})]


def test_ring_wraps_many_times() -> None:
    log = ReplayLog(max_events=7, start=1)
    for n in range(1000):
        log.append(n)
    assert ids(log.after("995")) == ["996", "997", "998", "999", "1000"]
    assert [event.data for event in log.after("993") or []] == list(range(993, 1000))
    assert log.after("992") is None


def test_start_offsets_ids() -> None:
    log = ReplayLog(max_events=5, start=1_000)
    assert log.newest is None
    assert log.after("999") is None  # never issued by this log
    assert log.append("a") == "1000"
    assert log.append("b") == "1001"
    assert ids(log.after(None)) == ["1000", "1001"]
    assert ids(log.after("1000")) == ["1001"]
    # A lastEventId from before a restart that started the log afresh is unknown.
    assert log.after("57") is None
    assert log.after("1002") is None


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
def test_hostile_ids_are_unknown(bad: str) -> None:
    log = ReplayLog(start=1)
    for n in range(10):
        log.append(n)
    assert parse_event_id(bad) is None
    assert log.after(bad) is None
    assert log.count_after(bad) is None
    assert not log.holds(bad)


@pytest.mark.parametrize("bad", [None, 3, 3.0, b"3", ["3"]])
def test_non_string_ids_are_unknown(bad: Any) -> None:
    assert parse_event_id(bad) is None
    log = ReplayLog(start=1)
    log.append(1)
    assert not log.holds(bad)


def test_ids_beyond_newest_are_unknown() -> None:
    log = ReplayLog(start=1)
    log.append(1)
    assert log.after("2") is None
    assert log.after("9" * 40) is None
    assert log.after("0") is None  # before the first id: never issued


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_events_validation(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_events"):
        ReplayLog(max_events=bad, start=1)


def test_start_validation() -> None:
    with pytest.raises(ValueError, match="start"):
        ReplayLog(start=-1)
    assert ReplayLog(start=0).append(None) == "0"


def test_replay_log_is_an_event_log() -> None:
    log: EventLog = ReplayLog(max_events=2, start=1)
    assert log.append("x") == "1"
    assert log.newest == "1"
    assert log.holds("1")
    assert log.count_after("1") == 0


def test_logged_event_is_frozen() -> None:
    event = LoggedEvent("1", {"a": 1})
    with pytest.raises(AttributeError):
        event.id = "2"  # type: ignore[misc]
    assert event == LoggedEvent("1", {"a": 1})


def test_default_ids_start_from_the_clock_and_are_never_reissued() -> None:
    # PROTOCOL.md section 2: a log that starts empty issues ids no earlier
    # incarnation issued. Before the fix, every new log started at "1".
    before = clock_start_id()
    log = ReplayLog()
    assert before <= log.start <= clock_start_id()
    assert log.append("x") == str(log.start)
    # A process started a second ago, which issued 100,000 ids since ...
    old = ReplayLog(start=clock_start_id(time.time() - 1.0))
    old_ids = [old.append(n) for n in range(100_000)]
    # ... and the process that replaces it now.
    new = ReplayLog()
    new_ids = [new.append(n) for n in range(10)]
    assert min(map(int, new_ids)) > max(map(int, old_ids))
