"""The node's channel fan-out: ONE task reads the store's notifications for every channel.

Register first, read second, per channel
----------------------------------------

The node enters :meth:`~._channelbase.ChannelStore.listen` before any
subscription is registered (a registration waits until the stream is
live). A :class:`Subscription` is registered with the feed of its channel
synchronously, before its answer's read; from then on it is offered every
notification of its channel. Until its answer is out it only buffers them
(bounded by the client's queue size: past it the client is too slow); once
its answer carried every event through ``covered``, :meth:`Subscription.resume`
sends the buffered ones above it, and live ones follow through the
connection's queue (or its direct writes), under the covered filter of
:func:`~._chanplan.split_live`. So what the answer carried is not sent
again, and nothing appended after its read is missed: the read came after
the registration.

The next round trip first
-------------------------

A batch's fan-out is synchronous and holds the loop (20 subscribers times
a few events: milliseconds). On a store with round trips (Redis), the
notifications of a batch arrive with the store's answer to the appends that
made them; the callers it answered make their next appends one scheduler
pass later, and the store's committer sends them one pass after that
(:mod:`~trio_reconnect.server._redis._appends`). So the feed lets three
passes run before it dispatches: the next round trip is then under way
while this batch fans out, instead of starting after it with the node idle
until it returns. It costs three passes per batch, not per event, and
nothing in the order: the feed is still the one task that offers live events.
Measured on issue 18's Redis figure, in one run against the same build
without the passes: median channel_fanout_redis_ratio 1.17 and 1.48 against
1.02 and 1.25 (two runs of 5 and 6 rounds, a machine shared with other jobs).

Repairs
-------

* **A gap in one channel** (a live event past ``covered + 1``: the store
  skipped a notification): the subscription buffers again and the feed reads
  that channel after its ``covered`` (one :meth:`~._channelbase.ChannelStore.read`
  for every channel that needs it), sends what it missed, then the buffer.
* **NotificationsLost**: the feed enters a new stream, then repairs every
  subscription it holds the same way; one still answering is marked, and
  repaired when its answer is out.
* **A channel that cannot be repaired** (its gap is no longer held, or is
  longer than ``max_replay``): its subscribers alone are resynced (decision
  2): ``{"type": "subscribed", ..., "lost": true}`` at the channel's newest
  id, unasked; every other channel goes on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol, TypeAlias

import attrs
import trio

from .._wire import Subscribed, encode_channel_event
from ._channelbase import ChannelEvent, ChannelRead, ChannelRequest, ChannelStore, NotificationsLost
from ._chanplan import split_live
from ._logbase import LoggedEvent, LogUnavailableError, parse_event_id
from ._presencebase import MemberChange
from ._stats import Counts

__all__ = ["ChannelFeed", "Subscription"]

logger = logging.getLogger("trio_reconnect.server")

#: Rounds of repair one subscription gets before it is resynced instead.
_REPAIR_ROUNDS: Final = 3
#: What :meth:`~._channelbase.ChannelStore.listen` returns.
_Stream: TypeAlias = AbstractAsyncContextManager[
    AsyncIterator[Sequence[ChannelEvent | MemberChange]]
]
#: Scheduler passes the feed lets run before it fans a batch out (the module comment).
_PASSES_BEFORE_DISPATCH: Final = 3


def _listen(store: ChannelStore, wanted: Callable[[str], bool]) -> _Stream:
    """``store.listen(wanted=wanted)``; ``store.listen()`` for a store whose ``listen`` lacks it.

    A store written before the hint (any object implementing the protocol
    works) keeps working: it is asked as before and its stream carries
    every channel, which the dispatch filters anyway.
    """
    try:
        parameters = inspect.signature(store.listen).parameters
    except (TypeError, ValueError):  # no signature to read: ask as before
        return store.listen()
    takes = "wanted" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
    return store.listen(wanted=wanted) if takes else store.listen()


class Sink(Protocol):
    """Where a subscription's frames go: the connection (:meth:`ConnectedClient.feed`)."""

    def feed(self, frames: Sequence[tuple[int | None, str]]) -> None:
        """Queue frames without waiting (a full queue closes the client)."""
        ...

    def close(self, code: int | None, reason: str | None) -> None:
        """Start closing."""
        ...


class MemberSink(Protocol):
    """Where member changes go (:class:`~._members.NodeMembers`, PROTOCOL.md 4.4)."""

    async def offer(
        self, subscriptions: Sequence[Subscription], changes: Sequence[MemberChange]
    ) -> None:
        """Hand one channel's changes to its subscriptions."""
        ...

    async def repair_all(self) -> None:
        """Notifications may have been lost: repair every member list sent."""
        ...


