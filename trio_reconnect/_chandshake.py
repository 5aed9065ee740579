"""The whole version 2 handshake on the client, sans IO (PROTOCOL.md 4.2).

Pure: no trio, no clock. :class:`ChannelHandshake` composes the version 1
:class:`~trio_reconnect._protocol.ResumeHandshake` (the default stream's
rules) with one :class:`~._channel.ChannelAnswer` per channel of the resume
frame's map; the order rules it checks are stated once at the top of
:mod:`._channel`.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ._channel import (
    UNSUPPORTED_REASON,
    ChannelAnswer,
    ChannelReady,
    HandshakeOutput,
)
from ._exceptions import ResumeProtocolError
from ._protocol import (
    HandshakeResult,
    ResumeHandshake,
    ServerEvent,
)
from ._wire import (
    Ack,
    ChannelItem,
    Join,
    Leave,
    Nack,
    Refused,
    RefusedCode,
    ResumeFrame,
    ServerFrame,
    Subscribed,
    Unsubscribed,
    channel_problem,
    client_id_problem,
    handshake_frame,
    handshake_server_frame,
    handshake_subscribed,
    parse_ready_channels,
)

__all__ = ["ChannelHandshake", "ChannelHandshakeResult"]


@attrs.frozen
class ChannelHandshakeResult:
    """The outcome of one finished version 2 handshake.

    Attributes:
        default: The default stream's result (as version 1's).
        channels: The subscriptions now active, in ``ready``'s order; ``None``
            for a version 1 server (``ready`` without ``channels``).
    """

    default: HandshakeResult
    channels: tuple[str, ...] | None

    @property
    def v2(self) -> bool:
        """Whether the server speaks version 2."""
        return self.channels is not None


@attrs.define(eq=False)
class ChannelHandshake:
    """The client's side of one version 2 handshake (PROTOCOL.md 4.2).

    Create one per connection, send :meth:`frame`, then feed every received
    message to :meth:`receive` until :attr:`result` is set.

    Args:
        last_event_id: The default stream's position.
        client_id: The client's identity.
        positions: Each subscription that was once answered ``subscribed``,
            onto its :attr:`ChannelCursor.position`.
        max_replay: Most replayed events accepted per channel (``None``: no limit).

    Raises:
        ValueError: ``client_id`` or a channel name breaks the rules of
            :mod:`trio_reconnect._wire`.

    Attributes:
        result: ``None`` until ``ready`` arrives.
    """

    last_event_id: str | None
    client_id: str
    #: A copy of the map given (made in ``__attrs_post_init__``: a converter would
    #: make attrs run a setattr hook on every field, one per channel frame).
    positions: Mapping[str, str] = attrs.field(factory=dict)
    max_replay: int | None = None
    result: ChannelHandshakeResult | None = attrs.field(init=False, default=None)
    _default: ResumeHandshake = attrs.field(init=False)
    _pending: dict[str, ChannelAnswer] = attrs.field(init=False)
    _open: ChannelAnswer | None = attrs.field(init=False, default=None)
    _active: dict[str, None] = attrs.field(init=False, factory=dict)
    _answered: set[str] = attrs.field(init=False, factory=set)
    _default_began: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.positions = dict(self.positions)
        for problem in (
            client_id_problem(self.client_id),
            *(channel_problem(channel) for channel in self.positions),
        ):
            if problem is not None:
                raise ValueError(problem)
        self._default = ResumeHandshake(self.last_event_id)
        self._pending = {
            channel: ChannelAnswer(channel, position, self.max_replay)
            for channel, position in self.positions.items()
        }

    def frame(self) -> str:
        """The resume frame to send first."""
        channels = tuple(self.positions.items())
        return ResumeFrame(self.last_event_id, self.client_id, channels).encode()

    def receive(self, message: str | bytes) -> tuple[HandshakeOutput, ...]:
        """Feed one received message; return what it gives, in order.

        Raises:
            ResumeProtocolError: a malformed frame, a frame of unknown type or
                out of order, a ``ready`` that contradicts the channels'
                answers, or any message after ``ready``.
        """
        if self.result is not None:
            raise ResumeProtocolError("handshake already finished")
        # One per channel: without json.loads (the pending names were checked at the start).
        subscribed = handshake_subscribed(message, self._pending)
        if subscribed is not None:
            return (self._subscribed(subscribed),)
        frame = handshake_frame(message)
        v2 = handshake_server_frame(frame, message)
        if v2 is not None:
            return (self._channel_frame(v2),)
        if self._open is not None and frame.get("type") in ("event", "snapshot", "ready"):
            raise ResumeProtocolError(
                f"a default-stream frame while channel {self._open.channel!r}'s answer is open"
            )
        if frame.get("type") == "ready":
            return self._ready(frame, message)
        self._default_began = True
        item = self._default.receive(message)
        return () if item is None else (item,)

    def _subscribed(self, frame: Subscribed) -> HandshakeOutput:
        """:meth:`_channel_frame` of a ``subscribed`` that ends a channel's answer alone.

        The frequent frame of a resume (one per channel that missed nothing):
        no answer open, the default stream's replay not begun, its channel
        pending. Its answer is taken, answered and made active as there,
        without the checks for the other kinds of frame; any other case (an
        error included) is :meth:`_channel_frame`'s.
        """
        if self._open is not None or self._default_began:
            return self._channel_frame(frame)
        channel = frame.channel
        answer = self._pending.pop(channel, None)
        if answer is None:
            return self._channel_frame(frame)
        self._answered.add(channel)
        out = answer.receive(frame)  # done: a ChannelReady
        self._active[channel] = None
        return out

    def _channel_frame(self, frame: ServerFrame) -> HandshakeOutput:
        if isinstance(frame, Ack | Nack):
            raise ResumeProtocolError(f"an {type(frame).__name__.lower()} before ready")
        if frame.channel is None:
            raise ResumeProtocolError("a refused frame without a channel before ready")
        if self._default_began:
            raise ResumeProtocolError(
                f"a frame of channel {frame.channel!r} after the default stream's replay began"
            )
        channel = frame.channel
        answer = self._open
        if answer is None or answer.channel != channel:
            if channel in self._active and (
                isinstance(frame, Join | Leave | Unsubscribed)
                or (isinstance(frame, ChannelItem) and isinstance(frame.item, ServerEvent))
            ):
                if isinstance(frame, Unsubscribed):
                    del self._active[channel]
                return frame
            if answer is not None:
                raise ResumeProtocolError(
                    f"a frame of channel {channel!r} while {answer.channel!r}'s answer is open"
                )
            answer = self._pending.pop(channel, None)
            if answer is None:
                raise ResumeProtocolError(
                    f"a frame of channel {channel!r}, which was not asked for or already answered"
                )
            self._answered.add(channel)
            self._open = answer
        out = answer.receive(frame)
        if answer.done:
            self._open = None
            if isinstance(out, ChannelReady):
                self._active[channel] = None
        return out

    def _ready(self, frame: dict[str, object], message: str | bytes) -> tuple[HandshakeOutput, ...]:
        channels = parse_ready_channels(frame, message)
        if channels is None:
            if self._answered:
                raise ResumeProtocolError("a ready without channels after channel answers")
        elif self._pending:
            raise ResumeProtocolError(
                f"ready before channel {next(iter(self._pending))!r} was answered"
            )
        elif set(channels) != set(self._active):
            raise ResumeProtocolError(
                f"ready lists channels {sorted(channels)[:5]}, the active ones are "
                f"{sorted(self._active)[:5]}"
            )
        gap = self._default.receive(message)
        assert self._default.result is not None
        self.result = ChannelHandshakeResult(self._default.result, channels)
        out: list[HandshakeOutput] = [] if gap is None else [gap]
        if channels is None:
            out.extend(
                Refused(channel, RefusedCode.UNSUPPORTED, UNSUPPORTED_REASON)
                for channel in self.positions
            )
        return tuple(out)
