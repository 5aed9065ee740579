"""Answering subscriptions: the resume's channel map, and one ``subscribe``.

For every channel asked for (PROTOCOL.md 4.2, 4.3), in order: authorize it
(``forbidden``), count it (``limit``), register its :class:`~._chanfeed.Subscription`
with the node's feed synchronously, then ONE :meth:`~._channelbase.ChannelStore.read`
for every channel of the frame, then per channel: a replay, a snapshot
(the ``channel_snapshot`` provider's, placed against the read as the default
stream's is) or neither, then ``subscribed`` with the newest id the client
now has; the subscription then sends what its feed buffered above that id.

The handshake collects these frames (where a channel carries presence, its
``presence`` list before its ``subscribed``) and writes them with ``ready``, in
one write (:meth:`~._chanframes.ChannelFrames.handshake`); after ``ready`` they go
through the connection's queue (:meth:`ConnectedClient.send`), so they keep
their place among the live frames of the other channels.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs
import trio

from .._frames import subscribed_text
from .._wire import (
    Refused,
    RefusedCode,
    Subscribed,
    encode_channel_event,
    encode_channel_snapshot,
)
from ._auth import Action, Authorizer, resolve
from ._chanfeed import ChannelFeed, Subscription
from ._channelbase import ChannelRead, ChannelRequest, ChannelStore
from ._chanplan import ChannelAction, plan_channel, subscribe_refusal
from ._connection import ConnectedClient
from ._logbase import LoggedEvent
from ._members import NodeMembers
from ._membersplan import Release
from ._planner import SnapshotFit, plan_snapshot, snapshot_issued
from ._stats import Counts

__all__ = ["ChannelAnswerer", "ChannelSession", "ChannelSnapshotProvider", "Send"]

logger = logging.getLogger("trio_reconnect.server")

_T = TypeVar("_T")

#: ``channel_snapshot(channel) -> (id, data) | None``; sync or async.
ChannelSnapshotProvider = Callable[
    [str], Awaitable[tuple[str, Any] | None] | tuple[str, Any] | None
]
#: How an answer's frames go out (held for one write before ready, ``send`` after).
Send = Callable[[str], Awaitable[None]]


class Busy(Exception):
    """A store call of an answer did not end within the handshake timeout."""


@attrs.define(eq=False)
class ChannelSession:
    """A version 2 connection's channels: who it is, and its subscriptions."""

    principal: Any
    client_id: str
    subscriptions: dict[str, Subscription] = attrs.field(factory=dict)
    #: Closes the connection as too slow: one callable for all of its subscriptions.
    too_slow: Callable[[], None] | None = None


