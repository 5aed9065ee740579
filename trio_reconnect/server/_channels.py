"""The in-memory channel store: :class:`MemoryChannelStore`, a bounded ring per channel.

It implements :class:`~trio_reconnect.server._channelbase.ChannelStore` for one
process (several servers in it may share one store, as several nodes share one
Redis). Every method is synchronous between its checkpoints, so a read sees
one instant of every channel it asks for. The rules specific to this store:

* A channel comes to exist at its first read or append, counting from
  ``start`` (default :func:`~._logbase.clock_start_id` at that moment; tests
  pass ``start=1``). Until its first event its newest id is ``start - 1``.
* Each channel holds at most ``channel_max_len`` events; appending one more
  drops its oldest. Memory grows with the channels that exist, each holding
  at most that many events.
* Each listener (:meth:`MemoryChannelStore.listen`) has a buffer of at most
  ``listener_buffer`` notifications; an append that finds it full marks the
  listener lost, and its next read raises
  :class:`~._channelbase.NotificationsLost` (the buffer is dropped: the node
  repairs every channel anyway).
* :meth:`MemoryChannelStore.publish` keeps each dedupe record for
  ``dedupe_ttl`` seconds of trio's clock; expired records are pruned at the
  next publish, so memory holds only the records of the last window.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import trio

from .._validators import check_int, check_positive, non_negative_int, positive_int
from .._wire import channel_problem
from ._channelbase import (
    ChannelEvent,
    ChannelRead,
    ChannelRequest,
    NotificationsLost,
    PublishRequest,
    PublishResult,
)
from ._logbase import LoggedEvent, LogUnavailableError, clock_start_id, parse_event_id
from ._presence_memory import MemoryPresenceStore
from ._presencebase import MemberChange

__all__ = [
    "DEFAULT_CHANNEL_MAX_LEN",
    "DEFAULT_LISTENER_BUFFER",
    "MemoryChannelStore",
    "check_channel",
]

#: How many events a channel holds by default (decision 11).
DEFAULT_CHANNEL_MAX_LEN: Final = 1_000
#: How many notifications a listener buffers before it is lost.
DEFAULT_LISTENER_BUFFER: Final = 10_000


def check_channel(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a valid channel name."""
    problem = channel_problem(value)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")


@attrs.define(eq=False)
class _Channel:
    """One channel's ring: the newest ``len(events)`` events, ending at ``next - 1``."""

    start: int
    events: deque[LoggedEvent]
    next: int

    @property
    def first(self) -> int:
        return self.next - len(self.events)

    @property
    def newest(self) -> str:
        return str(self.next - 1)

    def tail(self, count: int) -> list[LoggedEvent]:
        """The newest ``count`` events held (fewer if fewer are held), oldest first."""
        newest_first = list(itertools.islice(reversed(self.events), count))
        newest_first.reverse()
        return newest_first

    def after(self, event_id: str, max_replay: int) -> list[LoggedEvent] | None:
        """Every event after ``event_id``, or ``None`` (not all held, unknown, too many)."""
        seq = parse_event_id(event_id)
        if seq is None or not self.start - 1 <= seq < self.next or seq + 1 < self.first:
            return None
        count = self.next - 1 - seq
        return None if count > max_replay else self.tail(count)


@attrs.define(eq=False)
class _Listener:
    """One live stream: a bounded buffer of notifications and a wake-up."""

    bound: int
    pending: list[ChannelEvent | MemberChange] = attrs.Factory(list)
    lost: bool = False
    wakeup: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)

    def notify(self, event: ChannelEvent | MemberChange) -> None:
        if self.lost:
            return
        if len(self.pending) >= self.bound:
            self.lost = True
            self.pending = []
        else:
            self.pending.append(event)
        self.wakeup.unpark_all()

    def __aiter__(self) -> _Listener:
        return self

    async def __anext__(self) -> Sequence[ChannelEvent | MemberChange]:
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self.pending and not self.lost:
            await self.wakeup.park()
        if self.lost:
            raise NotificationsLost("a listener's buffer overflowed")
        batch, self.pending = self.pending, []
        await trio.lowlevel.cancel_shielded_checkpoint()
        return batch


