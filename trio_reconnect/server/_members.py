"""The node's side of presence (PROTOCOL.md 4.4): holds, member lists, join and leave frames.

* **Before ``subscribed``** (:meth:`NodeMembers.answer`): the subscription's
  hold is added (:meth:`~._presencebase.PresenceStore.join`; a resubscribe on
  the same connection keeps its hold), the list is read with its presence
  version and sent as a ``presence`` frame. The subscription's *view* (what
  its client holds) starts at that version.
* **After it**, the feed hands every member change of the channel to
  :meth:`NodeMembers.offer`: a view skips the versions its list already
  covered, applies the next one (a ``join`` or ``leave`` frame), and repairs
  a jump (notifications were missed) by reading the list again and sending
  the difference (:func:`~._membersplan.difference`), so that no change goes
  out that did not happen. Changes that come while the answer is still out
  wait in the view and go after ``subscribed``.
* **A hold ends** (:meth:`NodeMembers.release`) at an ``unsubscribe`` or a
  clean close from the client at once, at any other end after the grace
  (:func:`~._membersplan.release_of`). A store that can release synchronously
  (the memory one) does it on the spot; otherwise the release waits in a
  local queue that :mod:`._sweeper`'s loop works off (and retries while the
  store is down).
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from .._wire import Join, Leave, Presence
from ._auth import resolve
from ._chanfeed import Subscription
from ._membersplan import ChangePlan, Release, carries_presence, difference, plan_change
from ._presencebase import MemberChange, MemberList, PresenceStore

__all__ = ["NodeMembers", "PresenceInfo", "owner_name"]

logger = logging.getLogger("trio_reconnect.server")

#: ``presence_info(principal) -> dict``, sync or async: a member's ``info``.
PresenceInfo = Callable[[Any], Awaitable[dict[str, Any]] | dict[str, Any]]


def owner_name(node: str | None) -> str:
    """A presence owner for this process: the node's name and 64 random bits."""
    return f"{node or 'node'}#{secrets.token_hex(8)}"


@attrs.define(eq=False)
class _View:
    """What one subscription's client holds: the list at ``version`` (``None``: still answering)."""

    members: dict[str, dict[str, Any]] = attrs.Factory(dict)
    version: int | None = None
    #: The version of the list the answer sent.
    listed: int = 0
    waiting: list[MemberChange] = attrs.Factory(list)


