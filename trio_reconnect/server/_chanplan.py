"""What a channel subscription gets, decided from reads and ids. Pure.

The channel drivers (:mod:`._chanfeed`, :mod:`._chananswer`) apply these
rules; each is stated once here:

* **A channel's answer** (PROTOCOL.md 4.2, 4.3) from one read of the store:
  a fresh subscription with ``history`` gets the newest ``history`` events; a
  fresh one without, the channel's snapshot where the server has one, else
  nothing (it starts at the newest id); a resume whose gap the store holds
  gets the replay; else the snapshot, else nothing and ``lost``.
* **The covered filter**, per subscription: once its answer carried every
  event through ``covered``, a live event at or below it is skipped, the
  next one (``covered + 1``) is sent and moves it, and anything further is a
  gap (some notification was missed): the feed repairs it from the store.
* **Limits**: one subscription per channel and connection; a new one past
  ``max_subscriptions`` is refused ``limit``; ``history`` is capped silently
  at ``max_replay`` (decision 6: ignored when ``lastEventId`` is set).
* **A principal's stable id** is its ``principal_id`` attribute, else
  ``str(principal)`` (decision 12).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs

from .._wire import RefusedCode, Subscribe
from ._channelbase import ChannelEvent, ChannelRead, ChannelRequest
from ._logbase import LoggedEvent, parse_event_id

__all__ = [
    "ChannelAction",
    "ChannelPlan",
    "LiveSplit",
    "channel_request",
    "plan_channel",
    "principal_id",
    "split_live",
    "subscribe_refusal",
]

_E = TypeVar("_E", bound=LoggedEvent | ChannelEvent)


class ChannelAction(enum.Enum):
    """What one channel's answer holds before its ``subscribed``."""

    #: The read's events (maybe none).
    REPLAY = "replay"
    #: The channel's snapshot, if the provider gives one that fits; else as LOST.
    SNAPSHOT = "snapshot"
    #: Nothing; ``subscribed`` says ``lost: true``.
    LOST = "lost"


@attrs.frozen
class ChannelPlan:
    """One channel's answer, given its read.

    Attributes:
        action: Replay, snapshot or lost.
        events: The events to replay (empty unless replaying).
        newest: The read's newest id: what ``subscribed`` names after a
            replay or a loss, and the filter's ``covered``.
    """

    action: ChannelAction
    events: Sequence[LoggedEvent]
    newest: str


def channel_request(frame: Subscribe, *, max_replay: int) -> ChannelRequest:
    """The store request of a ``subscribe`` (``history`` capped, ignored with a position)."""
    history = 0 if frame.last_event_id is not None else min(frame.history or 0, max_replay)
    return ChannelRequest(frame.channel, frame.last_event_id, history)


def plan_channel(request: ChannelRequest, read: ChannelRead, *, has_snapshot: bool) -> ChannelPlan:
    """Decide one channel's answer from its read (the module comment)."""
    fresh = request.after is None
    if fresh and request.history == 0 and has_snapshot:
        return ChannelPlan(ChannelAction.SNAPSHOT, (), read.newest)
    if read.events is not None:
        return ChannelPlan(ChannelAction.REPLAY, read.events, read.newest)
    if has_snapshot:
        return ChannelPlan(ChannelAction.SNAPSHOT, (), read.newest)
    return ChannelPlan(ChannelAction.LOST, (), read.newest)


@attrs.frozen
class LiveSplit:
    """Live events against a subscription's filter.

    Attributes:
        send: The events to send now, in order.
        covered: The filter after them.
        gap: Whether an event past ``covered + 1`` came (the rest waits for a repair).
    """

    send: Sequence[Any]
    covered: int
    gap: bool


def split_live(covered: int, events: Sequence[_E]) -> LiveSplit:
    """Skip the covered events, send the consecutive ones, stop at a gap."""
    send: list[_E] = []
    for event in events:
        seq = parse_event_id(event.id)
        if seq is None:
            continue
        if seq <= covered:
            continue
        if seq != covered + 1:
            return LiveSplit(send, covered, True)
        send.append(event)
        covered = seq
    return LiveSplit(send, covered, False)


def subscribe_refusal(*, held: bool, count: int, max_subscriptions: int) -> RefusedCode | None:
    """``limit`` for a new subscription past ``max_subscriptions``; a held one is renewed."""
    if not held and count >= max_subscriptions:
        return RefusedCode.LIMIT
    return None


def principal_id(principal: object) -> str:
    """A principal's stable string id: its ``principal_id`` attribute, else ``str()``."""
    value = getattr(principal, "principal_id", None)
    return value if isinstance(value, str) else str(principal)
