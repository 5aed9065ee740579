"""Every frame of protocol version 2 (PROTOCOL.md section 4) as a frozen value. Pure.

Each value's ``encode()`` writes the frame exactly as the protocol page shows
it (keys in the page's order); :mod:`._wire` reads frames into these values.
The default stream's frames stay in :mod:`._protocol`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _string
from typing import Any

import attrs

from ._names import NackCode, RefusedCode
from ._protocol import Gap, ServerEvent, Snapshot

#: ``json.dumps(frame, allow_nan=False)``'s encoder, made once (dumps makes one per call).
_ENCODER = json.JSONEncoder(allow_nan=False)


def _dumps(frame: dict[str, Any]) -> str:
    return _ENCODER.encode(frame)


# --------------------------------------------------------------------------- client -> server


@attrs.frozen
class ResumeFrame:
    """The version 2 resume frame (4.2).

    Attributes:
        last_event_id: The default stream's position (section 2).
        client_id: The client's identity (``None``: a version 1 client).
        channels: Each subscription's channel and position, in the order sent.
    """

    last_event_id: str | None
    client_id: str | None = None
    channels: tuple[tuple[str, str], ...] = ()

    def encode(self) -> str:
        """The frame's text (``clientId`` and ``channels`` only when there is a client id)."""
        frame: dict[str, Any] = {"type": "resume", "lastEventId": self.last_event_id}
        if self.client_id is not None:
            frame["clientId"] = self.client_id
            frame["channels"] = dict(self.channels)
        return _dumps(frame)


@attrs.frozen
class Subscribe:
    """``subscribe`` (4.3): from ``last_event_id``, or the newest ``history`` events."""

    channel: str
    last_event_id: str | None = None
    history: int | None = None

    def encode(self) -> str:
        """The frame's text (``history`` only when set)."""
        frame: dict[str, Any] = {
            "type": "subscribe",
            "channel": self.channel,
            "lastEventId": self.last_event_id,
        }
        if self.history is not None:
            frame["history"] = self.history
        return _dumps(frame)


@attrs.frozen
class Unsubscribe:
    """``unsubscribe`` (4.3)."""

    channel: str

    def encode(self) -> str:
        """The frame's text."""
        return _dumps({"type": "unsubscribe", "channel": self.channel})


@attrs.frozen
class Publish:
    """``publish`` (4.5): ``data`` to append to ``channel`` once per ``msg_id``.

    Attributes:
        channel: The channel to append to.
        msg_id: Unique within the client's ``clientId``.
        data: Any JSON value.
        compact: The server side's :func:`compact_json` of ``data`` (what it
            measured; empty when the value was built, not parsed).
    """

    channel: str
    msg_id: str
    data: Any
    compact: bytes = attrs.field(default=b"", eq=False, repr=False)

    def encode(self) -> str:
        """The frame's text.

        Raises:
            ValueError: ``data`` is not JSON (NaN, Infinity).
        """
        return _dumps(
            {"type": "publish", "channel": self.channel, "msgId": self.msg_id, "data": self.data}
        )


ClientFrame = Subscribe | Unsubscribe | Publish


# --------------------------------------------------------------------------- server -> client


@attrs.frozen
class ChannelItem:
    """Something to deliver to one channel's subscription.

    Attributes:
        channel: The channel.
        item: A replayed or live event, a snapshot, or a gap (the last has no
            frame of its own: a handshake makes it from ``lost``).
    """

    channel: str
    item: ServerEvent | Snapshot | Gap

    def encode(self) -> str:
        """The ``event`` or ``snapshot`` frame (a gap has none).

        Raises:
            TypeError: ``item`` is a gap.
        """
        if isinstance(self.item, ServerEvent):
            return encode_channel_event(self.channel, self.item.id, self.item.data)
        if isinstance(self.item, Snapshot) and self.item.id is not None:
            return encode_channel_snapshot(self.channel, self.item.id, self.item.data)
        raise TypeError(f"no frame for {self.item!r}")


def encode_channel_event(channel: str, event_id: str, data: Any) -> str:
    """A channel's replayed or live ``event`` frame."""
    return _dumps({"type": "event", "channel": channel, "id": event_id, "data": data})


def encode_channel_snapshot(channel: str, event_id: str, data: Any) -> str:
    """A channel's ``snapshot`` frame: its state as of ``event_id``."""
    return _dumps({"type": "snapshot", "channel": channel, "id": event_id, "data": data})


def encode_ready_v2(event_id: str | None, *, lost: bool, channels: Sequence[str]) -> str:
    """A version 2 server's ``ready``: ``channels`` lists the active subscriptions."""
    return _dumps({"type": "ready", "id": event_id, "lost": lost, "channels": list(channels)})


