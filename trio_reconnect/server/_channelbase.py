"""What the server needs from a channel store: the async protocol, its values and errors. Pure.

Protocol version 2 (PROTOCOL.md section 4) gives every channel its own log.
This module states the contract every channel backend implements (the
in-memory :class:`~trio_reconnect.server.MemoryChannelStore`, the Redis one,
one you write), the way :mod:`._logbase` states the default stream's.

Rules, stated once:

* **Ids per channel** follow :mod:`._logbase`'s rules, channel by channel:
  canonical decimal strings of consecutive integers, never reused, a channel
  that starts empty (new, or its store lost its data) counting from
  :func:`~._logbase.clock_start_id`. So "is every event of channel C after
  ``L`` still held" is arithmetic, on every backend.
* **A channel's starting point is fixed at its first read.** A read of a
  channel that has no event yet sets its counter (if missing) and answers
  with the id just before the first one it will issue (never ``None``): a
  client that resumes from that id is replayed every event since.
* **One round trip for many channels.** :meth:`ChannelStore.read` answers
  every request of a handshake (100 channels included) in one consistent
  call per request, in one round trip to the store.
* **Live delivery is a notification stream per node, not a task per
  channel.** :meth:`ChannelStore.listen` gives a node every event appended
  to any channel, each with its channel and id, in each channel's id order.
  The stream may lose notifications (pub/sub is at-most-once): it then
  raises :class:`NotificationsLost`, and the node repairs every channel it
  holds from :meth:`ChannelStore.read` and :meth:`ChannelStore.heads`. A gap
  inside one channel (an id jump) is repaired the same way, for that channel
  only.
* **Register first, read second, per channel.** A notification that reached
  the node before a subscriber registered was appended before that
  subscriber's read, so the read covers it. That holds only if the node's
  listening was established before any registration: :meth:`listen` returns
  once the stream is live.

* **Acknowledged publish is one atomic step per item.** :meth:`ChannelStore.publish`
  applies its items in order; each item's append, its dedupe record
  (:attr:`PublishRequest.key`, kept at least ``dedupe_ttl`` seconds, per
  channel) and its notification happen together or not at all. An item
  whose key is recorded is not appended again: its result is the first
  append's id, ``duplicate=True``. The call stops at the first item that
  fails and returns the results of the prefix that ran.

Every method may raise :class:`~._logbase.LogUnavailableError`; none may
retry a write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs

from ._logbase import EventLogError, LoggedEvent
from ._presencebase import MemberChange

__all__ = [
    "ChannelEvent",
    "ChannelRead",
    "ChannelRequest",
    "ChannelStore",
    "NotificationsLost",
    "PublishRequest",
    "PublishResult",
]


@attrs.frozen
class ChannelRequest:
    """One channel of a handshake or a ``subscribe``: where the client stands.

    Attributes:
        channel: A valid channel name (:func:`trio_reconnect._wire.channel_problem`).
        after: The id the client delivered last in that channel (or the
            ``subscribed`` id that started its subscription); ``None``: a
            fresh subscription.
        history: For a fresh subscription only: the newest ``history``
            events are asked for (0: none, start at the newest id). The
            caller has capped it by ``max_replay``; ignored when ``after`` is
            set.
    """

    channel: str
    after: str | None
    history: int = 0


@attrs.frozen
class ChannelRead:
    """The answer to one :class:`ChannelRequest`, taken at one instant.

    Attributes:
        channel: The channel asked for.
        newest: The channel's newest id at that instant; for a channel with no
            event yet, the id just before the first it will issue. Never
            ``None``.
        events: Every event after the asked id up to and including
            ``newest``, oldest first (for a fresh request with ``history``:
            the newest ``history`` held ones, maybe fewer); ``None`` when the
            gap after the asked id is not fully held (unknown id, trimmed,
            the store lost its data) or holds more than ``max_replay``
            events.
    """

    channel: str
    newest: str
    events: Sequence[LoggedEvent] | None


@attrs.frozen
class ChannelEvent:
    """One notification of the live stream: an event appended to a channel."""

    channel: str
    id: str
    data: Any


@attrs.frozen
class PublishRequest:
    """One acknowledged publish for :meth:`ChannelStore.publish`.

    Attributes:
        channel: A valid channel name.
        key: The dedupe key of (principal, clientId, msgId)
            (:func:`~trio_reconnect.server._pubplan.dedupe_key`); recorded per
            channel.
        data: The event's data (any JSON value).
        payload: ``data``'s compact JSON (what a store that keeps JSON
            stores); empty: the store encodes ``data`` itself.
    """

    channel: str
    key: str
    data: Any
    payload: bytes = attrs.field(default=b"", eq=False, repr=False)


@attrs.frozen
class PublishResult:
    """What one :class:`PublishRequest` became: its event id, and whether it was applied before."""

    id: str
    duplicate: bool = False


class NotificationsLost(EventLogError):
    """The live stream may have missed notifications (its connection broke, a buffer overflowed).

    Raised by the stream of :meth:`ChannelStore.listen`. The stream is over;
    the node opens a new one, then repairs every channel it holds.
    """


class ChannelStore(Protocol):
    """The async per-channel store a server's channels run on.

    Implement it to back channels with another store. Ids follow the rules at
    the top of this module.
    """

    async def read(
        self, requests: Sequence[ChannelRequest], *, max_replay: int
    ) -> Sequence[ChannelRead]:
        """Answer every request, in order, in one round trip; fix missing starting points.

        Raises:
            ValueError: if ``max_replay`` is not a whole number of at least 0.
        """
        ...

    async def append(self, channel: str, data: Any) -> str:
        """Store one event in ``channel``, notify every listener, return its id."""
        ...

    async def publish(
        self, items: Sequence[PublishRequest], *, dedupe_ttl: float
    ) -> Sequence[PublishResult]:
        """Apply ``items`` in order, each once per key within ``dedupe_ttl`` seconds.

        Each item's append, dedupe record and notification are one atomic
        step. Stops at the first item that fails: returns the results of the
        prefix that ran (fewer than ``items``).

        Raises:
            LogUnavailableError: the store failed before any item ran, or
                its outcome is unknown (a connection lost mid-call).
        """
        ...

    async def heads(self, channels: Sequence[str]) -> Mapping[str, str]:
        """The newest id of each channel that has a starting point (others are left out)."""
        ...

    def listen(
        self, *, wanted: Callable[[str], bool] | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Sequence[ChannelEvent | MemberChange]]]:
        """A live stream of every channel's events (and member changes, 4.4), in batches.

        Entering returns once the stream is live (register-first holds from
        then on). Iterating yields batches in each channel's id order, and
        raises :class:`NotificationsLost` when notifications may have been
        missed; the stream is then over.

        ``wanted``, a hint: asked with an event's channel when the store
        reads its notification; the stream may leave the event out if it
        answers ``False`` (the node's feed asks "a subscriber here?", so
        the store need not decode events nobody here takes). A store may
        ignore it, and one whose ``listen`` takes no ``wanted`` (written
        before it) is called without it.
        """
        ...
