"""The client's outbox of acknowledged publishes (PROTOCOL.md 4.5), sans IO.

Pure: no trio, no clock. The driver asks it what to send and tells it what the
server answered; the outbox keeps every publish that has neither an ``ack`` nor
a final ``nack``. The rules, stated once:

* **Ids.** Each publish takes the next value of a :class:`MsgIdCounter` when it
  enters the outbox (never while it waits for room), so msgIds follow the
  order of the publishes. The counter is kept as a decimal string
  (:meth:`MsgIdCounter.dump`/:meth:`MsgIdCounter.load`): an application that
  persists it with its ``clientId`` never reuses a msgId after a restart.
* **Bound.** The outbox holds at most ``max_bytes`` bytes of publish frames
  (each frame's UTF-8 size, as sent). A publish that does not fit waits
  (:meth:`Outbox.add` returns ``None``); one larger than ``max_bytes`` could
  never fit and is refused at once (:class:`ValueError`), as is data that is
  not JSON.
* **Order.** :meth:`Outbox.take_unsent` gives every publish not yet sent on
  this connection, oldest first, and marks it sent; it stops at the first
  held publish (below): nothing newer overtakes it. After a drop
  (:meth:`Outbox.connection_lost`) every publish counts as unsent again, so the
  first ``take_unsent`` after the next ``ready`` (and the application's
  ``on_connect``) re-sends everything pending in its original order, with the
  same msgIds.
* **Answers.** An ``ack`` or a final ``nack`` (``forbidden``, ``invalid``,
  ``too_large``) removes its publish and frees its bytes. ``unavailable``
  keeps it, held: not re-sent on this connection until the driver
  :meth:`Outbox.release`\\s it after its backoff (the reconnect schedule at the
  publish's :meth:`Outbox.attempts`; the driver times the oldest held
  publish, :meth:`Outbox.oldest_held`), and re-sent with everything else
  after the next ``ready``, whichever comes first. The server answers every
  publish sent after an ``unavailable`` ``unavailable`` too, until the held
  one is sent again (PROTOCOL.md 4.5), so a release re-sends the held
  publish **and every newer one**, in order, even those sent but not yet
  answered; each publish counts its copies in flight, and an ``unavailable``
  for a copy older than the last one sent changes nothing (the last copy's
  answer decides). An answer for a msgId not in the outbox (a late answer to
  a second send, a hostile server) or naming another channel than the
  publish's changes nothing.
* **Withdrawal.** A publish never sent (its caller was cancelled while it
  waited offline) can be withdrawn (:meth:`Outbox.withdraw`); once sent it
  stays until answered, since the server may have applied it.
* **Persisting.** :meth:`Outbox.saved` is what an application keeps to
  re-send its pending publishes after its own restart (:class:`OutboxState`,
  with the ``clientId`` and the counter: same msgIds, so the server's dedupe
  applies each once); :meth:`Outbox.from_state` puts them back, in order.
* **Ends.** On a version 1 server (``unsupported``) :meth:`Outbox.fail_all`
  empties the outbox and returns every publish to fail, in order. When the
  client gives up the driver fails every waiting publish but keeps them here
  (:meth:`Outbox.saved` still has them, to persist).
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from ._validators import check_int
from ._wire import (
    Ack,
    Nack,
    Publish,
    channel_problem,
    client_id_problem,
    compact_json,
    msg_id_problem,
)

__all__ = [
    "DEFAULT_OUTBOX_BYTES",
    "MsgIdCounter",
    "Outbox",
    "OutboxState",
    "OutboxStatistics",
    "PendingPublish",
    "SavedPublish",
]

#: Default bound of the outbox, in bytes of publish frames: 1 MiB holds a
#: thousand 1 KB publishes (several seconds of a chatty client's traffic over
#: a drain window) and stays small beside the websocket's own 1 MiB message limit.
DEFAULT_OUTBOX_BYTES: Final = 1 << 20


@attrs.define(eq=False)
class MsgIdCounter:
    """The msgIds of one ``clientId``: ``"0"``, ``"1"``, ...

    Args:
        next_value: The value the next msgId takes (non-negative).
    """

    next_value: int = 0

    def __attrs_post_init__(self) -> None:
        check_int("next_value", self.next_value, minimum=0)

    def take(self) -> str:
        """The next msgId."""
        value = str(self.next_value)
        self.next_value += 1
        return value

    def dump(self) -> str:
        """The counter's state, to persist."""
        return str(self.next_value)

    @classmethod
    def load(cls, text: str) -> MsgIdCounter:
        """A counter from what :meth:`dump` gave.

        Raises:
            ValueError: ``text`` is not a non-negative decimal integer.
        """
        if not text.isascii() or not text.isdecimal():
            raise ValueError(f"a msgId counter is a non-negative decimal integer, got {text!r}")
        return cls(int(text))


