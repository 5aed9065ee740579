"""Channels on the client, sans IO: the version 2 handshake and each channel's cursor.

Pure: no trio, no clock. The frames are :mod:`trio_reconnect._wire`'s; this
module says in which order they may come and what each one means for a
subscription (PROTOCOL.md 4.2 and 4.3):

* :class:`ChannelAnswer` reads the server's answer to one channel (in the
  resume frame's map, or a ``subscribe`` after ``ready``);
* :class:`~._chandshake.ChannelHandshake` (in :mod:`._chandshake`) is the
  whole version 2 handshake: it composes the version 1
  :class:`~trio_reconnect._protocol.ResumeHandshake` (which keeps the default
  stream's rules) with one :class:`ChannelAnswer` per channel;
* :class:`ChannelCursor` is one subscription's position and dedupe window;
* :class:`ChannelState` is one subscription whole (phase, cursor, member
  list): the driver hands it its channel's frames and delivers what it returns.

The order rules, stated once:

* Before ``ready`` the server answers every channel of the resume map, one
  channel after the other: ``refused``; or replayed ``event`` frames oldest
  first, or one ``snapshot`` (possibly followed by newer events), or neither;
  then at most one ``presence``; then ``subscribed``. A frame of another
  channel while one channel's answer is open, a second answer for a channel,
  a channel the client did not ask for, ``join``/``leave`` before the
  channel's ``subscribed``, ``ack``/``nack``, or a channel frame after the
  default stream's first frame: :class:`~trio_reconnect.ResumeProtocolError`.
* A channel already answered ``subscribed`` may receive live frames before
  ``ready`` (``event``, ``join``, ``leave``, ``unsubscribed``): the page does not
  forbid a server to start a channel's live delivery as soon as it answered
  it, so they are accepted and delivered (after ``unsubscribed``, the channel
  is no longer active).
* Then the default stream's frames, as in version 1, and ``ready``. A
  ``ready`` with ``channels`` must come after every channel of the map was
  answered and list exactly the channels now active (answered ``subscribed``
  and not since ``unsubscribed``), in any order. A ``ready`` without
  ``channels`` comes from a version 1 server: every channel of the map is then
  refused with code ``unsupported`` (the client's own code), provided the
  server sent no channel frame (else the ``ready`` is a protocol error).
* A channel's outcome follows version 1's rule
  (:func:`~trio_reconnect._protocol.outcome_of`) with ``subscribed``'s ``lost``
  and the position the channel was asked from; when ``lost`` is true a
  :class:`~trio_reconnect.Gap` (position, ``subscribed`` id) goes to the
  subscription before it is active again.
* Replayed events beyond ``max_replay`` in one channel (a client setting) are a
  protocol error, as for the default stream.

A channel's cursor (section 2.5 applied per channel): its window starts with
the id the application subscribed from, if any; it follows every delivered
event; a snapshot or a gap empties it and seeds it with the id the order starts
again from; the ``subscribed`` id counts as delivered (the client "has" it: a
fresh subscription starts at the channel's newest id, which it never sees
again). Its :attr:`ChannelCursor.position` is what the resume frame's map
holds: ``None`` (not in the map) until the first ``subscribed``, then the id of
the last delivered event or of that ``subscribed``, whichever came last. A
``subscribe`` frame (first time, or again after ``unavailable``) asks from the
application's id with its ``history`` only while nothing was delivered and no
``subscribed`` came; after that, from the last delivered id, without history.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from ._cursor import Cursor
from ._exceptions import ResumeProtocolError
from ._presence import Members
from ._protocol import (
    Gap,
    HandshakeResult,
    ServerEvent,
    Snapshot,
    outcome_of,
)
from ._validators import check_int
from ._wire import (
    ChannelItem,
    Join,
    Leave,
    Presence,
    Refused,
    ServerFrame,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    channel_problem,
)

__all__ = [
    "ChannelAnswer",
    "ChannelCursor",
    "ChannelOutput",
    "ChannelReady",
    "ChannelState",
    "HandshakeOutput",
    "Phase",
    "UNSUPPORTED_REASON",
]

#: The reason of the ``unsupported`` refusal of every channel on a version 1 server.
UNSUPPORTED_REASON: Final = "the server speaks protocol version 1 (its ready has no channels)"


@attrs.frozen
class ChannelReady:
    """One channel's answer ended with ``subscribed``: the subscription is active.

    Attributes:
        subscribed: The ``subscribed`` frame.
        result: The channel's outcome, replayed count and ``subscribed`` id.
        gap: What to deliver before anything newer when ``lost`` was true.
    """

    subscribed: Subscribed
    result: HandshakeResult
    gap: Gap | None = None

    @property
    def channel(self) -> str:
        """The channel."""
        return self.subscribed.channel


#: What :meth:`ChannelHandshake.receive` and :meth:`ChannelAnswer.receive` give:
#: items of the default stream, items and member lists of a channel, a
#: channel's end of answer (:class:`ChannelReady` or :class:`~trio_reconnect._wire.Refused`).
HandshakeOutput = (
    ServerEvent | Snapshot | Gap | ChannelItem | Presence | Join | Leave | Refused | Unsubscribed
) | ChannelReady


@attrs.define(eq=False)
class ChannelAnswer:
    """The server's answer to one channel: ``refused``, or resume + members + ``subscribed``.

    Args:
        channel: The channel asked for.
        start: The id it was asked from (the resume map's position, or a
            ``subscribe``'s ``lastEventId``; ``None``: nothing seen yet).
        max_replay: Most replayed events accepted (``None``: no limit).

    Attributes:
        done: Whether the answer is complete (``subscribed`` or ``refused``).
    """

    channel: str
    start: str | None
    max_replay: int | None = None
    done: bool = False
    _replayed: int = 0
    _snapshot: bool = False
    _presence: bool = False

    def receive(self, frame: ServerFrame) -> ChannelItem | Presence | Refused | ChannelReady:
        """Feed one frame of this channel.

        Raises:
            ResumeProtocolError: the frame is out of order here.
        """
        if self.done:
            raise ResumeProtocolError(f"channel {self.channel!r}: a frame after its answer ended")
        if isinstance(frame, Subscribed):  # the frequent one first
            self.done = True
            outcome = outcome_of(
                lost=frame.lost, snapshot=self._snapshot, replayed=self._replayed, start=self.start
            )
            result = HandshakeResult(outcome, self._replayed, frame.id)
            return ChannelReady(frame, result, Gap(self.start, frame.id) if frame.lost else None)
        if isinstance(frame, Refused):
            if self._replayed or self._snapshot or self._presence:
                raise ResumeProtocolError(f"channel {self.channel!r}: refused after its resume")
            self.done = True
            return frame
        if isinstance(frame, ChannelItem):
            return self._item(frame)
        if isinstance(frame, Presence):
            if self._presence:
                raise ResumeProtocolError(f"channel {self.channel!r}: a second member list")
            self._presence = True
            return frame
        raise ResumeProtocolError(
            f"channel {self.channel!r}: a {type(frame).__name__.lower()} frame before subscribed"
        )

    def _item(self, frame: ChannelItem) -> ChannelItem:
        if self._presence:
            raise ResumeProtocolError(f"channel {self.channel!r}: an event after its member list")
        if isinstance(frame.item, Snapshot):
            if self._snapshot or self._replayed:
                raise ResumeProtocolError(
                    f"channel {self.channel!r}: a snapshot after a snapshot or replayed events"
                )
            self._snapshot = True
            return frame
        self._replayed += 1
        if self.max_replay is not None and self._replayed > self.max_replay:
            raise ResumeProtocolError(
                f"channel {self.channel!r}: more than max_replay={self.max_replay} events replayed"
            )
        return frame


@attrs.define(eq=False)
class ChannelCursor:
    """One subscription's position and dedupe window (the rules are at the top of the module).

    Args:
        channel: The channel.
        window: How many recent ids are kept to drop duplicates (at least 1).
        last_event_id: The id the application subscribed from (``None``:
            nothing seen yet); it counts as delivered.
        history: The newest events a fresh subscription asks for (``None``: none).

    Raises:
        ValueError: ``channel`` is not a valid channel name, or ``history`` is negative.
    """

    channel: str
    window: int
    last_event_id: str | None = None
    history: int | None = None
    _cursor: Cursor = attrs.field(init=False)
    _subscribed: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        problem = channel_problem(self.channel)
        if problem is not None:
            raise ValueError(problem)
        if self.history is not None:
            check_int("history", self.history, minimum=0)
        self._cursor = Cursor(self.last_event_id, self.window)

    @property
    def position(self) -> str | None:
        """The value of the resume frame's map (``None``: not in the map yet)."""
        return self._cursor.last_event_id if self._subscribed else None

    @property
    def delivered(self) -> str | None:
        """The id of the last event delivered (or the start it counts from)."""
        return self._cursor.last_event_id

    @property
    def remembered(self) -> int:
        """How many ids the window holds now (at most ``window``)."""
        return self._cursor.remembered

    def deliver(self, item: ServerEvent | Snapshot | Gap) -> bool:
        """Whether to deliver ``item`` (``False``: a duplicate event); moves the cursor."""
        return self._cursor.deliver(item)

    def subscribed(self, ready: ChannelReady) -> Gap | None:
        """The channel's answer ended with ``subscribed``.

        Returns:
            The gap to deliver before anything newer, if events were lost.
        """
        subscribed, gap, cursor = ready.subscribed, ready.gap, self._cursor
        if subscribed.channel != self.channel:
            raise ValueError(f"subscribed for {subscribed.channel!r} given to {self.channel!r}")
        if gap is not None:
            cursor.deliver(gap)
        cursor.ready(ready.result)
        # The subscribed id counts as delivered, by the rule for a passed-in id.
        cursor.deliver_id(subscribed.id)
        self._subscribed = True
        return gap

    def subscribe_frame(self) -> Subscribe:
        """The ``subscribe`` to send after ``ready`` (first time, or after ``unavailable``).

        Once answered ``subscribed``, or once an item of the first answer was
        delivered (the connection dropped in the middle of it), it asks from
        the last delivered id and without history (the history was had);
        before, from the application's ``last_event_id`` with its ``history``.
        """
        delivered = self._cursor.last_event_id
        if self._subscribed or delivered != self.last_event_id:
            return Subscribe(self.channel, delivered)
        return Subscribe(self.channel, self.last_event_id, self.history)

    def answer(self, *, max_replay: int | None = None) -> ChannelAnswer:
        """A machine to read the answer to :meth:`subscribe_frame` with."""
        return ChannelAnswer(self.channel, self.subscribe_frame().last_event_id, max_replay)


class Phase(enum.Enum):
    """Where one subscription stands (:class:`ChannelState`)."""

    #: To be asked for: never answered yet, held after ``unavailable``, or the
    #: connection dropped. In the next resume frame's map if it has a position.
    PENDING = "pending"
    #: Asked for (in the resume frame or by a ``subscribe``), its answer not complete.
    ASKING = "asking"
    #: Answered ``subscribed``: live frames flow.
    ACTIVE = "active"
    #: The application left it: ``unsubscribe`` sent, ``unsubscribed`` awaited.
    LEAVING = "leaving"
    #: Over: refused with a final code, ``unsubscribed``, or a version 1 server.
    CLOSED = "closed"


#: What a subscription hands on: items for its iteration (events, snapshots,
#: gaps, member changes) and the ends of its answers.
ChannelOutput = ServerEvent | Snapshot | Gap | Join | Leave | ChannelReady | Refused | Unsubscribed


@attrs.define(eq=False)
class ChannelState:
    """One subscription, whole: its phase, cursor and member list. Pure.

    The driver feeds it the handshake's outputs for its channel
    (:meth:`apply`) and, after ``ready``, every frame of its channel that
    :func:`~trio_reconnect._wire.parse_server_frame` gives (:meth:`receive`);
    both return what the subscription hands on, in order, duplicates and
    non-changes already dropped. The phase rules, stated once:

    * ``subscribed`` makes it :attr:`Phase.ACTIVE`; a final refusal (and
      ``unsupported``) or ``unsubscribed`` makes it :attr:`Phase.CLOSED`;
      ``unavailable`` makes it :attr:`Phase.PENDING` again (the driver asks
      again after the backoff, or the next resume frame does);
    * a dropped connection makes an asking or active subscription pending,
      and a leaving one closed (the server forgets a closed connection's
      subscriptions);
    * after ``ready``, an asking subscription's frames go through its own
      :class:`ChannelAnswer` (order checked, :class:`ResumeProtocolError`);
      an active one takes live events, ``join``, ``leave`` and
      ``unsubscribed`` (anything else is a protocol error); a leaving one
      drops everything but ``unsubscribed``; a pending or closed one drops
      everything.
    * the first member list of a subscription is handed on as a join per
      member; later lists only as their differences (:class:`~trio_reconnect._presence.Members`).

    Args:
        channel: The channel.
        window: The dedupe window's size.
        last_event_id: Where the application subscribed from.
        history: The newest events a fresh subscription asks for.
        max_replay: Most replayed events accepted in one answer.
    """

    channel: str
    window: int
    last_event_id: str | None = None
    history: int | None = None
    max_replay: int | None = None
    phase: Phase = attrs.field(init=False, default=Phase.PENDING)
    cursor: ChannelCursor = attrs.field(init=False)
    members: Members = attrs.field(init=False)
    _answer: ChannelAnswer | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        self.cursor = ChannelCursor(self.channel, self.window, self.last_event_id, self.history)
        self.members = Members(self.channel)

    @property
    def position(self) -> str | None:
        """Its entry in the next resume frame's map (``None``: not in the map)."""
        if self.phase in (Phase.CLOSED, Phase.LEAVING):
            return None
        return self.cursor.position

    def resumed(self) -> None:
        """The resume frame carried it: the handshake reads its answer."""
        self._check_phase(Phase.PENDING, "resume")
        self.phase = Phase.ASKING
        self._answer = None

    def subscribe(self) -> Subscribe:
        """The ``subscribe`` frame to send now (after ``ready``)."""
        self._check_phase(Phase.PENDING, "subscribe")
        self.phase = Phase.ASKING
        self._answer = self.cursor.answer(max_replay=self.max_replay)
        return self.cursor.subscribe_frame()

    def restart(self) -> None:
        """An answer the client did not ask for begins (the server starts the channel again).

        The lead's decision 2: a ``snapshot``, member list, ``refused`` or
        ``subscribed`` for an active subscription is read as the answer to a
        ``subscribe`` from the last delivered id (the dedupe window stays).
        """
        self._check_phase(Phase.ACTIVE, "restart")
        self.phase = Phase.ASKING
        self._answer = self.cursor.answer(max_replay=self.max_replay)

    def unsubscribe(self) -> Unsubscribe | None:
        """The application leaves; the ``unsubscribe`` frame to send, if any is needed."""
        if self.phase is Phase.CLOSED:
            return None
        if self.phase is Phase.PENDING:
            self.phase = Phase.CLOSED
            return None
        self.phase = Phase.LEAVING
        self._answer = None
        return Unsubscribe(self.channel)

    def connection_lost(self) -> None:
        """The connection dropped."""
        self._answer = None
        if self.phase is Phase.LEAVING:
            self.phase = Phase.CLOSED
        elif self.phase in (Phase.ASKING, Phase.ACTIVE):
            self.phase = Phase.PENDING

    def _check_phase(self, expected: Phase, action: str) -> None:
        if self.phase is not expected:
            raise ValueError(f"channel {self.channel!r}: cannot {action} while {self.phase.value}")

    def receive(self, frame: ServerFrame) -> list[ChannelOutput]:
        """Take one frame of this channel received after ``ready``.

        Raises:
            ResumeProtocolError: the frame is out of order for an asking or
                active subscription.
        """
        if self.phase is Phase.ASKING and self._answer is not None:
            return self.apply(self._answer.receive(frame))
        if self.phase is Phase.LEAVING:
            return self.apply(frame) if isinstance(frame, Unsubscribed) else []
        if self.phase is not Phase.ACTIVE:
            return []
        if isinstance(frame, Join | Leave | Unsubscribed) or (
            isinstance(frame, ChannelItem) and isinstance(frame.item, ServerEvent)
        ):
            return self.apply(frame)
        raise ResumeProtocolError(
            f"channel {self.channel!r}: a {type(frame).__name__.lower()} frame while subscribed"
        )

    def apply(self, output: HandshakeOutput | ServerFrame) -> list[ChannelOutput]:
        """Take one output of the handshake (or of :meth:`receive`) for this channel."""
        if isinstance(output, ChannelReady):  # one per channel of a resume: the frequent one first
            self.phase = Phase.ACTIVE
            self._answer = None
            gap = self.cursor.subscribed(output)
            return [output] if gap is None else [gap, output]
        if isinstance(output, ChannelItem):
            return [output.item] if self.cursor.deliver(output.item) else []
        if isinstance(output, Presence):
            return list(self.members.replace(output))
        if isinstance(output, Join | Leave):
            change = self.members.apply(output)
            return [] if change is None else [change]
        if isinstance(output, Refused):
            self._answer = None
            final = output.code.final
            self.phase = Phase.CLOSED if final else Phase.PENDING
            return [output]
        if isinstance(output, Unsubscribed):
            self._answer = None
            self.phase = Phase.CLOSED
            return [output]
        raise TypeError(f"not a frame of channel {self.channel!r}: {output!r}")
