"""The client's position in the event stream (trio_reconnect/_cursor.py). Pure: no trio."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_reconnect._cursor import Cursor
from trio_reconnect._protocol import Gap, HandshakeOutcome, HandshakeResult, ServerEvent, Snapshot


def test_a_delivered_event_moves_the_cursor_and_a_duplicate_does_not() -> None:
    cursor = Cursor("7", window=4)
    assert cursor.deliver(ServerEvent("8", None))
    assert cursor.last_event_id == "8"
    assert cursor.deliver(ServerEvent("9", None))
    assert not cursor.deliver(ServerEvent("8", "again"))
    assert cursor.last_event_id == "9"


def test_the_given_last_event_id_counts_as_delivered() -> None:
    cursor = Cursor("7", window=4)
    assert not cursor.deliver(ServerEvent("7", "replayed off by one"))
    assert cursor.deliver(ServerEvent("8", None))


@pytest.mark.parametrize("reset", [Snapshot("100", None), Gap("9", "100")])
def test_a_snapshot_or_a_gap_empties_the_window(reset: Snapshot | Gap) -> None:
    """The server's order starts again there: a reissued id is new."""
    cursor = Cursor(None, window=4)
    assert cursor.deliver(ServerEvent("3", "old"))
    assert cursor.deliver(reset)
    assert cursor.remembered == 1  # only where the order starts again: "100"
    assert cursor.deliver(ServerEvent("3", "new"))
    assert not cursor.deliver(ServerEvent("100", "the event the reset stands at"))


def test_a_snapshot_moves_the_cursor_to_its_id() -> None:
    cursor = Cursor(None, window=4)
    assert cursor.deliver(Snapshot("57", {"state": 1}))
    assert cursor.last_event_id == "57"


def test_raw_messages_and_gaps_are_delivered_and_do_not_move_it() -> None:
    cursor = Cursor("3", window=4)
    assert cursor.deliver("hello")
    assert cursor.deliver(b"\x00")
    assert cursor.deliver(Gap("3", "9"))
    assert cursor.last_event_id == "3"  # until the handshake's ready moves it


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (HandshakeResult(HandshakeOutcome.REPLAYED, 2, "12"), "12"),
        (HandshakeResult(HandshakeOutcome.FRESH, 0, None), "10"),  # nothing to resume from
        (HandshakeResult(HandshakeOutcome.LOST, 0, None), None),  # the gap is reported once
        (HandshakeResult(HandshakeOutcome.LOST, 0, "40"), "40"),
    ],
)
def test_the_end_of_a_handshake_moves_it_to_ready(
    result: HandshakeResult, expected: str | None
) -> None:
    cursor = Cursor("10", window=4)
    cursor.ready(result)
    assert cursor.last_event_id == expected


@given(
    window=st.integers(1, 6),
    ids=st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=1), max_size=60),
)
def test_the_window_is_a_bounded_sliding_window(window: int, ids: list[str]) -> None:
    """Ids are opaque: one among the last ``window`` delivered is dropped; memory stays bounded."""
    cursor = Cursor(None, window)
    recent: list[str] = []
    for event_id in ids:
        expected = event_id not in recent
        assert cursor.deliver(ServerEvent(event_id, None)) is expected
        if expected:
            recent = [*recent, event_id][-window:]
        assert cursor.remembered == len(recent) <= window


def test_the_window_must_hold_one_id_at_least() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Cursor(None, window=0)


@given(
    st.none() | st.sampled_from("abcdef"),
    st.integers(min_value=1, max_value=4),
    st.lists(st.sampled_from("abcdef"), max_size=30),
)
def test_deliver_id_is_deliver_of_an_event_with_that_id(
    start: str | None, window: int, ids: list[str]
) -> None:
    # The handshake marks each channel's subscribed id delivered without building an event.
    by_event, by_id = Cursor(start, window), Cursor(start, window)
    for event_id in ids:
        assert by_id.deliver_id(event_id) == by_event.deliver(ServerEvent(event_id, None))
        assert by_id.last_event_id == by_event.last_event_id
        assert by_id.remembered == by_event.remembered