@attrs.frozen
class PendingPublish:
    """One publish in the outbox.

    Attributes:
        msg_id: Its msgId.
        channel: Its channel.
        data: Its data.
        frame: The ``publish`` frame, as sent (and re-sent).
        size: The frame's size in bytes of UTF-8.
    """

    msg_id: str
    channel: str
    data: Any = attrs.field(eq=False)
    frame: str = attrs.field(repr=False)
    size: int

    @classmethod
    def of(cls, publish: Publish) -> PendingPublish:
        """The entry for ``publish``.

        Raises:
            ValueError: its data is not JSON (NaN, Infinity, another type, a
                lone surrogate).
        """
        compact_json(publish.data)  # what the server would call invalid fails here
        frame = publish.encode()
        return cls(publish.msg_id, publish.channel, publish.data, frame, len(frame.encode()))


@attrs.frozen
class SavedPublish:
    """One pending publish, as persisted.

    Attributes:
        channel: Its channel.
        msg_id: Its msgId.
        data: Its data (any JSON value).
    """

    channel: str
    msg_id: str
    data: Any


@attrs.frozen
class OutboxState:
    """What an application persists to publish exactly once across its own restarts.

    Get it with ``ws.outbox_state()``, keep it (:meth:`to_json` gives a JSON
    object), and hand it back with ``open_reconnecting_websocket(...,
    outbox=OutboxState.from_json(...))``: the client takes its ``clientId``,
    continues its msgId counter and re-sends its publishes first, with the
    same msgIds, so the server applies each once (within its dedupe TTL).

    Attributes:
        client_id: The ``clientId`` the msgIds belong to.
        next_msg_id: The msgId counter's state (:meth:`MsgIdCounter.dump`).
        publishes: The publishes without an answer, oldest first.
    """

    client_id: str
    next_msg_id: str = "0"
    publishes: tuple[SavedPublish, ...] = ()

    def __attrs_post_init__(self) -> None:
        problems = [client_id_problem(self.client_id)]
        for entry in self.publishes:
            problems += [channel_problem(entry.channel), msg_id_problem(entry.msg_id)]
        problem = next((p for p in problems if p is not None), None)
        if problem is not None:
            raise ValueError(f"outbox state: {problem}")
        if not isinstance(self.next_msg_id, str):
            raise ValueError("outbox state: next_msg_id must be a string")
        counter = MsgIdCounter.load(self.next_msg_id).next_value
        for entry in self.publishes:
            if entry.msg_id.isascii() and entry.msg_id.isdecimal() and int(entry.msg_id) >= counter:
                raise ValueError(
                    f"outbox state: msgId {entry.msg_id!r} is not below the counter {counter}"
                )

    def to_json(self) -> dict[str, Any]:
        """A JSON object of the state (for :meth:`from_json`)."""
        return {
            "clientId": self.client_id,
            "nextMsgId": self.next_msg_id,
            "publishes": [
                {"channel": p.channel, "msgId": p.msg_id, "data": p.data} for p in self.publishes
            ],
        }

    @classmethod
    def from_json(cls, value: Any) -> OutboxState:
        """The state :meth:`to_json` gave.

        Raises:
            ValueError: ``value`` is not such an object (a bad ``clientId``,
                channel, msgId or counter).
        """
        try:
            publishes = [
                SavedPublish(p["channel"], p["msgId"], p["data"]) for p in value["publishes"]
            ]
            return cls(value["clientId"], value["nextMsgId"], tuple(publishes))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a saved outbox state: {exc!r}") from None


