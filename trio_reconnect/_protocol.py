"""The frames of the resume handshake (docs/reference/protocol.md, section 2), sans IO.

Everything here is pure: no trio, no sockets, no clock. Both sides of the
protocol use this module, so that each frame's shape is written down once:

* the client feeds every message it receives before ``ready`` into a
  :class:`ResumeHandshake`, which says what to deliver to the application and
  when the handshake is over, or raises :class:`~trio_reconnect.ResumeProtocolError`;
* after ``ready`` the client passes each message through :func:`parse_live`;
* the server builds its frames with :func:`encode_event`, :func:`encode_snapshot`
  and :func:`encode_ready`, and reads the client's first frame with
  :func:`parse_resume`.

Frame summary (all TEXT messages holding one JSON object)::

    client -> server   {"type": "resume", "lastEventId": "41" | null}
    server -> client   {"type": "event", "id": "42", "data": <any JSON>}
                       {"type": "snapshot", "id": "57", "data": <any JSON>}
                       {"type": "ready", "id": "57" | null, "lost": false}

Parsing rules that the spec leaves to us, stated once here:

* before ``ready``, an ``event`` needs a string ``id``; a ``snapshot`` and a
  ``ready`` need an ``id`` key whose value is a string or null; ``lost`` must be
  a boolean when present (absent means false); ``data`` may be absent (null);
* a second ``snapshot``, or a ``snapshot`` after replayed events, is a protocol
  error (the server answers with ONE of replay or snapshot); events after a
  snapshot are accepted (they are newer than the snapshot);
* after ``ready``, only a JSON object whose ``type`` is ``"event"`` and whose
  ``id`` is a string becomes a :class:`ServerEvent`; everything else is handed
  to the application unchanged.
"""

from __future__ import annotations

import collections
import enum
import json
from typing import Any, Final

import attrs

from ._exceptions import ResumeProtocolError

__all__ = [
    "Gap",
    "HandshakeOutcome",
    "HandshakeResult",
    "Item",
    "RecentIds",
    "ResumeHandshake",
    "ServerEvent",
    "Snapshot",
    "encode_event",
    "encode_ready",
    "encode_resume",
    "encode_snapshot",
    "parse_live",
    "parse_resume",
]

#: Longest frame text quoted back in an error message, so that a hostile
#: multi-megabyte frame never ends up whole in a log line.
_QUOTE_LIMIT: Final = 80


@attrs.frozen
class ServerEvent:
    """One event from the server's log, delivered once and in order.

    The events a handshake replays reach the application before that
    handshake's ``ready``: ``statistics()`` counts the reconnect at ``ready``,
    so it still shows the previous connection while they are handled.

    Attributes:
        id: The server's opaque event id (becomes ``last_event_id``).
        data: The event's JSON payload, decoded.
    """

    id: str
    data: Any


@attrs.frozen
class Snapshot:
    """State as of event ``id``; it replaces whatever the application had.

    Attributes:
        id: The newest event the snapshot includes (``None`` for an empty log).
        data: The snapshot's JSON payload, decoded.
    """

    id: str | None
    data: Any


@attrs.frozen
class Gap:
    """Events were lost: the server could neither replay nor send a snapshot.

    The events after ``last_id`` up to and including ``ready_id`` are gone;
    the next item is newer than ``ready_id``. A :class:`Snapshot` delivered
    later replaces the application's state as a whole, so state is complete
    again from there (only the individual events of the gap stay unseen).

    Attributes:
        last_id: The last event id the client had before the gap (``None`` if
            it had none).
        ready_id: The id in the server's ``ready`` frame, the newest event
            of the gap (``None``: the server's log is empty, for example a
            new process; nothing after ``last_id`` can be had from it).
    """

    last_id: str | None
    ready_id: str | None = None


#: What :meth:`ReconnectingWebSocket.get_message` can return.
Item = ServerEvent | Snapshot | Gap | str | bytes


class HandshakeOutcome(enum.Enum):
    """How a resume handshake ended (docs/reference/protocol.md, section 2)."""

    #: First connect (no ``lastEventId``), and the server had nothing to send.
    FRESH = "fresh"
    #: The missed events were replayed (possibly zero: already up to date).
    REPLAYED = "replayed"
    #: A snapshot replaced the client's state.
    SNAPSHOT = "snapshot"
    #: Events were lost; a :class:`Gap` was delivered.
    LOST = "lost"


@attrs.frozen
class HandshakeResult:
    """The outcome of one finished handshake.

    Attributes:
        outcome: Which of the four outcomes happened.
        replayed: How many ``event`` frames the server replayed.
        ready_id: The ``id`` in the server's ``ready`` frame.
    """

    outcome: HandshakeOutcome
    replayed: int
    ready_id: str | None


def _quote(message: str | bytes) -> str:
    text = repr(message)
    if len(text) > _QUOTE_LIMIT:
        return text[:_QUOTE_LIMIT] + f"... ({len(message)} long)"
    return text


def _loads_object(message: str | bytes) -> dict[str, Any] | None:
    """Decode ``message`` as a JSON object, or return None if it is not one."""
    if not isinstance(message, str):
        return None
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _is_id(value: object) -> bool:
    return value is None or isinstance(value, str)


def encode_resume(last_event_id: str | None) -> str:
    """The client's first frame on every connection."""
    return json.dumps({"type": "resume", "lastEventId": last_event_id})


