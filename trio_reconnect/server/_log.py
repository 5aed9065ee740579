"""The server's replay log: a bounded, in-memory sequence of events. Pure.

No trio, no clock. The server reads the log only through the small
:class:`EventLog` protocol, so that a backend on a shared store (Redis
streams, a database table ...) can replace :class:`ReplayLog` later without
touching the server.

Rules, stated once:

* Ids are decimal strings of consecutive integers from ``start``: the n-th
  event appended gets ``str(start + n - 1)``. ``start`` defaults to
  ``clock_start_id()`` of ``_logbase`` (microseconds since
  the epoch), so that a new process never reissues an id an earlier one
  issued (PROTOCOL.md section 2); tests pass ``start=1`` for small ids.
* At most ``max_events`` events are held; appending one more drops the oldest.
* ``after(id)`` is every event appended after ``id``, oldest first, or ``None``
  when that gap is not fully held: ``id`` was never issued by this log, or
  events after it have been dropped. The id itself need not be held any more:
  the event just before the oldest held one still has a complete gap.
  ``after(None)`` is the whole history, if nothing has been dropped yet.
* A client may send any string as its ``lastEventId``. Anything that is not
  the canonical decimal form of an issued id (``"-1"``, ``"abc"``, ``"1e9"``,
  ``"01"``, non-ASCII digits such as ``"\\u0663"``, a thousand-digit number) is
  simply unknown. Parsing is bounded in length, so a hostile id costs O(1).

Because ids are sequence numbers, the position of an id in the ring buffer is
arithmetic: ``append``, ``holds`` and ``count_after`` are O(1) and ``after`` is
O(k) in the number of events it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

import attrs

from .._validators import non_negative_int, positive_int
from ._logbase import clock_start_id

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "EventLog",
    "LoggedEvent",
    "ReplayLog",
]

#: How many events a :class:`ReplayLog` holds by default.
DEFAULT_MAX_EVENTS: Final = 10_000
#: Longest id string that is parsed at all (ids up to 10**40 - 1); anything
#: longer is unknown without being converted to an integer.
_MAX_ID_DIGITS: Final = 40


@attrs.frozen
class LoggedEvent:
    """One event held in the log.

    Attributes:
        id: The event's id, a decimal string.
        data: The event's JSON-serialisable payload.
    """

    id: str
    data: Any


class EventLog(Protocol):
    """What the server needs from an event log.

    Implement this to back the server with another store. Every method is
    synchronous: the server reads the log and registers a client for live
    events in one step, with no checkpoint in between (see
    :class:`~trio_reconnect.server.ReconnectServer`).
    """

    def append(self, data: Any) -> str:
        """Store one event and return its new id."""
        ...

    def after(self, event_id: str | None) -> Sequence[LoggedEvent] | None:
        """Every event after ``event_id``, oldest first; ``None`` if the gap is not all held."""
        ...

    def count_after(self, event_id: str | None) -> int | None:
        """``len(after(event_id))`` without building the list, or ``None``."""
        ...

    def holds(self, event_id: str) -> bool:
        """Whether the event ``event_id`` is in the log."""
        ...

    @property
    def newest(self) -> str | None:
        """The id of the newest event, or ``None`` when no event was ever appended."""
        ...


def parse_event_id(event_id: object) -> int | None:
    """The sequence number of a canonical decimal id, or ``None``.

    Only ASCII digits without a sign, without leading zeros and at most
    ``_MAX_ID_DIGITS`` long are accepted.
    """
    if not isinstance(event_id, str) or not 0 < len(event_id) <= _MAX_ID_DIGITS:
        return None
    if not (event_id.isascii() and event_id.isdigit()):
        return None
    if event_id[0] == "0" and len(event_id) > 1:
        return None
    return int(event_id)


@attrs.define(eq=False)
class ReplayLog:
    """A bounded in-memory event log with sequence-number ids.

    Args:
        max_events: How many events to hold; the oldest is dropped beyond it.
        start: The sequence number of the first id. By default the clock's
            microseconds since the epoch, a number no earlier process issued,
            so that a client's ``lastEventId`` from before a restart is
            unknown rather than mistaken for a position in the new log, and
            no new event reuses an id a client still remembers. Pass a small
            number (``start=1``) in tests.
    """

    max_events: int = attrs.field(default=DEFAULT_MAX_EVENTS, validator=positive_int)
    start: int = attrs.field(factory=clock_start_id, kw_only=True, validator=non_negative_int)
    _ring: list[LoggedEvent | None] = attrs.field(init=False, repr=False)
    #: Sequence number the next append gets.
    _next: int = attrs.field(init=False)
    #: Sequence number of the oldest event held (== _next when empty).
    _first: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._ring = [None] * self.max_events
        self._next = self.start
        self._first = self.start

    def __len__(self) -> int:
        return self._next - self._first

    @property
    def newest(self) -> str | None:
        """The id of the newest event, or ``None`` when the log is empty."""
        return str(self._next - 1) if self._next > self.start else None

    @property
    def oldest(self) -> str | None:
        """The id of the oldest event held, or ``None`` when the log is empty."""
        return str(self._first) if self._next > self._first else None

    def append(self, data: Any) -> str:
        """Store one event; drop the oldest if the log is full.

        Returns:
            The new event's id.
        """
        seq = self._next
        event_id = str(seq)
        self._ring[seq % self.max_events] = LoggedEvent(event_id, data)
        self._next = seq + 1
        if self._next - self._first > self.max_events:
            self._first += 1
        return event_id

    def holds(self, event_id: str) -> bool:
        """Whether the event ``event_id`` is still in the log."""
        seq = parse_event_id(event_id)
        return seq is not None and self._first <= seq < self._next

    def _gap_start(self, event_id: str | None) -> int | None:
        """The sequence number of the first event after ``event_id``, if the gap is held."""
        if event_id is None:
            return self.start if self._first == self.start else None
        seq = parse_event_id(event_id)
        if seq is None or not self.start <= seq < self._next or seq + 1 < self._first:
            return None
        return seq + 1

    def count_after(self, event_id: str | None) -> int | None:
        """How many events :meth:`after` would return, or ``None``."""
        first = self._gap_start(event_id)
        return None if first is None else self._next - first

    def after(self, event_id: str | None) -> list[LoggedEvent] | None:
        """Every event after ``event_id``, oldest first.

        Args:
            event_id: A client's ``lastEventId``; ``None`` asks for the whole
                history.

        Returns:
            The events, or ``None`` when ``event_id`` is unknown or events
            after it are no longer held.
        """
        first = self._gap_start(event_id)
        if first is None:
            return None
        size = self.max_events
        ring = self._ring
        events: list[LoggedEvent] = []
        for seq in range(first, self._next):
            event = ring[seq % size]
            assert event is not None
            events.append(event)
        return events
