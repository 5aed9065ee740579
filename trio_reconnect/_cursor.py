"""Where the application is in the server's event stream. Pure.

The client resumes from the id of the newest event it delivered, and drops an
event whose id it delivered recently (a replay boundary, a server that sends
one twice). Both live in one :class:`Cursor`, fed every item the client is
about to deliver, during the resume handshake and after ``ready``. The rules,
stated once:

* an event whose id is among the last ``window`` delivered ids is a
  duplicate: it is not delivered and does not move the cursor;
* the ``last_event_id`` the application passes in counts as delivered: a
  server that replays from it (off by one) does not deliver it again;
* a delivered event moves the cursor to its id; a snapshot to its id;
* a :class:`~trio_reconnect.Snapshot` or a :class:`~trio_reconnect.Gap`
  empties the window: the server's order starts again from that ``ready``
  id, so an id seen before (perhaps reissued by a server that lost its log)
  is not a duplicate any more (docs/reference/protocol.md, section 2); the id it
  starts again from (the snapshot's id, the gap's ``ready_id``) then counts
  as delivered, by the rule for the passed-in ``last_event_id``: a snapshot
  at 6 includes event 6;
* when a handshake ends, the cursor moves to ``ready``'s id if it has one,
  and to ``None`` when events were lost (``lost: true`` with a null id), so
  that a gap is reported once and not again on every reconnect;
* the window never holds more than ``window`` ids.
"""

from __future__ import annotations

import attrs

from ._protocol import (
    Gap,
    HandshakeOutcome,
    HandshakeResult,
    Item,
    RecentIds,
    ServerEvent,
    Snapshot,
)

__all__ = ["Cursor"]


@attrs.define(eq=False)
class Cursor:
    """The newest delivered event id and the window of recent ids.

    Args:
        last_event_id: Where to resume from (``None``: from the start).
        window: How many recent ids are kept to drop duplicates (at least 1).
    """

    last_event_id: str | None
    window: int
    _recent: RecentIds = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._recent = RecentIds(self.window)
        if self.last_event_id is not None:
            self._recent.add(self.last_event_id)

    def deliver(self, item: Item) -> bool:
        """Whether to deliver ``item`` (``False``: a duplicate event); moves the cursor."""
        if isinstance(item, ServerEvent):
            if not self._recent.add(item.id):
                return False
            self.last_event_id = item.id
        elif isinstance(item, Snapshot):
            self.last_event_id = item.id
            self._restart_window(item.id)
        elif isinstance(item, Gap):
            self._restart_window(item.ready_id)
        return True

    def deliver_id(self, event_id: str) -> bool:
        """``deliver(ServerEvent(event_id, None))`` without building the event."""
        if not self._recent.add(event_id):
            return False
        self.last_event_id = event_id
        return True

    def _restart_window(self, start: str | None) -> None:
        """Empty the window, then count ``start`` (where the order starts again) as delivered."""
        self._recent.clear()
        if start is not None:
            self._recent.add(start)

    def ready(self, result: HandshakeResult) -> None:
        """A handshake ended with ``result``."""
        if result.ready_id is not None or result.outcome is HandshakeOutcome.LOST:
            self.last_event_id = result.ready_id

    @property
    def remembered(self) -> int:
        """How many ids the window holds now (at most ``window``)."""
        return len(self._recent)