def parse_resume(message: str | bytes) -> str | None:
    """Read the client's resume frame; return its ``lastEventId``.

    Raises:
        ResumeProtocolError: if the frame is not a resume frame.
    """
    frame = _loads_object(message)
    if frame is None or frame.get("type") != "resume":
        raise ResumeProtocolError(f"expected a resume frame, got {_quote(message)}")
    if "lastEventId" not in frame or not _is_id(frame["lastEventId"]):
        raise ResumeProtocolError(
            f"resume frame needs lastEventId as a string or null, got {_quote(message)}"
        )
    last: str | None = frame["lastEventId"]
    return last


def encode_event(event_id: str, data: Any) -> str:
    """A replayed or live ``event`` frame."""
    return json.dumps({"type": "event", "id": event_id, "data": data}, allow_nan=False)


def encode_snapshot(event_id: str | None, data: Any) -> str:
    """A ``snapshot`` frame: state as of ``event_id``."""
    return json.dumps({"type": "snapshot", "id": event_id, "data": data}, allow_nan=False)


def encode_ready(event_id: str | None, *, lost: bool) -> str:
    """The ``ready`` frame that ends the handshake."""
    return json.dumps({"type": "ready", "id": event_id, "lost": lost})


def parse_live(message: str | bytes) -> ServerEvent | str | bytes:
    """Classify one message received after ``ready``.

    A JSON object of type ``event`` with a string ``id`` becomes a
    :class:`ServerEvent`; anything else is returned unchanged.
    """
    # Fast path: most application frames are not event frames, and json.loads
    # on every message would be the most expensive thing on the receive path.
    # An event frame holds the text "event" literally or JSON-escaped (\u...).
    if not isinstance(message, str) or ('"event"' not in message and "\\u" not in message):
        return message
    frame = _loads_object(message)
    if frame is None or frame.get("type") != "event" or not isinstance(frame.get("id"), str):
        return message
    return ServerEvent(frame["id"], frame.get("data"))


@attrs.define(eq=False)
class ResumeHandshake:
    """The client's side of one resume handshake.

    Create one per connection with the client's current ``lastEventId``, send
    :meth:`frame`, then feed every received message to :meth:`receive` until
    :attr:`result` is set.

    Attributes:
        last_event_id: The id the client had when the handshake started.
        result: ``None`` until ``ready`` arrives.
    """

    last_event_id: str | None
    result: HandshakeResult | None = None
    _replayed: int = 0
    _snapshot: bool = False

    def frame(self) -> str:
        """The resume frame to send first."""
        return encode_resume(self.last_event_id)

    def receive(self, message: str | bytes) -> ServerEvent | Snapshot | Gap | None:
        """Feed one received message.

        Returns:
            The item to deliver to the application, if any. When ``ready``
            says events were lost, that item is a :class:`Gap`.

        Raises:
            ResumeProtocolError: for a malformed frame, a frame of unknown
                type, a frame out of order, or any message after ``ready``.
        """
        if self.result is not None:
            raise ResumeProtocolError("handshake already finished")
        frame = _loads_object(message)
        if frame is None:
            raise ResumeProtocolError(f"handshake frame is not a JSON object: {_quote(message)}")
        kind = frame.get("type")
        if kind == "event":
            if not isinstance(frame.get("id"), str):
                raise ResumeProtocolError(f"event without a string id: {_quote(message)}")
            self._replayed += 1
            return ServerEvent(frame["id"], frame.get("data"))
        if kind == "snapshot":
            if "id" not in frame or not _is_id(frame["id"]):
                raise ResumeProtocolError(f"snapshot without an id: {_quote(message)}")
            if self._snapshot or self._replayed:
                raise ResumeProtocolError("snapshot after a snapshot or replayed events")
            self._snapshot = True
            return Snapshot(frame["id"], frame.get("data"))
        if kind == "ready":
            return self._ready(frame, message)
        raise ResumeProtocolError(f"unknown frame type before ready: {_quote(message)}")

    def _ready(self, frame: dict[str, Any], message: str | bytes) -> Gap | None:
        lost = frame.get("lost", False)
        if "id" not in frame or not _is_id(frame["id"]) or not isinstance(lost, bool):
            raise ResumeProtocolError(f"malformed ready frame: {_quote(message)}")
        if lost:
            outcome = HandshakeOutcome.LOST
        elif self._snapshot:
            outcome = HandshakeOutcome.SNAPSHOT
        elif self._replayed or self.last_event_id is not None:
            outcome = HandshakeOutcome.REPLAYED
        else:
            outcome = HandshakeOutcome.FRESH
        self.result = HandshakeResult(outcome, self._replayed, frame["id"])
        return Gap(self.last_event_id, frame["id"]) if lost else None


@attrs.define(eq=False)
class RecentIds:
    """The ids of the most recent deliveries, to drop duplicates (bounded).

    Ids are opaque, so order is never compared: an event whose id is among the
    last ``size`` delivered is a duplicate (for example across a replay
    boundary), anything else is new.

    Args:
        size: How many ids to remember (at least 1).
    """

    size: int
    _order: collections.deque[str] = attrs.field(init=False, factory=collections.deque)
    _members: set[str] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size!r}")

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; return ``False`` if it was already there (a duplicate)."""
        if event_id in self._members:
            return False
        self._order.append(event_id)
        self._members.add(event_id)
        if len(self._order) > self.size:
            self._members.discard(self._order.popleft())
        return True

    def clear(self) -> None:
        """Forget every id.

        The client calls it when it delivers a :class:`Snapshot` or a
        :class:`Gap`: the server's order starts again from that ``ready`` id,
        so an id seen before (perhaps reissued by a server that lost its
        log) is not a duplicate any more. The client then adds the id it starts
        again from (the snapshot's, the gap's ``ready_id``), which counts
        as delivered.
        """
        self._order.clear()
        self._members.clear()

    def __len__(self) -> int:
        return len(self._order)