@attrs.define(eq=False)
class Subscription:
    """One connection's subscription to one channel (the module comment).

    ``covered`` is ``None`` until the answer is out; while ``waiting``, live
    events are buffered (at most ``bound``).
    """

    channel: str
    sink: Sink
    bound: int
    #: Closes the client as too slow (its buffer overflowed).
    too_slow: Callable[[], None]
    covered: int | None = None
    waiting: bool = True
    closed: bool = False
    #: Notifications may have been lost while it was answering.
    suspect: bool = False
    #: The node's counters (``channel_events_live``).
    counts: Counts = attrs.field(factory=Counts, kw_only=True, repr=False)
    #: Buffered live events (an empty tuple until the first: no list per idle subscription).
    _buffer: list[ChannelEvent | LoggedEvent] | tuple[()] = attrs.field(default=(), repr=False)

    def offer(
        self,
        events: Sequence[ChannelEvent | LoggedEvent],
        frames: Mapping[str, str] | None = None,
    ) -> bool:
        """Send (or buffer) live events; ``True``: a gap, the feed must repair it.

        ``frames``: the events' frames by id, encoded once for every subscriber.
        """
        if self.closed or not events:
            return False
        if self.waiting or self.covered is None:
            self._keep(events)
            if len(self._buffer) > self.bound:
                self.closed = True
                self._buffer = ()
                self.too_slow()
            return False
        if frames is not None and len(events) == 1:  # the usual live event: the next one
            event = events[0]
            if parse_event_id(event.id) == self.covered + 1:
                self.sink.feed([(None, frames[event.id])])
                self.counts.channel_events_live += 1
                self.covered += 1
                return False
        split = split_live(self.covered, events)
        if split.send:
            channel = self.channel
            self.sink.feed(
                [
                    (None, frames[e.id] if frames else encode_channel_event(channel, e.id, e.data))
                    for e in split.send
                ]
            )
            self.counts.channel_events_live += len(split.send)
        self.covered = split.covered
        if split.gap:
            self.waiting = True
            self._keep(events)
        return split.gap

    def _keep(self, events: Sequence[ChannelEvent | LoggedEvent]) -> None:
        buffer = self._buffer if isinstance(self._buffer, list) else []
        buffer.extend(events)
        self._buffer = buffer

    def resume(self, covered: int | None = None, *, repaired: bool = False) -> bool:
        """The answer (or a repair) is out: send what was buffered above ``covered``.

        Returns:
            ``True`` if a gap remains (or notifications may have been lost
            while it answered): the feed must repair it.
        """
        if covered is not None:
            self.covered = covered
        self.waiting = False
        buffered, self._buffer = self._buffer, ()
        gap = self.offer(buffered)
        suspect, self.suspect = self.suspect and not repaired, False
        return (gap or suspect) and not self.closed

    def resync(self, read: ChannelRead) -> bool:
        """The gap is not held: start again at the channel's newest id, unasked (decision 2).

        Returns:
            ``True`` if a gap remains after the buffered events.
        """
        self.sink.feed([(None, Subscribed(self.channel, read.newest, lost=True).encode())])
        return self.resume(int(read.newest), repaired=True)

    def cancel(self) -> None:
        """No frame of this subscription goes out any more."""
        self.closed = True
        self._buffer = ()


