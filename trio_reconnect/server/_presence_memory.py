"""Presence in one process: :class:`MemoryPresenceStore`, on trio's clock.

It keeps :mod:`._presencebase`'s contract for the servers of one process that
share one :class:`~trio_reconnect.server.MemoryChannelStore` (get it with
:meth:`~trio_reconnect.server.MemoryChannelStore.presence_store`): deadlines
are :func:`trio.current_time` values, every method is one synchronous step
(so a removal and its leave are one step, and two sweepers never both
remove a hold), and the notifications go to the channel store's listeners.
Owners work as on Redis: one whose liveness lapsed (or that retired) has its
held holds put in their grace at the next owner check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ._membersplan import hold_key, member_key
from ._presencebase import MemberChange, MemberList

__all__ = ["MemoryPresenceStore"]


@attrs.define(eq=False)
class _Room:
    """One channel's members, identities, counts and holds (0.0: held, else a deadline)."""

    members: dict[str, dict[str, Any]] = attrs.Factory(dict)
    keys: dict[str, str] = attrs.Factory(dict)  # identity -> key
    idents: dict[str, str] = attrs.Factory(dict)  # key -> identity
    counts: dict[str, int] = attrs.Factory(dict)
    holds: dict[str, float] = attrs.Factory(dict)
    version: int = 0


@attrs.define(eq=False)
class MemoryPresenceStore:
    """A :class:`~trio_reconnect.server.PresenceStore` in memory (the module comment).

    Args:
        notify: Called with every change, in version order (the channel
            store hands it to its listeners).
    """

    notify: Callable[[MemberChange], None]
    _rooms: dict[str, _Room] = attrs.field(init=False, factory=dict)
    #: ``(channel, hold)`` -> deadline: holds in their grace.
    _due: dict[tuple[str, str], float] = attrs.field(init=False, factory=dict)
    #: owner -> when its liveness lapses (``-inf``: retired).
    _owners: dict[str, float] = attrs.field(init=False, factory=dict)
    _by_owner: dict[str, set[tuple[str, str]]] = attrs.field(init=False, factory=dict)

    def join_nowait(
        self, channel: str, principal_id: str, client_id: str, info: dict[str, Any], hold: str
    ) -> str:
        """:meth:`join` in one synchronous step."""
        room = self._rooms.setdefault(channel, _Room())
        ident = f"{principal_id}\n{client_id}"
        key = room.keys.get(ident)
        if key is None:
            key = member_key(client_id, principal_id, taken=client_id in room.members)
            room.keys[ident], room.idents[key] = key, ident
        full = f"{key}\n{hold}"
        if full in room.holds:
            return full
        room.holds[full] = 0.0
        self._by_owner.setdefault(hold.split("\n", 1)[0], set()).add((channel, full))
        room.counts[key] = room.counts.get(key, 0) + 1
        if room.counts[key] == 1:
            room.members[key] = info
            room.version += 1
            self.notify(MemberChange(channel, room.version, key, info))
        return full

    def release_nowait(self, channel: str, hold: str, *, grace: float | None) -> None:
        """:meth:`release` in one synchronous step."""
        room = self._rooms.get(channel)
        if room is None or hold not in room.holds:
            return
        if grace is None:
            # Then the member's holds in their grace (ended connections, e.g. on a
            # node it hopped from): an unsubscribe or a clean close is one leave at once.
            if self._remove(channel, room, hold):
                key = hold_key(hold)
                for other, deadline in list(room.holds.items()):
                    if deadline and hold_key(other) == key:
                        self._remove(channel, room, other)
        else:
            deadline = trio.current_time() + grace
            room.holds[hold] = deadline
            self._due[(channel, hold)] = deadline

    def _remove(self, channel: str, room: _Room, hold: str) -> bool:
        if room.holds.pop(hold, None) is None:
            return False
        self._due.pop((channel, hold), None)
        owned = self._by_owner.get(hold.split("\n")[1])
        if owned is not None:
            owned.discard((channel, hold))
        key = hold_key(hold)
        room.counts[key] -= 1
        if room.counts[key] == 0:
            del room.counts[key], room.members[key]
            room.keys.pop(room.idents.pop(key), None)
            room.version += 1
            self.notify(MemberChange(channel, room.version, key, None))
        return True

    # -- the PresenceStore protocol ------------------------------------------

    async def join(
        self, channel: str, principal_id: str, client_id: str, info: dict[str, Any], hold: str
    ) -> str:
        """Add a hold (:class:`~trio_reconnect.server.PresenceStore`)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        full = self.join_nowait(channel, principal_id, client_id, info, hold)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return full

    async def members(self, channel: str) -> MemberList:
        """The list and its version."""
        await trio.lowlevel.checkpoint()
        room = self._rooms.get(channel)
        if room is None:
            return MemberList({}, 0)
        return MemberList(dict(room.members), room.version)

    async def release(self, channel: str, hold: str, *, grace: float | None) -> None:
        """End a hold now or after ``grace``."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self.release_nowait(channel, hold, grace=grace)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def sweep(self, *, grace: float, check_owners: bool) -> int:
        """Remove the holds whose grace ended (and orphan dead owners' holds)."""
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        if check_owners:
            for owner, lapses in list(self._owners.items()):
                if lapses <= now:
                    self._orphan(owner, now + grace)
        removed = 0
        for (channel, hold), deadline in list(self._due.items()):
            room = self._rooms.get(channel)
            if deadline <= now and room is not None and room.holds.get(hold) == deadline:
                removed += self._remove(channel, room, hold)
            elif room is None or hold not in room.holds:
                self._due.pop((channel, hold), None)
        return removed

    def _orphan(self, owner: str, deadline: float) -> None:
        for channel, hold in self._by_owner.pop(owner, set()):
            room = self._rooms.get(channel)
            if room is not None and room.holds.get(hold) == 0.0:
                room.holds[hold] = deadline
                self._due[(channel, hold)] = deadline
        del self._owners[owner]

    async def refresh(self, owner: str, ttl: float) -> bool:
        """``owner`` is alive ``ttl`` seconds more; whether it was alive until now."""
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        alive = self._owners.get(owner, -math.inf) > now
        self._owners[owner] = now + ttl
        return alive

    async def rehold(self, channel: str, hold: str) -> bool:
        """A hold of a live connection is held again; ``False``: it is gone."""
        await trio.lowlevel.checkpoint()
        room = self._rooms.get(channel)
        if room is None or hold not in room.holds:
            return False
        room.holds[hold] = 0.0
        self._due.pop((channel, hold), None)
        self._by_owner.setdefault(hold.split("\n")[1], set()).add((channel, hold))
        return True

    async def retire(self, owner: str) -> None:
        """``owner`` exits."""
        await trio.lowlevel.checkpoint()
        if owner in self._owners:
            self._owners[owner] = -math.inf
