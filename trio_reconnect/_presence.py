"""One channel's member list on the client (PROTOCOL.md 4.4), sans IO.

Pure: no trio. The server sends a channel's whole member list (``presence``)
before each ``subscribed``, first subscribe and every resubscribe alike, and
``join``/``leave`` in between. :class:`Members` applies them and says what
changed, so that an application sees a change only where there is one. The
rules, stated once:

* a ``presence`` frame replaces the whole list; the changes it makes are one
  :class:`~trio_reconnect._wire.Leave` per member that is gone (in the old
  list's order), then one :class:`~trio_reconnect._wire.Join` per member that
  is new or whose ``info`` changed (in the new list's order). The first list
  of a subscription is a change from the empty list (a join per member); a
  resubscribe's list that equals the one held changes nothing: no flapping;
* a ``join`` of a key not in the list adds it; of a key in the list with other
  ``info`` replaces the info (a change, reported as a join); with the same
  ``info``, changes nothing;
* a ``leave`` of a key in the list removes it; of a key not in the list
  changes nothing;
* the list holds what the server sent, bounded by the frames it came in
  (the websocket's message size limit), and is emptied by :meth:`Members.clear`
  when the subscription ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._wire import Join, Leave, Presence

__all__ = ["Members"]


@attrs.define(eq=False)
class Members(Mapping[str, dict[str, Any]]):
    """A channel's members, key (``clientId``) -> ``info``; a read-only mapping.

    Args:
        channel: The channel.
    """

    channel: str
    _members: dict[str, dict[str, Any]] = attrs.field(init=False, factory=dict)

    def replace(self, presence: Presence) -> list[Join | Leave]:
        """Take the whole list of a ``presence`` frame; return the changes, leaves first."""
        self._check(presence.channel)
        old = self._members
        new = dict(presence.members)
        changes: list[Join | Leave] = [Leave(self.channel, key) for key in old if key not in new]
        changes.extend(
            Join(self.channel, key, info)
            for key, info in new.items()
            if key not in old or old[key] != info
        )
        self._members.clear()  # in place: a view() stays live
        self._members.update(new)
        return changes

    def apply(self, change: Join | Leave) -> Join | Leave | None:
        """Apply a ``join`` or ``leave``; return it if it changed the list, else ``None``."""
        self._check(change.channel)
        key = change.client_id
        if isinstance(change, Join):
            if key in self._members and self._members[key] == change.info:
                return None
            self._members[key] = change.info
            return change
        if key not in self._members:
            return None
        del self._members[key]
        return change

    def clear(self) -> list[Leave]:
        """Empty the list (the subscription ended); return a leave per member."""
        gone = [Leave(self.channel, key) for key in self._members]
        self._members.clear()
        return gone

    def view(self) -> Mapping[str, dict[str, Any]]:
        """A read-only live view of the list (for ``sub.members``)."""
        return MappingProxyType(self._members)

    def _check(self, channel: str) -> None:
        if channel != self.channel:
            raise ValueError(f"a frame of channel {channel!r} given to {self.channel!r}'s members")

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self._members[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)
