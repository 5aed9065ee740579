"""What the server needs from an event log: the async protocol, its values and errors. Pure.

No trio here: this module states the contract that every log backend (the
in-memory :class:`~trio_reconnect.server.ReplayLog`, the Redis Streams log,
one you write) implements, and the id rules they share.

Id rules, stated once (PROTOCOL.md section 2):

* Ids are canonical decimal strings of consecutive integers: the event after
  ``"41"`` is ``"42"``. :func:`parse_event_id` is the one parser; anything
  that is not canonical (``"-1"``, ``"abc"``, ``"01"``, non-ASCII digits, a
  thousand-digit number) is unknown, and parsing it costs O(1).
* An id is never reused, across restarts too. A log that starts empty (a new
  process, a store that lost its data) starts counting from
  :func:`clock_start_id`, microseconds since the epoch, which is above every
  id an earlier incarnation issued as long as it issued fewer than a million
  ids a second on average.
* Because ids are consecutive, "is every event after ``L`` still held" and
  "how many are there" are arithmetic on every backend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final, Protocol

import attrs

__all__ = [
    "EventLog",
    "EventLogError",
    "LogDiscontinuityError",
    "LogRead",
    "LogUnavailableError",
    "LoggedEvent",
    "clock_start_id",
    "parse_event_id",
]

#: Longest id string that is parsed at all (ids up to 10**40 - 1); anything
#: longer is unknown without being converted to an integer.
MAX_ID_DIGITS: Final = 40


def parse_event_id(event_id: object) -> int | None:
    """The sequence number of a canonical decimal id, or ``None``.

    Only ASCII digits without a sign, without leading zeros and at most
    ``MAX_ID_DIGITS`` long are accepted.
    """
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID_DIGITS:
        return None
    if not (event_id.isascii() and event_id.isdigit()):
        return None
    if event_id[0] == "0" and len(event_id) > 1:
        return None
    return int(event_id)


def clock_start_id(now: float | None = None) -> int:
    """The first sequence number of a log that starts empty: microseconds since the epoch.

    Args:
        now: Seconds since the epoch (``time.time()`` when omitted).
    """
    return int((time.time() if now is None else now) * 1_000_000)


@attrs.frozen
class LoggedEvent:
    """One event held in the log.

    Attributes:
        id: The event's id, a canonical decimal string.
        data: The event's JSON-serialisable payload.
    """

    id: str
    data: Any


@attrs.frozen
class LogRead:
    """The answer to :meth:`EventLog.read_after`, taken at one instant.

    Attributes:
        newest: The newest id in the log at that instant (``None``: no event
            was ever appended).
        events: Every event after the asked id up to and including
            ``newest``, oldest first; ``None`` when that gap is not fully held
            (the id is unknown, or events after it were trimmed) or holds
            more than the asked ``limit``.
    """

    newest: str | None
    events: Sequence[LoggedEvent] | None


class EventLogError(Exception):
    """Base class of the errors a log backend raises."""


class LogUnavailableError(EventLogError):
    """The store cannot be reached (or did not answer in time).

    Raised by any :class:`EventLog` method. From :meth:`EventLog.append` it
    means the event may or may not have been stored: the append is never
    retried, because a retried append could store the event twice.
    """


class LogDiscontinuityError(EventLogError):
    """Raised by :meth:`EventLog.tail`: the events right after ``after`` are no longer held.

    They were trimmed before the reader got to them, or the store lost its
    data and now issues ids from the clock (``newest`` is then below
    ``after``, or far above it with nothing in between).

    Attributes:
        after: The id the reader stood at.
        oldest: The oldest id the log holds now (``None``: empty).
        newest: The newest id the log holds now (``None``: empty).
    """

    def __init__(self, after: str | None, oldest: str | None, newest: str | None) -> None:
        super().__init__(
            f"the log no longer holds the events after {after!r} "
            f"(it holds {oldest!r} .. {newest!r})"
        )
        self.after = after
        self.oldest = oldest
        self.newest = newest


class EventLog(Protocol):
    """The async event log a :class:`~trio_reconnect.server.ReconnectServer` runs on.

    Implement it to back the server with another store. Ids follow the rules
    at the top of this module. Every method may raise
    :class:`LogUnavailableError`; none may retry a write.
    """

    async def append(self, data: Any) -> str:
        """Store one event and return its new id (the newest id plus one)."""
        ...

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        """Every event after ``event_id`` (``None``: the whole history), in one consistent read.

        ``events`` is ``None`` when the gap after ``event_id`` is not fully
        held or has more than ``limit`` events.

        Raises:
            ValueError: if ``limit`` is not a whole number of at least 0.
        """
        ...

    async def newest(self) -> str | None:
        """The id of the newest event, or ``None`` when no event was ever appended."""
        ...

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        """The events after ``after`` in log order, at most ``limit``.

        Blocks up to ``block`` seconds for at least one (a bounded block
        rather than a timeout scope, so that a backend can keep it
        uncancelled); returns an empty sequence when none came. ``after=None``
        reads from the start of the log. Cancelling it must be safe (a
        backend whose blocking read cannot be cancelled bounds its block and
        checks for cancellation between calls).

        Raises:
            LogDiscontinuityError: if the events right after ``after`` are no
                longer held.
            ValueError: if ``limit`` is not a whole number of at least 1, or
                ``block`` is not a finite number of at least zero (every
                backend: a store cannot block forever, so none may).
        """
        ...