@attrs.define(eq=False)
class ChannelFeed:
    """The node's one reader of the store's notifications (the module comment).

    Args:
        store: The channel store.
        max_replay: The longest gap a repair reads.
        retry_interval: Seconds between attempts while the store is unavailable.
        counts: The node's counters (its ``channel_`` fields).
    """

    store: ChannelStore
    max_replay: int
    retry_interval: float
    counts: Counts = attrs.field(factory=Counts, kw_only=True)
    _feeds: dict[str, dict[Subscription, None]] = attrs.field(init=False, factory=dict)
    _live: bool = attrs.field(init=False, default=False)
    _became_live: trio.lowlevel.ParkingLot = attrs.field(
        init=False, factory=trio.lowlevel.ParkingLot
    )
    #: A run ended before (its task was handed over): what came meanwhile was missed.
    _ran: bool = attrs.field(init=False, default=False)
    _repairs: int = attrs.field(init=False, default=0)
    #: Where member changes go (``None``: no channel has presence).
    members: MemberSink | None = attrs.field(init=False, default=None)

    @property
    def live(self) -> bool:
        """Whether the notification stream is live (registration is safe)."""
        return self._live

    @property
    def repairs(self) -> int:
        """Channel reads made to repair gaps so far."""
        return self._repairs

    async def wait_live(self) -> None:
        """Wait until the notification stream is live."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._live:
            await self._became_live.park()

    def register(self, subscription: Subscription) -> None:
        """Offer ``subscription`` every notification of its channel from now on."""
        feed = self._feeds.setdefault(subscription.channel, {})
        self.counts.channel_subscriptions += subscription not in feed
        feed[subscription] = None
        self.counts.channels_held = len(self._feeds)

    def unregister(self, subscription: Subscription) -> None:
        """Offer it nothing more (idempotent); it sends nothing more."""
        subscription.cancel()
        feed = self._feeds.get(subscription.channel)
        if feed is not None and subscription in feed:
            del feed[subscription]
            self.counts.channel_subscriptions -= 1
            if not feed:
                del self._feeds[subscription.channel]
                self.counts.channels_held = len(self._feeds)

    def held(self) -> int:
        """How many channels have subscribers on this node."""
        return len(self._feeds)

    async def run(self) -> None:
        """Listen, dispatch and repair, until cancelled; re-listen after any loss."""
        lost, self._ran = self._ran, True
        try:
            while True:
                try:
                    async with _listen(self.store, self._feeds.__contains__) as stream:
                        self._live = True
                        self._became_live.unpark_all()
                        if lost:
                            await self._repair_all()
                        lost = False
                        async for batch in stream:
                            await self._dispatch(batch)
                except NotificationsLost as error:
                    logger.warning("channel notifications lost (%s); repairing", error)
                    self.counts.channel_notifications_lost += 1
                    lost = True
                except LogUnavailableError as error:
                    logger.warning("channel store unavailable (%s); retrying", error)
                    self.counts.channel_store_errors += 1
                    lost = True
                    await trio.sleep(self.retry_interval)
        finally:
            self._live = False  # until the next run's stream is live

    async def _dispatch(self, batch: Sequence[ChannelEvent | MemberChange]) -> None:
        for _ in range(_PASSES_BEFORE_DISPATCH):
            await trio.lowlevel.cancel_shielded_checkpoint()
        by_channel: dict[str, list[ChannelEvent]] = {}
        changes: dict[str, list[MemberChange]] = {}
        for event in batch:
            if event.channel in self._feeds:
                if isinstance(event, MemberChange):
                    changes.setdefault(event.channel, []).append(event)
                else:
                    by_channel.setdefault(event.channel, []).append(event)
        if changes and self.members is not None:
            for channel, members in changes.items():
                await self.members.offer(list(self._feeds.get(channel, ())), members)
        gaps = []
        for channel, events in by_channel.items():
            frames = {e.id: encode_channel_event(channel, e.id, e.data) for e in events}
            for subscription in list(self._feeds.get(channel, ())):
                if subscription.offer(events, frames):
                    gaps.append(subscription)
        if gaps:
            await self.repair(gaps)

    async def _repair_all(self) -> None:
        every = [s for feed in self._feeds.values() for s in feed]
        for subscription in every:
            if subscription.covered is None:
                subscription.suspect = True  # still answering: repaired once it is out
            else:
                subscription.waiting = True
        await self.repair([s for s in every if s.covered is not None])
        if self.members is not None:
            await self.members.repair_all()

    async def repair(self, subscriptions: Sequence[Subscription]) -> None:
        """Read what each subscription missed, in one read per round, and send it.

        Raises:
            LogUnavailableError: the store failed (the subscriptions keep
                buffering; the feed repairs them after it is back).
        """
        todo = [s for s in subscriptions if not s.closed and s.covered is not None]
        for round_ in range(_REPAIR_ROUNDS + 1):
            if not todo:
                return
            for s in todo:
                s.waiting = True  # live events wait in its buffer during the read
            start: dict[str, int] = {}
            for s in todo:
                assert s.covered is not None
                start[s.channel] = min(start.get(s.channel, s.covered), s.covered)
            requests = [ChannelRequest(c, str(after)) for c, after in start.items()]
            reads = await self.store.read(requests, max_replay=self.max_replay)
            self._repairs += len(requests)
            self.counts.channel_repairs += len(requests)
            answers = {read.channel: read for read in reads}
            again = []
            for s in todo:
                read = answers[s.channel]
                if s.closed:
                    continue
                if read.events is None or round_ == _REPAIR_ROUNDS:
                    logger.warning("channel %r: a gap the store no longer holds; resync", s.channel)
                    self.counts.channel_resyncs += 1
                    if s.resync(read) and round_ < _REPAIR_ROUNDS:
                        again.append(s)
                    continue
                s.waiting = False
                if s.offer(read.events) or s.resume(repaired=True):
                    again.append(s)
            todo = again