@attrs.frozen
class Refused:
    """``refused`` (4.2): the subscription is dropped (kept, if ``unavailable``).

    ``channel`` is ``None`` only in the server's answer to a frame without a
    string channel.
    """

    channel: str | None
    code: RefusedCode
    reason: str = ""

    def encode(self) -> str:
        """The frame's text."""
        return _dumps(
            {"type": "refused", "channel": self.channel, "code": self.code, "reason": self.reason}
        )


@attrs.frozen
class Subscribed:
    """``subscribed`` (4.2): the channel's answer is complete; ``id`` is never null."""

    channel: str
    id: str
    lost: bool = False

    def encode(self) -> str:
        """The frame's text."""
        return subscribed_text(self.channel, self.id, self.lost)


def subscribed_text(channel: str, id_: str, lost: bool) -> str:
    """The text of ``Subscribed(channel, id_, lost)`` without the value (a resume's answers)."""
    if type(channel) is str and type(id_) is str and type(lost) is bool:
        # One per channel of a resume: the text _dumps writes, without its dict and encoder.
        return (
            f'{{"type": "subscribed", "channel": {_string(channel)}, '
            f'"id": {_string(id_)}, "lost": {"true" if lost else "false"}}}'
        )
    return _dumps({"type": "subscribed", "channel": channel, "id": id_, "lost": lost})


@attrs.frozen
class Unsubscribed:
    """``unsubscribed`` (4.3): no frame of the channel follows; a code when the server chose."""

    channel: str
    code: str | None = None
    reason: str = ""

    def encode(self) -> str:
        """The frame's text (``code`` and ``reason`` only with a code)."""
        frame: dict[str, Any] = {"type": "unsubscribed", "channel": self.channel}
        if self.code is not None:
            frame["code"] = self.code
            frame["reason"] = self.reason
        return _dumps(frame)


def _member_map(members: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return dict(members)


@attrs.frozen
class Presence:
    """``presence`` (4.4): the channel's whole member list, key -> info.

    Attributes:
        channel: The channel.
        members: Each member's key and info, in the frame's order.
    """

    channel: str
    members: Mapping[str, dict[str, Any]] = attrs.field(converter=_member_map, hash=False)

    def encode(self) -> str:
        """The frame's text."""
        return _dumps({"type": "presence", "channel": self.channel, "members": dict(self.members)})


@attrs.frozen
class Join:
    """``join`` (4.4): a member arrived (or its info changed)."""

    channel: str
    client_id: str
    info: dict[str, Any] = attrs.field(factory=dict, hash=False)

    def encode(self) -> str:
        """The frame's text."""
        return _dumps(
            {"type": "join", "channel": self.channel, "clientId": self.client_id, "info": self.info}
        )


@attrs.frozen
class Leave:
    """``leave`` (4.4): a member left."""

    channel: str
    client_id: str

    def encode(self) -> str:
        """The frame's text."""
        return _dumps({"type": "leave", "channel": self.channel, "clientId": self.client_id})


@attrs.frozen
class Ack:
    """``ack`` (4.5): the publish ``msg_id`` is event ``id`` of ``channel``."""

    msg_id: str
    channel: str
    id: str

    def encode(self) -> str:
        """The frame's text."""
        msg_id, channel, id_ = self.msg_id, self.channel, self.id
        if type(msg_id) is str and type(channel) is str and type(id_) is str:
            # One per acked publish: the text _dumps writes, without its dict and encoder.
            return (
                f'{{"type": "ack", "msgId": {_string(msg_id)}, '
                f'"channel": {_string(channel)}, "id": {_string(id_)}}}'
            )
        return _dumps({"type": "ack", "msgId": msg_id, "channel": channel, "id": id_})


@attrs.frozen
class Nack:
    """``nack`` (4.5): the publish was not applied; final unless ``unavailable``.

    ``msg_id`` and ``channel`` are ``None`` only in the answer to a publish
    frame without a string one.
    """

    msg_id: str | None
    channel: str | None
    code: NackCode
    reason: str = ""

    def encode(self) -> str:
        """The frame's text."""
        return _dumps(
            {
                "type": "nack",
                "msgId": self.msg_id,
                "channel": self.channel,
                "code": self.code,
                "reason": self.reason,
            }
        )


@attrs.frozen
class Malformed:
    """A version 2 server frame that breaks the rules (the driver logs and drops it).

    Attributes:
        reason: What is wrong, for the log (quotes at most 80 characters).
    """

    reason: str


ServerFrame = (
    ChannelItem | Refused | Presence | Join | Leave | Subscribed | Unsubscribed | Ack | Nack
)