@attrs.frozen
class OutboxStatistics:
    """What the outbox holds now.

    Attributes:
        pending: Publishes without an ``ack`` or a final ``nack``.
        held: Of those, the ones held after ``unavailable``.
        bytes: Their frames' bytes.
        max_bytes: The bound.
        resent: Publishes sent again (after a drop or an ``unavailable``),
            counted per copy, since the outbox was made.
    """

    pending: int
    held: int
    bytes: int
    max_bytes: int
    resent: int = 0


@attrs.define(eq=False)
class _Entry:
    publish: PendingPublish
    sent: bool = False
    held: bool = False
    attempts: int = 0
    #: Copies sent on this connection and not answered yet.
    in_flight: int = 0
    #: Sent at least once, on any connection.
    ever_sent: bool = False


@attrs.define(eq=False)
class Outbox:
    """Publishes waiting for their ``ack`` (the rules are at the top of the module).

    Args:
        max_bytes: The bound, in bytes of publish frames (at least 1).
        msg_ids: Where msgIds come from (a fresh counter by default).
    """

    max_bytes: int = DEFAULT_OUTBOX_BYTES
    msg_ids: MsgIdCounter = attrs.field(factory=MsgIdCounter)
    _entries: dict[str, _Entry] = attrs.field(init=False, factory=dict)
    _bytes: int = attrs.field(init=False, default=0)
    #: Copies sent again (a publish sent before, on any connection).
    resent: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        check_int("max_bytes", self.max_bytes, minimum=1)

    def add(self, channel: str, data: Any) -> PendingPublish | None:
        """A new publish, with the next msgId; ``None`` (nothing taken) when it must wait.

        Raises:
            ValueError: ``data`` is not JSON, or the frame alone is larger than
                ``max_bytes``.
        """
        msg_id = str(self.msg_ids.next_value)
        entry = PendingPublish.of(Publish(channel, msg_id, data))
        if not self._room(entry):
            return None
        self.msg_ids.take()
        self._put(entry)
        return entry

    def restore(self, entry: PendingPublish) -> bool:
        """Put back a publish persisted by an earlier process (same msgId); ``False``: wait.

        Raises:
            ValueError: its msgId is already in the outbox, or it is larger
                than ``max_bytes``.
        """
        if entry.msg_id in self._entries:
            raise ValueError(f"msgId {entry.msg_id!r} is already in the outbox")
        if not self._room(entry):
            return False
        self._put(entry)
        return True

    def _room(self, entry: PendingPublish) -> bool:
        if entry.size > self.max_bytes:
            raise ValueError(
                f"a publish of {entry.size} bytes never fits an outbox of {self.max_bytes}"
            )
        return self._bytes + entry.size <= self.max_bytes

    def _put(self, entry: PendingPublish) -> None:
        self._entries[entry.msg_id] = _Entry(entry)
        self._bytes += entry.size

    def take_unsent(self) -> list[PendingPublish]:
        """Every publish to send now, oldest first, up to the first held one; marked sent."""
        out = []
        for entry in self._entries.values():
            if entry.held:
                break
            if not entry.sent:
                self.resent += entry.ever_sent
                entry.sent = entry.ever_sent = True
                entry.in_flight += 1
                out.append(entry.publish)
        return out

    def ack(self, ack: Ack) -> PendingPublish | None:
        """Apply an ``ack``; return the publish it completes (``None``: none here)."""
        return self._remove(ack.msg_id, ack.channel)

    def nack(self, nack: Nack) -> PendingPublish | None:
        """Apply a ``nack``; return its publish (``None``: none here).

        A final code removes the publish (the driver fails it); ``unavailable``
        holds it for a re-send.
        """
        if nack.msg_id is None or nack.channel is None:
            return None
        if nack.code.final:
            return self._remove(nack.msg_id, nack.channel)
        entry = self._entries.get(nack.msg_id)
        if entry is None or entry.publish.channel != nack.channel:
            return None
        entry.in_flight = max(0, entry.in_flight - 1)
        if entry.in_flight == 0:  # else: a newer copy is on its way, its answer decides
            entry.sent = False
            entry.held = True
            entry.attempts += 1
        return entry.publish

    def _remove(self, msg_id: str, channel: str) -> PendingPublish | None:
        entry = self._entries.get(msg_id)
        if entry is None or entry.publish.channel != channel:
            return None
        del self._entries[msg_id]
        self._bytes -= entry.publish.size
        return entry.publish

    def attempts(self, msg_id: str) -> int:
        """How many ``unavailable`` answers the publish had (its backoff's attempt number)."""
        entry = self._entries.get(msg_id)
        return 0 if entry is None else entry.attempts

    def oldest_held(self) -> PendingPublish | None:
        """The oldest publish held after ``unavailable`` (whose backoff the driver times)."""
        for entry in self._entries.values():
            if entry.held:
                return entry.publish
        return None

    def release(self, msg_id: str) -> None:
        """Its backoff is over: the next :meth:`take_unsent` re-sends it and every newer publish.

        Nothing changes unless ``msg_id`` is held.
        """
        entry = self._entries.get(msg_id)
        if entry is None or not entry.held:
            return
        after = False
        for other in self._entries.values():
            after = after or other is entry
            if after:
                other.held = other.sent = False

    def withdraw(self, msg_id: str) -> bool:
        """Remove a publish that was never sent; ``False`` (kept) if it was, or is unknown."""
        entry = self._entries.get(msg_id)
        if entry is None or entry.ever_sent:
            return False
        return self._remove(msg_id, entry.publish.channel) is not None

    def connection_lost(self) -> None:
        """The connection dropped: every publish counts as unsent and none is held."""
        for entry in self._entries.values():
            entry.sent = entry.held = False
            entry.in_flight = 0

    def fail_all(self) -> list[PendingPublish]:
        """Empty the outbox; return every publish, oldest first, to fail."""
        out = [entry.publish for entry in self._entries.values()]
        self._entries.clear()
        self._bytes = 0
        return out

    @classmethod
    def from_state(cls, state: OutboxState, max_bytes: int = DEFAULT_OUTBOX_BYTES) -> Outbox:
        """An outbox holding ``state``'s publishes, its counter continued.

        Raises:
            ValueError: they do not fit ``max_bytes``, a msgId is repeated, or
                data is not JSON.
        """
        outbox = cls(max_bytes, MsgIdCounter.load(state.next_msg_id))
        for saved in state.publishes:
            entry = PendingPublish.of(Publish(saved.channel, saved.msg_id, saved.data))
            if not outbox.restore(entry):
                raise ValueError(
                    f"the saved publishes do not fit an outbox of {max_bytes} bytes (outbox_bytes)"
                )
        return outbox

    def saved(self, client_id: str) -> OutboxState:
        """What to persist now (see :class:`OutboxState`)."""
        publishes = tuple(SavedPublish(p.channel, p.msg_id, p.data) for p in self.pending())
        return OutboxState(client_id, self.msg_ids.dump(), publishes)

    def pending(self) -> list[PendingPublish]:
        """Every publish without an answer, oldest first (to persist)."""
        return [entry.publish for entry in self._entries.values()]

    def __len__(self) -> int:
        return len(self._entries)

    def statistics(self) -> OutboxStatistics:
        """What the outbox holds now."""
        held = sum(1 for entry in self._entries.values() if entry.held)
        return OutboxStatistics(len(self._entries), held, self._bytes, self.max_bytes, self.resent)
