"""The Redis log's continuity rule (trio_reconnect/server/_redis/_continuity.py): pure, no Redis."""

from __future__ import annotations

import pytest

from trio_reconnect.server._logbase import EventLogError, LoggedEvent
from trio_reconnect.server._redis._continuity import (
    MAX_REDIS_ID,
    entry_seq,
    gap_is_whole,
    idle_position_lost,
    parse_entries,
    parse_flat_entries,
    safe_seq,
    tail_follows,
)


def events(*ids: int) -> list[LoggedEvent]:
    return [LoggedEvent(str(i), None) for i in ids]


def test_entry_ids_and_event_ids() -> None:
    assert entry_seq(b"42-0") == 42
    for bad in (b"42-1", b"042-0", b"x-0", b"42"):
        with pytest.raises(EventLogError):
            entry_seq(bad)
    assert safe_seq("7") == 7
    assert safe_seq(str(MAX_REDIS_ID)) == MAX_REDIS_ID
    assert safe_seq(str(MAX_REDIS_ID + 1)) is None  # beyond a Lua double: unknown
    assert safe_seq("07") is None
    assert safe_seq(None) is None


def test_entries_parse_and_stop_at_the_first_hole() -> None:
    raw = [[b"5-0", [b"d", b"1"]], [b"6-0", [b"d", b'"x"']], [b"8-0", [b"d", b"3"]]]
    assert parse_entries(raw) == [LoggedEvent("5", 1), LoggedEvent("6", "x")]
    with pytest.raises(EventLogError, match="no 'd' field"):
        parse_entries([[b"5-0", [b"e", b"1"]]])


def test_flat_entries_parse_from_their_start_and_stop_at_the_first_hole() -> None:
    flat = [b"ok", b"5-0", b"1", b"6-0", b'"x"', b"8-0", b"3", b"tail"]
    assert parse_flat_entries(flat, 1, 3) == [LoggedEvent("5", 1), LoggedEvent("6", "x")]
    assert parse_flat_entries(flat, 3, 1) == [LoggedEvent("6", "x")]
    assert parse_flat_entries(flat, 1, 0) == []
    with pytest.raises(EventLogError, match="no 'd' field"):
        parse_flat_entries([b"5-0", None], 0, 1)
    with pytest.raises(EventLogError, match="fewer than 4 entries"):
        parse_flat_entries(flat, 1, 4)


def test_a_gap_is_whole_when_it_is_exactly_start_through_newest() -> None:
    assert gap_is_whole(events(3, 4, 5), start=3, newest=5)
    assert gap_is_whole([], start=6, newest=5)  # nothing after the newest
    assert not gap_is_whole(events(4, 5), start=3, newest=5)  # trimmed
    assert not gap_is_whole(events(3, 4), start=3, newest=5)  # cut at a hole
    assert not gap_is_whole(events(2, 3, 4), start=3, newest=4)


def test_a_tail_follows_on_from_its_position() -> None:
    assert tail_follows(events(8, 9), entries=2, expected_first=8)
    assert not tail_follows(events(9), entries=1, expected_first=8)  # trimmed before us
    assert not tail_follows(events(8), entries=2, expected_first=8)  # a hole
    assert not tail_follows([], entries=1, expected_first=8)
    assert not tail_follows(events(8), entries=1, expected_first=None)  # the log is gone


@pytest.mark.parametrize(
    ("after", "state", "lost"),
    [
        (None, None, False),  # an empty log, read from the start
        (None, (5, 1, 1), False),
        (None, (5, 1, 2), True),  # the first event was trimmed
        (5, None, True),  # Redis lost the log
        (5, (5, 1, 1), False),  # up to date
        (5, (4, 1, 1), True),  # the counter went back
        (5, (9, 6, 6), True),  # a new incarnation started above us
        (5, (9, 1, 6), False),  # the next event is held
        (5, (9, 1, 7), True),  # the next event was trimmed
        (5, (9, 1, None), True),  # issued but not held (the stream was deleted)
    ],
)
def test_an_idle_position_is_lost(
    after: int | None, state: tuple[int, int, int | None] | None, lost: bool
) -> None:
    assert idle_position_lost(after, state) is lost