@attrs.define(eq=False)
class ChannelAnswerer:
    """Answers subscriptions (the module comment)."""

    store: ChannelStore
    feed: ChannelFeed
    authorize: Authorizer | None
    snapshot: ChannelSnapshotProvider | None
    max_replay: int
    max_subscriptions: int
    queue_size: int
    timeout: float
    too_slow: Callable[[ConnectedClient], None]
    counts: Counts = attrs.field(factory=Counts, kw_only=True)
    #: The node's presence (``None``: no channel carries it).
    presence: NodeMembers | None = None

    async def allowed(self, principal: Any, channel: str, action: Action) -> bool:
        """Whether ``authorize`` lets ``principal`` do ``action`` (a hook that fails: no)."""
        if self.authorize is None:
            return True
        try:
            return bool(await resolve(self.authorize(principal, channel, action)))
        except Exception:
            logger.exception("authorize failed for channel %r; refusing", channel)
            return False

    async def admit(
        self, session: ChannelSession, client: ConnectedClient, channel: str
    ) -> Refused | Subscription:
        """Authorize and count one channel; register its new subscription (replacing a held one)."""
        if self.authorize is not None and not await self.allowed(
            session.principal, channel, "subscribe"
        ):
            self.drop(session, channel)  # refused: a held subscription is dropped too
            return Refused(channel, RefusedCode.FORBIDDEN, "not authorized")
        return self.admit_allowed(session, client, channel)

    def admit_allowed(
        self, session: ChannelSession, client: ConnectedClient, channel: str
    ) -> Refused | Subscription:
        """:meth:`admit` once authorized (with no hook, the default: all of it, without a wait)."""
        held = session.subscriptions.get(channel)
        code = subscribe_refusal(
            held=held is not None,
            count=len(session.subscriptions),
            max_subscriptions=self.max_subscriptions,
        )
        if code is not None:
            return Refused(channel, code, f"at most {self.max_subscriptions} subscriptions")
        if held is not None:
            self.feed.unregister(held)
            if self.presence is not None:
                self.presence.forget(held)  # the hold stays with the session
        if session.too_slow is None:
            session.too_slow = lambda: self.too_slow(client)
        subscription = Subscription(
            channel, client, self.queue_size, session.too_slow, counts=self.counts
        )
        session.subscriptions[channel] = subscription
        self.feed.register(subscription)  # no checkpoint from here to the read
        return subscription

    def drop(self, session: ChannelSession, channel: str, how: Release = Release.NOW) -> bool:
        """Unsubscribe ``channel`` (``False``: it was not held); its presence hold ends ``how``."""
        subscription = session.subscriptions.pop(channel, None)
        if self.presence is not None:
            self.presence.release(session, channel, how)
        if subscription is None:
            return False
        self.feed.unregister(subscription)
        if self.presence is not None:
            self.presence.forget(subscription)
        return True

    async def within(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``await call()`` within the handshake timeout, else :class:`Busy`."""
        with trio.move_on_after(self.timeout):
            return await call()
        raise Busy

    async def read(self, requests: Sequence[ChannelRequest]) -> Sequence[ChannelRead]:
        """One read for every request (waits for the feed to be live first)."""
        await self.within(self.feed.wait_live)
        if not requests:
            return []
        return await self.within(lambda: self.store.read(requests, max_replay=self.max_replay))

    async def answer(
        self,
        send: Send,
        subscription: Subscription,
        request: ChannelRequest,
        read: ChannelRead,
        session: ChannelSession | None = None,
    ) -> None:
        """Send one channel's answer and start its live feed."""
        plan = plan_channel(request, read, has_snapshot=self.snapshot is not None)
        channel = request.channel
        events: Sequence[LoggedEvent] = plan.events
        newest, lost = plan.newest, plan.action is ChannelAction.LOST
        snapshot: str | None = None
        if plan.action is ChannelAction.SNAPSHOT:
            placed = await self._snapshot(channel, read.newest)
            if placed is None:
                lost = request.after is not None  # a fresh subscription starts at the newest id
            else:  # the snapshot frame, then the events after it
                snapshot, events, newest = placed
        if snapshot is not None or events:  # most answers of a resume carry neither
            frames = [] if snapshot is None else [snapshot]
            frames.extend(encode_channel_event(channel, e.id, e.data) for e in events)
            for frame in frames:
                if subscription.closed:
                    return
                await send(frame)
        if subscription.closed:
            return
        if self.presence is not None and session is not None:
            await self.members(send, subscription, session)
        # No checkpoint of its own: a resume answers 100 channels in one pass of
        # the scheduler, not 100 (the caller's send or read checkpoints).
        await send(Subscribed(channel, newest, lost=lost).encode())
        self._count(snapshot=snapshot is not None, replayed=len(events), lost=lost)
        if subscription.resume(int(newest)):
            await self.repair(subscription)
        if self.presence is not None:
            await self.within(lambda: self.presence.started(subscription))  # type: ignore[union-attr]

    def answer_plain(
        self,
        held: list[str],
        subscription: Subscription,
        request: ChannelRequest,
        read: ChannelRead,
    ) -> bool | None:
        """The frequent answer of a resume, without a wait: :meth:`answer`'s, or ``None``.

        A channel with nothing to replay, no snapshot to take and no presence
        (most channels of a resume) is answered by ``subscribed`` alone: its
        text is appended to ``held`` and counted, as :meth:`answer` would,
        without the plan, the frame's value and two coroutines per channel.
        ``None``: not such a channel, :meth:`answer` it. Else whether its
        feed must repair it (:meth:`repair`).
        """
        events = read.events
        if events is None or events or self.presence is not None:
            return None
        if self.snapshot is not None and request.after is None and request.history == 0:
            return None  # a fresh subscription that asks for a snapshot (plan_channel)
        if subscription.closed:
            return False
        newest = read.newest
        held.append(subscribed_text(request.channel, newest, False))
        self.counts.channel_subscribed += 1
        return subscription.resume(int(newest))

    async def repair(self, subscription: Subscription) -> None:
        """Have the feed repair an answered subscription (within the handshake timeout)."""
        await self.within(lambda: self.feed.repair([subscription]))

    def _count(self, *, snapshot: bool, replayed: int, lost: bool) -> None:
        """One answer ended ``subscribed``: count it, and what it carried."""
        counts = self.counts
        counts.channel_subscribed += 1
        counts.channel_events_replayed += replayed
        counts.channel_snapshots += snapshot
        counts.channel_lost += lost

    async def members(
        self, send: Send, subscription: Subscription, session: ChannelSession | None
    ) -> None:
        """The channel's member list, where it has presence (4.4): hold, read, send."""
        if self.presence is None or session is None:
            await trio.lowlevel.checkpoint()
            return
        presence = self.presence
        await self.within(lambda: presence.answer(send, subscription, session))

    async def _snapshot(
        self, channel: str, newest: str
    ) -> tuple[str, Sequence[LoggedEvent], str] | None:
        """The channel's snapshot frame, the events after it, and the id they reach; or ``None``."""
        assert self.snapshot is not None
        try:
            with trio.move_on_after(self.timeout):
                taken = await resolve(self.snapshot(channel))
                if taken is None:
                    return None
                snapshot_id, data = taken
                if not isinstance(snapshot_id, str):
                    raise TypeError(f"a channel snapshot id must be a str, got {snapshot_id!r}")
                frame = encode_channel_snapshot(channel, snapshot_id, data)
                return await self._place(channel, snapshot_id, newest, frame)
            logger.warning("no snapshot of channel %r within %s s", channel, self.timeout)
        except Exception:
            logger.exception("the snapshot of channel %r failed; not sending one", channel)
        return None

    async def _place(
        self, channel: str, snapshot_id: str, newest: str, frame: str
    ) -> tuple[str, Sequence[LoggedEvent], str] | None:
        plan = plan_snapshot(snapshot_id, newest)
        if plan.fit is SnapshotFit.EXACT:
            return frame, (), newest
        if plan.fit is SnapshotFit.AHEAD:
            heads = await self.store.heads([channel])
            if snapshot_issued(snapshot_id, heads.get(channel)):
                return frame, (), snapshot_id
        elif plan.fit is SnapshotFit.BEHIND:
            [fill] = await self.store.read(
                [ChannelRequest(channel, snapshot_id)], max_replay=self.max_replay
            )
            if fill.events is not None:
                return frame, fill.events, fill.newest
        logger.warning("channel %r: snapshot id %r unknown to the store", channel, snapshot_id)
        return None