@attrs.define(eq=False)
class NodeMembers:
    """Presence on one node (the module comment)."""

    store: PresenceStore
    patterns: tuple[str, ...]
    grace: float
    info: PresenceInfo | None
    owner: str
    _serials: itertools.count[int] = attrs.field(init=False, factory=itertools.count)
    #: session -> channel -> the hold's full id.
    _holds: dict[Any, dict[str, str]] = attrs.field(init=False, factory=dict)
    _views: dict[Subscription, _View] = attrs.field(init=False, factory=dict)
    #: Releases the store has not taken yet: ``(channel, hold, grace)``.
    pending: deque[tuple[str, str, float | None]] = attrs.field(init=False, factory=deque)
    #: Called when a release is queued (wakes the sweeper's loop).
    wake: Callable[[], None] = attrs.field(init=False, default=lambda: None)

    def carries(self, channel: str) -> bool:
        """Whether ``channel`` has presence on this server."""
        return carries_presence(self.patterns, channel)

    async def _info_of(self, principal: Any) -> dict[str, Any]:
        if self.info is None:
            return {}
        try:
            info = await resolve(self.info(principal))
        except Exception:
            logger.exception("presence_info failed; the member's info is {}")
            return {}
        if not isinstance(info, dict):
            logger.error("presence_info returned %r, not a dict; the member's info is {}", info)
            return {}
        return info

    async def answer(
        self, send: Callable[[str], Awaitable[None]], subscription: Subscription, session: Any
    ) -> None:
        """Add the hold (unless held), read the list, send it: before ``subscribed``."""
        channel = subscription.channel
        if not self.carries(channel):
            return
        view = _View()
        self._views[subscription] = view
        if channel not in self._holds.get(session, {}):
            info = await self._info_of(session.principal)
            hold = f"{self.owner}\n{next(self._serials)}"
            principal_id = str(session.principal)
            full = await self.store.join(channel, principal_id, session.client_id, info, hold)
            if session.subscriptions.get(channel) is None:  # dropped meanwhile
                closing = getattr(subscription.sink, "closing", False)
                self._end(channel, full, Release.GRACE if closing else Release.NOW)
                return
            self._holds.setdefault(session, {})[channel] = full
        listing = await self.store.members(channel)
        await send(Presence(channel, listing.members).encode())
        view.members, view.listed = dict(listing.members), listing.version

    async def started(self, subscription: Subscription) -> None:
        """``subscribed`` is out: send the changes that came meanwhile."""
        view = self._views.get(subscription)
        if view is None or view.version is not None:
            return
        waiting, view.waiting, view.version = view.waiting, [], view.listed
        if self._send(subscription, view, waiting):
            await self.repair(subscription, view)

    def release(self, session: Any, channel: str, how: Release) -> None:
        """End the hold of ``(session, channel)``, if any (idempotent)."""
        holds = self._holds.get(session)
        hold = None if holds is None else holds.pop(channel, None)
        if holds is not None and not holds:
            del self._holds[session]
        if hold is not None:
            self._end(channel, hold, how)

    def release_all(self, session: Any, how: Release) -> None:
        """End every hold of ``session`` (its connection is over)."""
        for channel, hold in self._holds.pop(session, {}).items():
            self._end(channel, hold, how)

    async def reassert(self) -> int:
        """The owner's liveness had lapsed: hold every local hold again; how many were gone.

        A hold still in the store is held again (no one saw anything); a gone
        one (settled meanwhile, or the store lost it) is joined again with its
        serial (its member's observers saw it leave, and now join).
        """
        gone = 0
        for session, holds in list(self._holds.items()):
            for channel, hold in list(holds.items()):
                if await self.store.rehold(channel, hold) or not self._holds_now(session, hold):
                    continue
                gone += 1
                info = await self._info_of(session.principal)
                suffix = hold.split("\n", 1)[1]
                principal_id, client_id = str(session.principal), session.client_id
                full = await self.store.join(channel, principal_id, client_id, info, suffix)
                if self._holds_now(session, hold):
                    holds[channel] = full
                else:  # released meanwhile
                    self._end(channel, full, Release.NOW)
        return gone

    def _holds_now(self, session: Any, hold: str) -> bool:
        return hold in self._holds.get(session, {}).values()

    def held(self) -> int:
        """Holds of this node's connections."""
        return sum(len(holds) for holds in self._holds.values())

    def _end(self, channel: str, hold: str, how: Release) -> None:
        grace = None if how is Release.NOW else self.grace
        nowait = getattr(self.store, "release_nowait", None)
        if nowait is not None:
            nowait(channel, hold, grace=grace)
            return
        self.pending.append((channel, hold, grace))
        self.wake()

    def forget(self, subscription: Subscription) -> None:
        """The subscription ends: its view goes."""
        self._views.pop(subscription, None)

    async def offer(
        self, subscriptions: Sequence[Subscription], changes: Sequence[MemberChange]
    ) -> None:
        """Hand one channel's changes to its subscriptions' views."""
        for subscription in subscriptions:
            view = self._views.get(subscription)
            if view is None or subscription.closed:
                continue
            if view.version is None:
                view.waiting.extend(changes)
            elif self._send(subscription, view, changes):
                await self.repair(subscription, view)

    def _send(
        self, subscription: Subscription, view: _View, changes: Sequence[MemberChange]
    ) -> bool:
        """Apply changes to ``view`` and send them; ``True``: a gap, repair it."""
        frames: list[tuple[int | None, str]] = []
        gap = False
        assert view.version is not None
        for change in changes:
            plan = plan_change(view.version, change.version)
            if plan is ChangePlan.GAP:
                gap = True
                break
            if plan is ChangePlan.SKIP:
                continue
            view.version = change.version
            if change.info is None:
                if view.members.pop(change.key, None) is not None:
                    frames.append((None, Leave(change.channel, change.key).encode()))
            else:
                view.members[change.key] = change.info
                frames.append((None, Join(change.channel, change.key, change.info).encode()))
        if frames:
            subscription.sink.feed(frames)
        return gap

    async def repair(
        self, subscription: Subscription, view: _View, listing: MemberList | None = None
    ) -> None:
        """Read the list again; send the difference from the view as join and leave frames."""
        if listing is None:
            listing = await self.store.members(subscription.channel)
        if subscription.closed:
            return
        diff = difference(view.members, listing.members)
        channel = subscription.channel
        frames = [(None, Leave(channel, key).encode()) for key in diff.leaves]
        frames += [(None, Join(channel, key, info).encode()) for key, info in diff.joins]
        view.members, view.version = dict(listing.members), listing.version
        if frames:
            subscription.sink.feed(frames)

    async def repair_all(self) -> None:
        """Notifications may have been lost: repair every started view (one read per channel)."""
        by_channel: dict[str, list[tuple[Subscription, _View]]] = {}
        for subscription, view in list(self._views.items()):
            if subscription.closed:
                self._views.pop(subscription, None)
            elif view.version is not None:
                by_channel.setdefault(subscription.channel, []).append((subscription, view))
        for channel, views in by_channel.items():
            listing = await self.store.members(channel)
            for subscription, view in views:
                await self.repair(subscription, view, listing)