@attrs.define(eq=False)
class MemoryChannelStore:
    """Per-channel bounded logs in memory (a :class:`~trio_reconnect.server.ChannelStore`).

    Args:
        channel_max_len: Events each channel holds; its oldest is dropped beyond it.
        listener_buffer: Notifications a listener buffers before it is lost.
        start: The first sequence number of every channel; ``None`` (the
            default): microseconds since the epoch when the channel first
            appears, so ids are never reused by a later process.
    """

    channel_max_len: int = attrs.field(
        default=DEFAULT_CHANNEL_MAX_LEN, kw_only=True, validator=positive_int
    )
    listener_buffer: int = attrs.field(
        default=DEFAULT_LISTENER_BUFFER, kw_only=True, validator=positive_int
    )
    start: int | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional(non_negative_int),
    )
    _channels: dict[str, _Channel] = attrs.field(init=False, factory=dict, repr=False)
    _listeners: set[_Listener] = attrs.field(init=False, factory=set, repr=False)
    #: (channel, key) -> (id, expiry on trio's clock), oldest first.
    _dedupe: dict[tuple[str, str], tuple[str, float]] = attrs.field(
        init=False, factory=dict, repr=False
    )
    _broken: set[str] = attrs.field(init=False, factory=set, repr=False)
    _presence: MemoryPresenceStore | None = attrs.field(init=False, default=None, repr=False)

    def _channel(self, channel: str) -> _Channel:
        held = self._channels.get(channel)
        if held is None:
            start = clock_start_id() if self.start is None else self.start
            held = _Channel(start, deque(maxlen=self.channel_max_len), start)
            self._channels[channel] = held
        return held

    def _answer(self, request: ChannelRequest, max_replay: int) -> ChannelRead:
        held = self._channel(request.channel)
        if request.after is None:
            events: list[LoggedEvent] | None = held.tail(min(request.history, max_replay))
        else:
            events = held.after(request.after, max_replay)
        return ChannelRead(request.channel, held.newest, events)

    # -- the ChannelStore protocol ------------------------------------------

    async def read(
        self, requests: Sequence[ChannelRequest], *, max_replay: int
    ) -> Sequence[ChannelRead]:
        """Answer every request, in order, at one instant; fix missing starting points.

        Raises:
            ValueError: ``max_replay`` or a ``history`` is not a whole number of
                at least 0, or a channel name is not valid.
        """
        check_int("max_replay", max_replay, minimum=0)
        for request in requests:
            check_channel("channel", request.channel)
            check_int("history", request.history, minimum=0)
        await trio.lowlevel.checkpoint()
        return [self._answer(request, max_replay) for request in requests]

    async def append(self, channel: str, data: Any) -> str:
        """Store one event in ``channel``, notify every listener, return its id."""
        check_channel("channel", channel)
        await trio.lowlevel.checkpoint_if_cancelled()
        event_id = self.append_nowait(channel, data)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return event_id

    def append_nowait(self, channel: str, data: Any) -> str:
        """:meth:`append` from synchronous code (not part of the protocol)."""
        check_channel("channel", channel)
        if channel in self._broken:
            raise LogUnavailableError(f"channel {channel!r} is broken (testing)")
        held = self._channel(channel)
        event_id = str(held.next)
        held.events.append(LoggedEvent(event_id, data))
        held.next += 1
        notification = ChannelEvent(channel, event_id, data)
        for listener in self._listeners:
            listener.notify(notification)
        return event_id

    async def publish(
        self, items: Sequence[PublishRequest], *, dedupe_ttl: float
    ) -> Sequence[PublishResult]:
        """Apply ``items`` in order, each once per (channel, key) within ``dedupe_ttl`` seconds.

        Raises:
            ValueError: a channel name is not valid, or ``dedupe_ttl`` not
                positive (nothing is applied).
            LogUnavailableError: the first item's channel is broken
                (:meth:`break_channel`); a later one's stops the batch there.
        """
        check_positive("dedupe_ttl", dedupe_ttl)
        for item in items:
            check_channel("channel", item.channel)
        await trio.lowlevel.checkpoint_if_cancelled()
        now = trio.current_time()
        self._prune(now)
        results: list[PublishResult] = []
        for item in items:
            record = self._dedupe.get((item.channel, item.key))
            if record is not None:
                results.append(PublishResult(record[0], duplicate=True))
                continue
            try:
                event_id = self.append_nowait(item.channel, item.data)
            except LogUnavailableError:
                if not results:
                    raise
                break
            self._dedupe[item.channel, item.key] = (event_id, now + dedupe_ttl)
            results.append(PublishResult(event_id))
        await trio.lowlevel.cancel_shielded_checkpoint()
        return results

    def _prune(self, now: float) -> None:
        records = self._dedupe
        while records:
            key, (_, expiry) = next(iter(records.items()))
            if expiry > now:
                return
            del records[key]

    async def heads(self, channels: Sequence[str]) -> Mapping[str, str]:
        """The newest id of each channel that exists (others are left out)."""
        await trio.lowlevel.checkpoint()
        return {c: self._channels[c].newest for c in channels if c in self._channels}

    def presence_store(self) -> MemoryPresenceStore:
        """The presence of this store's channels (one per store; PROTOCOL.md 4.4)."""
        if self._presence is None:
            self._presence = MemoryPresenceStore(self._notify_members)
        return self._presence

    def _notify_members(self, change: MemberChange) -> None:
        for listener in self._listeners:
            listener.notify(change)

    @asynccontextmanager
    async def listen(
        self, *, wanted: Callable[[str], bool] | None = None
    ) -> AsyncIterator[AsyncIterator[Sequence[ChannelEvent | MemberChange]]]:
        """A live stream of every channel's events; live as soon as it is entered.

        ``wanted`` is ignored: nothing here is decoded.
        """
        listener = _Listener(self.listener_buffer)
        self._listeners.add(listener)
        try:
            yield listener
        finally:
            self._listeners.discard(listener)

    # -- test helpers --------------------------------------------------------

    def forget(self, channel: str, *, start: int | None = None) -> None:
        """Lose ``channel``'s data, as a store that lost it would (testing).

        Its next read or append starts it again, from ``start`` (default: the
        store's rule). Listeners are not told: only a gap shows it.
        """
        self._channels.pop(channel, None)
        if start is not None:
            self._channel(channel).next = start
            self._channels[channel].start = start

    def break_channel(self, channel: str, broken: bool = True) -> None:
        """Make appends to ``channel`` fail with ``LogUnavailableError`` (testing)."""
        if broken:
            self._broken.add(channel)
        else:
            self._broken.discard(channel)

    @property
    def dedupe_records(self) -> int:
        """Dedupe records held now (expired ones go at the next publish)."""
        return len(self._dedupe)

    def lose_notifications(self) -> None:
        """Make every live stream raise ``NotificationsLost`` (for tests)."""
        for listener in self._listeners:
            listener.lost = True
            listener.pending = []
            listener.wakeup.unpark_all()
