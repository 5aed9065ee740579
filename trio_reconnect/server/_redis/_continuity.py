"""The Redis log's continuity rule: ids in and out, and when a read is whole. Pure.

No Redis, no trio: what the scripts returned comes in, a verdict goes out.

Ids
---

Event ``n`` is the stream entry ``n-0``. Stream ids are never shown to
anyone: ids leave the backend as canonical decimal strings (``"42"``), and
ids come in through :func:`~trio_reconnect.server._logbase.parse_event_id`
only (Redis itself would take ``"0042-0"`` for ``"42-0"``). Lua numbers are
doubles, exact up to 2**53 (:data:`MAX_REDIS_ID`), far above a clock id in
microseconds; a larger id from a client is unknown without reaching Redis.

When a read is whole
--------------------

Ids are consecutive, so "is the gap after ``L`` fully held" is exact
arithmetic (:func:`gap_is_whole`): it is held iff the read returned exactly
``newest - L`` entries starting at ``L + 1``. No XINFO field is needed (Redis
6.2 lacks ``entries-added`` and ``max-deleted-entry-id``), so Redis 6.2 and
7.x behave alike; ``MAXLEN ~`` trimming is seen exactly as it is.

A tail read after ``L`` must start at ``L + 1`` (or at the log's ``first``
when reading from the start) and run on consecutively
(:func:`tail_follows`); anything else means entries were trimmed before the
reader got to them, or the counter restarted from the clock. A tail that
found nothing checks the log's state (:func:`idle_position_lost`): Redis
restarted empty (no counter) or a counter below ``L``, or entries after
``L`` that are issued but not held (the stream was deleted), is a
discontinuity too, found within one ``block`` even when nothing is published.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from coredis.response.types import StreamEntry

from .._logbase import EventLogError, LoggedEvent, parse_event_id

__all__ = [
    "MAX_REDIS_ID",
    "LogState",
    "decode",
    "entry_seq",
    "gap_is_whole",
    "idle_position_lost",
    "parse_entries",
    "parse_flat_entries",
    "safe_seq",
    "tail_follows",
]

#: Largest id this backend can issue or look up (Lua numbers are doubles).
MAX_REDIS_ID: Final = 2**53 - 1

#: The log's state, as the state script reads it: ``(seq, first, oldest held or None)``.
LogState = tuple[int, int, int | None]


def decode(value: object) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_seq(entry_id: object) -> int:
    """The sequence number of a stream entry id ``b"42-0"``.

    Raises:
        EventLogError: for an entry this log did not write.
    """
    text = decode(entry_id)
    seq, _, tail = text.partition("-")
    if tail != "0" or parse_event_id(seq) is None:
        raise EventLogError(f"the stream holds an entry this log did not write: {text!r}")
    return int(seq)


def safe_seq(event_id: str | None) -> int | None:
    """``event_id``'s sequence number if this backend could have issued it, else ``None``."""
    seq = parse_event_id(event_id)
    return seq if seq is not None and seq <= MAX_REDIS_ID else None


def parse_entries(entries: Sequence[Any]) -> list[LoggedEvent]:
    """Raw XRANGE entries ``[id, [field, value, ...]]`` (or coredis StreamEntry) as events.

    Stops at the first hole: the caller then sees fewer events than the gap.
    """
    return _consecutive(_id_and_data(entry) for entry in entries)


def _id_and_data(entry: Any) -> tuple[Any, Any]:
    """An XRANGE entry's (or coredis StreamEntry's) raw id and its ``d`` field (``None``: none)."""
    if isinstance(entry, StreamEntry):
        return entry.identifier, entry.field_values.get(b"d")
    raw_id, flat = entry[0], entry[1]
    return raw_id, dict(zip(flat[::2], flat[1::2], strict=True)).get(b"d")


def _consecutive(entries: Iterable[tuple[Any, Any]]) -> list[LoggedEvent]:
    """``(raw id, data)`` pairs as events, up to the first hole; data ``None`` is an error."""
    events: list[LoggedEvent] = []
    previous: int | None = None
    for raw_id, payload in entries:
        seq = entry_seq(raw_id)
        if previous is not None and seq != previous + 1:
            break
        if payload is None:
            raise EventLogError(f"stream entry {decode(raw_id)} has no 'd' field")
        events.append(LoggedEvent(str(seq), json.loads(payload)))
        previous = seq
    return events


def parse_flat_entries(flat: Sequence[Any], start: int, count: int) -> list[LoggedEvent]:
    """``count`` entries from ``flat[start]`` as events: each an id and its data (``None``: none).

    The read script's entries, as :func:`parse_entries` takes XRANGE's: it
    stops at the first hole, and an entry without data is an error.

    Raises:
        EventLogError: an entry this log did not write, or one without data.
    """
    if start + 2 * count > len(flat):
        raise EventLogError(f"the read reply holds fewer than {count} entries")
    end = start + 2 * count
    return _consecutive(zip(flat[start:end:2], flat[start + 1 : end : 2], strict=True))


def gap_is_whole(events: Sequence[LoggedEvent], *, start: int, newest: int) -> bool:
    """Whether ``events`` are exactly the events ``start`` through ``newest``."""
    return len(events) == newest - start + 1 and (not events or int(events[0].id) == start)


def tail_follows(
    events: Sequence[LoggedEvent], *, entries: int, expected_first: int | None
) -> bool:
    """Whether a tail read of ``entries`` entries, parsed as ``events``, follows on.

    Args:
        events: The parsed events (cut at the first hole).
        entries: How many entries the read returned.
        expected_first: The id the read must start at (``None``: the log is gone).
    """
    return bool(events) and int(events[0].id) == expected_first and len(events) == entries


def idle_position_lost(after: int | None, state: LogState | None) -> bool:
    """Whether a tail position is no longer in the log, after a read that found nothing.

    Args:
        after: The position (``None``: the start of the log).
        state: The log's state (``None``: no counter, Redis lost the log).
    """
    if after is None:
        return state is not None and state[2] != state[1]  # the first event is gone
    if state is None:
        return True
    newest, first, oldest = state
    if newest < after or after < first:
        return True
    return newest > after and (oldest is None or oldest > after + 1)
