"""The in-memory event log: :class:`ReplayLog`, a bounded ring buffer.

It implements the async :class:`~trio_reconnect.server.EventLog` protocol of
:mod:`trio_reconnect.server._logbase` for one process: every method is
synchronous between its checkpoints, so a read sees one instant of the log.
The id rules live in ``_logbase``; the ones specific to this log:

* The n-th event appended gets ``str(start + n - 1)``. ``start`` defaults to
  :func:`~trio_reconnect.server._logbase.clock_start_id` (microseconds since
  the epoch), so that a new process never reissues an id an earlier one
  issued (PROTOCOL.md section 2); tests pass ``start=1`` for small ids.
* At most ``max_events`` events are held; appending one more drops the oldest.
* ``read_after(id)`` holds every event appended after ``id``, oldest first, or
  ``None`` when that gap is not fully held: ``id`` was never issued by this
  log, or events after it have been dropped. The id itself need not be held
  any more: the event just before the oldest held one still has a complete
  gap. ``read_after(None)`` is the whole history, if nothing has been dropped.
* ``tail(after)`` waits (up to ``block`` seconds) on a parking lot that every
  append wakes; a reader whose position fell out of the ring gets
  :class:`~trio_reconnect.server.LogDiscontinuityError`.

Because ids are sequence numbers, the position of an id in the ring is
arithmetic: ``append`` and the "is the gap held, how long is it" test are
O(1), and a read is O(k) in the number of events it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs
import trio

from .._validators import check_int, check_non_negative, non_negative_int, positive_int
from ._logbase import LogDiscontinuityError, LoggedEvent, LogRead, clock_start_id, parse_event_id

__all__ = ["DEFAULT_MAX_EVENTS", "ReplayLog"]

#: How many events a :class:`ReplayLog` holds by default.
DEFAULT_MAX_EVENTS: Final = 10_000


@attrs.define(eq=False)
class ReplayLog:
    """A bounded in-memory event log with sequence-number ids (an :class:`EventLog`).

    Args:
        max_events: How many events to hold; the oldest is dropped beyond it.
        start: The sequence number of the first id. Defaults to microseconds
            since the epoch, so that ids are never reused by a later process;
            pass a small number (``start=1``) for readable ids in tests.
    """

    max_events: int = attrs.field(default=DEFAULT_MAX_EVENTS, validator=positive_int)
    start: int = attrs.field(
        factory=lambda: clock_start_id(), kw_only=True, validator=non_negative_int
    )
    _ring: list[LoggedEvent | None] = attrs.field(init=False, repr=False)
    #: Sequence number the next append gets.
    _next: int = attrs.field(init=False)
    #: Sequence number of the oldest event held (== _next when empty).
    _first: int = attrs.field(init=False)
    #: Where tail() readers wait for the next append.
    _appended: trio.lowlevel.ParkingLot = attrs.field(
        init=False, factory=trio.lowlevel.ParkingLot, repr=False
    )

    def __attrs_post_init__(self) -> None:
        self._ring = [None] * self.max_events
        self._next = self.start
        self._first = self.start

    def __len__(self) -> int:
        """How many events are held now."""
        return self._next - self._first

    # -- the EventLog protocol ----------------------------------------------

    async def append(self, data: Any) -> str:
        """Store one event; drop the oldest if the log is full.

        Returns:
            The new event's id.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        event_id = self.append_nowait(data)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return event_id

    def append_nowait(self, data: Any) -> str:
        """:meth:`append` from synchronous code (filling a log before serving, say).

        Not part of the :class:`~trio_reconnect.server.EventLog` protocol: a
        log on a store cannot append without waiting.
        """
        seq = self._next
        event_id = str(seq)
        self._ring[seq % self.max_events] = LoggedEvent(event_id, data)
        self._next = seq + 1
        if self._next - self._first > self.max_events:
            self._first += 1
        self._appended.unpark_all()
        return event_id

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        """Every event after ``event_id`` (``None`` for them: not all held, or over ``limit``)."""
        check_int("limit", limit, minimum=0)
        await trio.lowlevel.checkpoint()
        newest = self._newest()
        first = self._gap_start(event_id)
        if first is None or self._next - first > limit:
            return LogRead(newest, None)
        return LogRead(newest, self._slice(first, self._next))

    async def newest(self) -> str | None:
        """The id of the newest event, or ``None`` when no event was ever appended."""
        await trio.lowlevel.checkpoint()
        return self._newest()

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        """The events after ``after``, at most ``limit``, waiting up to ``block`` s for one.

        Raises:
            LogDiscontinuityError: if the events right after ``after`` are
                no longer held (or ``after`` was never issued by this log).
        """
        check_int("limit", limit, minimum=1)
        check_non_negative("block", block)
        await trio.lowlevel.checkpoint_if_cancelled()
        deadline = trio.current_time() + block
        while True:
            first = self._tail_start(after)
            if first < self._next:
                events = self._slice(first, min(self._next, first + limit))
                await trio.lowlevel.cancel_shielded_checkpoint()
                return events
            if trio.current_time() >= deadline:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return []
            with trio.move_on_at(deadline):
                await self._appended.park()

    # -- arithmetic on sequence numbers -------------------------------------

    def _newest(self) -> str | None:
        return str(self._next - 1) if self._next > self.start else None

    def _oldest(self) -> str | None:
        return str(self._first) if self._next > self._first else None

    def _gap_start(self, event_id: str | None) -> int | None:
        """The sequence number of the first event after ``event_id``, if the gap is held."""
        if event_id is None:
            return self.start if self._first == self.start else None
        seq = parse_event_id(event_id)
        if seq is None or not self.start <= seq < self._next or seq + 1 < self._first:
            return None
        return seq + 1

    def _tail_start(self, after: str | None) -> int:
        first = self._gap_start(after)
        if first is None:
            raise LogDiscontinuityError(after, self._oldest(), self._newest())
        return first

    def _slice(self, first: int, end: int) -> list[LoggedEvent]:
        size = self.max_events
        ring = self._ring
        events: list[LoggedEvent] = []
        for seq in range(first, end):
            event = ring[seq % size]
            assert event is not None
            events.append(event)
        return events
