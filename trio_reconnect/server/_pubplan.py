"""One connection's acknowledged publishes: the queue, the order rule R3, the batch cut. Pure.

PROTOCOL.md 4.5 and benchmarks/v2_design/DESIGN.md 5.3. A version 2
connection's publishes enter a :class:`PublishQueue` in the order received:
a valid one as :class:`Pending`, one already decided (``invalid``,
``too_large``, ``forbidden``) as :class:`Answered`, so answers leave in the
order the publishes came. One worker per connection takes the longest
prefix (:meth:`PublishQueue.cut`, at most :data:`MAX_BATCH`), hands its
pending publishes to the store in ONE call, and turns what ran into answers
(:meth:`PublishQueue.settle`), before it takes the next prefix.

The rules, each in one place here:

* **R1** a connection's publishes are applied in the order received, one
  batch at a time, stopping at the first failure (the store's contract).
* **R3** after a publish is answered ``unavailable``, every later publish of
  the connection is answered ``unavailable`` too, until one arrives with
  that first msgId (the client's re-send starts). The gate is applied in
  queue order, so a publish received before the failure is never overtaken.
* **Bounds**: at most ``max_items`` entries and ``max_bytes`` of payload
  queued (an empty queue takes any one publish). A publish beyond them is
  answered ``unavailable`` and starts R3: the queue gets one marker entry
  for it (in order), later publishes are answered at once (:meth:`offer`
  returns the nack) until a re-send R3 waits for (that msgId, or an
  earlier one the store failed) finds room.
* **Batch cut**: the worker cuts once the queue holds :data:`GATHER_BATCH`
  publishes or has stopped growing for :data:`GATHER_IDLE_PASSES` passes
  of the scheduler (:func:`gather_more`), and takes everything queued, up
  to :data:`MAX_BATCH`: the publishes already received go in one store
  call, and those received while a call was in flight go together in the
  next (a group commit: the slower the store or the busier the node, the
  fewer calls per publish). When it cuts changes no order and no answer,
  only how many publishes share a call.
* **Dedupe key** (:func:`dedupe_key`): a digest of (principal, clientId,
  msgId), recorded by the store per channel; the (principal, clientId)
  part is digested once per connection (:func:`key_base`).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import attrs

from .._wire import Ack, Nack, NackCode, Publish
from ._channelbase import PublishResult

__all__ = [
    "GATHER_BATCH",
    "GATHER_IDLE_PASSES",
    "MAX_BATCH",
    "MAX_QUEUED",
    "MAX_QUEUED_BYTES",
    "Answered",
    "Cut",
    "Pending",
    "PublishQueue",
    "dedupe_key",
    "gather_more",
    "key_base",
    "unavailable",
]

#: Publishes one store call applies at most (a Redis script of 256 holds Redis about 2 ms).
MAX_BATCH: Final = 256
#: Publishes queued at which the worker stops gathering and cuts (:func:`gather_more`).
GATHER_BATCH: Final = 64
#: Scheduler passes without a new entry after which the worker cuts a batch (:func:`gather_more`).
GATHER_IDLE_PASSES: Final = 3
#: Publishes (and decided answers) one connection may have queued.
MAX_QUEUED: Final = 16_384
#: Bytes of compact data one connection may have queued.
MAX_QUEUED_BYTES: Final = 2 * 1024 * 1024


def key_base(principal: Any, client_id: str) -> hashlib.blake2b:
    """The digest state of (principal, clientId), once per connection (:func:`dedupe_key`).

    The principal counts by its ``str()`` (``None``: anonymous), so it must
    name the same identity on every node (a user id, not an object's address).
    """
    who = None if principal is None else str(principal)
    raw = json.dumps([who, client_id], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16)


def dedupe_key(base: hashlib.blake2b, msg_id: str) -> str:
    """The dedupe key of a publish: a hex digest of (principal, clientId, msgId).

    ``base`` is :func:`key_base`'s; its JSON array delimits itself, so the
    msgId's bytes follow it unambiguously.
    """
    digest = base.copy()
    digest.update(msg_id.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def gather_more(queued: int, idle_passes: int, limit: int = GATHER_BATCH) -> bool:
    """Whether the worker lets the scheduler run once more before it cuts a batch.

    ``queued``: entries queued now; ``idle_passes``: passes in a row that
    queued nothing. A pipelining client's publishes reach the queue one per
    pass or two (trio-websocket's reader hands over one message at a time),
    while the store answers within a few passes: cut at once, batches of
    5-10 would pay the store call, the notifications and the ack write
    that often. So the worker waits while the read loop is still queueing
    what it received, until ``limit`` (:data:`GATHER_BATCH`) are queued or
    :data:`GATHER_IDLE_PASSES` passes bring nothing. A lone publish waits
    that many passes (no clock). What arrived while the previous call was
    in flight is often more: the cut takes it all, up to :data:`MAX_BATCH`.
    """
    return 0 < queued < limit and idle_passes < GATHER_IDLE_PASSES


def unavailable(publish: Publish, reason: str) -> Nack:
    """The ``unavailable`` nack of ``publish``."""
    return Nack(publish.msg_id, publish.channel, NackCode.UNAVAILABLE, reason)


@attrs.frozen
class Pending:
    """A valid publish waiting for the store, with its :func:`dedupe_key`."""

    publish: Publish
    key: str

    @property
    def size(self) -> int:
        """Bytes it holds in the queue (its compact data)."""
        return len(self.publish.compact)


@attrs.frozen
class Answered:
    """A publish whose answer is decided; ``blocks``: an ``unavailable`` that starts R3."""

    nack: Nack
    blocks: bool = False


Entry = Pending | Answered


@attrs.frozen
class Cut:
    """A prefix taken from the queue: per entry its answer or its index in ``items``."""

    slots: Sequence[Nack | int]
    items: Sequence[Pending]


@attrs.define(eq=False)
class PublishQueue:
    """One connection's queued publishes and its R3 state (the module comment)."""

    max_items: int = MAX_QUEUED
    max_bytes: int = MAX_QUEUED_BYTES
    _entries: deque[Entry] = attrs.field(init=False, factory=deque)
    _bytes: int = attrs.field(init=False, default=0)
    #: R3 in queue order: the first msgId answered ``unavailable`` (``None``: open).
    _blocked_on: str | None = attrs.field(init=False, default=None)
    #: The msgId answered ``unavailable`` for a full queue, until its re-send finds room.
    _overflow: str | None = attrs.field(init=False, default=None)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def queued_bytes(self) -> int:
        """Bytes of compact data queued now."""
        return self._bytes

    @property
    def blocked_on(self) -> str | None:
        """The msgId R3 waits for (``None``: publishes are applied)."""
        return self._blocked_on

    def _full(self, size: int) -> bool:
        if len(self._entries) >= self.max_items:
            return True
        return self._bytes > 0 and self._bytes + size > self.max_bytes

    def offer(self, entry: Entry) -> Nack | None:
        """Queue one received publish; or return the nack to send at once (queue full, R3)."""
        if isinstance(entry, Answered):
            if self._overflow is not None or len(self._entries) >= self.max_items:
                return entry.nack  # final: its place among the answers does not matter
            self._entries.append(entry)
            return None
        publish = entry.publish
        if self._overflow is not None:
            awaited = publish.msg_id in (self._overflow, self._blocked_on)
            if not awaited or self._full(entry.size):
                return unavailable(publish, "too many publishes queued")
            self._overflow = None  # a re-send R3 waits for: in order again
        elif self._full(entry.size):
            self._overflow = publish.msg_id
            self._entries.append(Answered(unavailable(publish, "too many publishes queued"), True))
            return None
        self._entries.append(entry)
        self._bytes += entry.size
        return None

    def cut(self, limit: int = MAX_BATCH) -> Cut:
        """Take the longest prefix holding at most ``limit`` publishes for the store."""
        slots: list[Nack | int] = []
        items: list[Pending] = []
        entries = self._entries
        while entries and len(items) < limit:
            entry = entries.popleft()
            if isinstance(entry, Answered):
                slots.append(entry.nack)
                if entry.blocks and self._blocked_on is None:
                    self._blocked_on = entry.nack.msg_id
                continue
            self._bytes -= entry.size
            publish = entry.publish
            if self._blocked_on is not None:
                if publish.msg_id != self._blocked_on:
                    slots.append(unavailable(publish, "an earlier publish was not applied"))
                    continue
                self._blocked_on = None  # the re-send starts
            slots.append(len(items))
            items.append(entry)
        return Cut(slots, items)

    def settle(self, cut: Cut, results: Sequence[PublishResult]) -> list[Ack | Nack]:
        """The answers of ``cut``, in order, given the results of the prefix that ran.

        The first publish that did not run is answered ``unavailable`` and
        blocks (R3) every later one, including the rest of the cut.
        """
        ran = len(results)
        if ran < len(cut.items):
            self._blocked_on = cut.items[ran].publish.msg_id
        answers: list[Ack | Nack] = []
        for slot in cut.slots:
            if isinstance(slot, Nack):
                answers.append(slot)
            elif slot < ran:
                publish = cut.items[slot].publish
                answers.append(Ack(publish.msg_id, publish.channel, results[slot].id))
            else:
                answers.append(unavailable(cut.items[slot].publish, "store unavailable"))
        return answers
