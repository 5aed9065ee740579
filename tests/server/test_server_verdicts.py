"""A connection's small decisions (trio_reconnect/server/_verdicts.py) and the pong rule."""

from __future__ import annotations

import itertools
import math

import pytest

from trio_reconnect._settings import missed_pong_is_backpressure
from trio_reconnect.server._verdicts import half_open, may_write_directly, uncovered


def test_nothing_is_covered_before_ready() -> None:
    frames = [(1, "a"), (None, "m"), (2, "b")]
    assert uncovered(frames, None) is frames


def test_events_at_or_below_covered_are_dropped_messages_stay_in_order() -> None:
    frames = [(None, "m0"), (4, "a"), (None, "m1"), (5, "b"), (6, "c"), (None, "m2")]
    assert uncovered(frames, 5) == [(None, "m0"), (None, "m1"), (6, "c"), (None, "m2")]
    assert uncovered(frames, 100) == [(None, "m0"), (None, "m1"), (None, "m2")]


def test_frames_past_covered_are_not_copied() -> None:
    frames = [(None, "m"), (6, "a"), (7, "b")]
    assert uncovered(frames, 5) is frames
    only_messages = [(None, "m")]
    assert uncovered(only_messages, 5) is only_messages
    assert uncovered([], 5) == []


def test_direct_writes_only_when_nothing_else_could_be_writing() -> None:
    for ready, closing, sending, idle in itertools.product([False, True], repeat=4):
        allowed = may_write_directly(ready=ready, closing=closing, sending=sending, queue_idle=idle)
        assert allowed == (ready and not closing and not sending and idle)


def test_a_missed_pong_while_the_reader_was_held_is_backpressure() -> None:
    assert missed_pong_is_backpressure(held_now=True, held_since_ping=False)
    assert missed_pong_is_backpressure(held_now=False, held_since_ping=True)
    assert not missed_pong_is_backpressure(held_now=False, held_since_ping=False)


@pytest.mark.parametrize(
    ("in_handler", "left_at", "window_start", "verdict"),
    [
        (False, -math.inf, 10.0, True),  # never held: half-open
        (False, 9.9, 10.0, True),  # held before the ping only
        (False, 10.0, 10.0, False),  # came back as the wait began
        (False, 12.0, 10.0, False),  # held during the wait
        (True, -math.inf, 10.0, False),  # held now
    ],
)
def test_the_half_open_verdict(
    in_handler: bool, left_at: float, window_start: float, verdict: bool
) -> None:
    assert (
        half_open(in_handler=in_handler, handler_left_at=left_at, window_start=window_start)
        is verdict
    )
