"""What the server needs from a presence store (PROTOCOL.md 4.4): the protocol and its values. Pure.

Presence state lives in the store the channels live in, so every node answers
the same member list. The rules every backend keeps (the memory one in
:mod:`._presence_memory`, the Redis one in :mod:`._redis._presence`):

* A **member** is ``(principal, clientId)``; its **key** follows
  :func:`~._membersplan.member_key`. A **hold** is one subscription of one
  connection; a member is in the list while it has at least one hold.
* A hold is *held* (its connection is open) or *in its grace* (a deadline).
  :meth:`PresenceStore.release` with ``grace=None`` removes it at once;
  with a grace it sets the deadline, and :meth:`PresenceStore.sweep` (any
  node, any number at once) removes it once the deadline passed.
* **Exactly one leave**: removing a hold is one atomic step that goes on only
  if it removed the hold, and the leave goes out where the member's count
  reaches 0, in the same step; a join where it reaches 1.
* Every change bumps the channel's **presence version** and is notified
  (:class:`MemberChange`) on the channel store's live stream, in version
  order; :meth:`PresenceStore.members` answers the list with its version.
* Holds belong to an **owner** (one server process). An owner refreshes its
  liveness (:meth:`PresenceStore.refresh`); the holds of an owner whose
  liveness lapsed (a killed process) are put in their grace by the sweepers;
  :meth:`PresenceStore.retire` (a clean exit) makes that happen at the next
  owner check instead of after the liveness lapses. An owner that finds its
  liveness had lapsed while it lived re-asserts its holds
  (:meth:`PresenceStore.rehold`, a join for the ones that are gone).

Every method may raise :class:`~._logbase.LogUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

__all__ = ["MemberChange", "MemberList", "PresenceStore"]


@attrs.frozen
class MemberChange:
    """One presence notification: a member joined (``info`` set) or left (``info`` ``None``)."""

    channel: str
    version: int
    key: str
    info: dict[str, Any] | None


@attrs.frozen
class MemberList:
    """A channel's members (key -> info) at presence version ``version``."""

    members: Mapping[str, dict[str, Any]]
    version: int


class PresenceStore(Protocol):
    """Where the members of presence channels are kept (the module comment)."""

    async def join(
        self, channel: str, principal_id: str, client_id: str, info: dict[str, Any], hold: str
    ) -> str:
        """Add the hold ``owner\\nserial`` (``hold``) of a member; return the hold's full id.

        A join notification goes out if it is the member's first hold.
        """
        ...

    async def members(self, channel: str) -> MemberList:
        """The channel's member list and its presence version."""
        ...

    async def release(self, channel: str, hold: str, *, grace: float | None) -> None:
        """End a hold: at once (``grace=None``; a leave if it was the last) or after ``grace`` s."""
        ...

    async def sweep(self, *, grace: float, check_owners: bool) -> int:
        """Remove the holds whose grace ended; with ``check_owners``, orphan dead owners' holds.

        Returns how many holds it removed. Idempotent; any node may sweep.
        """
        ...

    async def refresh(self, owner: str, ttl: float) -> bool:
        """``owner`` is alive for ``ttl`` more seconds; whether it was alive until now.

        ``False`` for a live owner (not its first refresh) means its liveness
        lapsed (or the store lost it): its holds may have been orphaned, and
        the node re-asserts them (:meth:`rehold`).
        """
        ...

    async def rehold(self, channel: str, hold: str) -> bool:
        """Make a hold of a live connection held again (no deadline); ``False``: it is gone.

        A gone hold is joined again (:meth:`join`, with the same ``owner\\nserial``).
        """
        ...

    async def retire(self, owner: str) -> None:
        """``owner`` exits: its holds still held are orphaned at the next owner check."""
        ...
