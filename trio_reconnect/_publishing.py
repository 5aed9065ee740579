"""Acknowledged publishes on the client (PROTOCOL.md 4.5): the outbox's driver.

The rules are the pure :mod:`._outbox`'s; this module applies them with trio.
One :class:`Publisher` per client (``resume=True``) holds the
:class:`~._outbox.Outbox` and a waiter per publish. Its parts:

* :meth:`Publisher.publish` (``ws.publish``, ``sub.publish``) puts a publish
  in the outbox, waiting in call order while the outbox is full, and waits
  for its answer: the event id of its ``ack``, or
  :class:`~trio_reconnect.PublishRefused` for a final ``nack``.
* :meth:`Publisher.after_ready`, the handshake's step after ``on_connect``
  (:class:`~._handshake.ResendStep`): on a
  version 2 connection it sends every pending publish (after a drop: all of
  them, same msgIds, same order) before the gate opens, so before anything
  the application sends; on a version 1 connection every pending publish
  fails with code ``unsupported``.
* :meth:`Publisher.pump`, a task per ready connection: it sends new
  publishes (those waiting together in one write, at most 64, through
  :func:`~._tws.write_batch`; one ``send_message`` each without
  trio-websocket's internals), and re-sends after an ``unavailable`` once the oldest held
  publish's backoff is over (the client's backoff policy at that publish's
  count of ``unavailable`` answers).
* :meth:`Publisher.answer`: the connection's reader hands it every ``ack``
  and ``nack`` (never waits).

Cancellation: a ``publish`` cancelled while it waits for room takes nothing;
cancelled after it entered the outbox, its publish is withdrawn if it was
never sent, and otherwise stays and is re-sent until answered (the server
may have applied it: withdrawing it would lose exactly-once); its answer is
then only logged (DEBUG; a final ``nack`` at WARNING), as are the answers of
publishes restored from an :class:`~._outbox.OutboxState`.
"""

from __future__ import annotations

import logging
import math
import random as _random
from collections.abc import Callable
from typing import Any, Final

import attrs
import trio
import trio_websocket

from ._backoff import Backoff, RetryPolicy
from ._channel import UNSUPPORTED_REASON
from ._directsend import FlushingTurn
from ._exceptions import PublishRefused
from ._outbox import Outbox, OutboxStatistics, PendingPublish
from ._tws import can_write_batch, send_lock, write_batch
from ._wire import Ack, Nack, NackCode, channel_problem

__all__ = ["Publisher"]

logger = logging.getLogger("trio_reconnect")

#: Publish frames the pump writes at most in one write.
_SEND_BATCH: Final = 64


@attrs.define(eq=False)
class _Waiter:
    """One ``publish`` call waiting for its answer."""

    done: trio.Event = attrs.field(factory=trio.Event)
    result: str | BaseException | None = None

    def settle(self, result: str | BaseException) -> None:
        self.result = result
        self.done.set()


@attrs.define(eq=False)
class Publisher:
    """The publishes of one client (see the module's rules).

    Args:
        outbox: The outbox (with a restored state, or fresh).
        backoff: The policy that paces the re-sends after ``unavailable``.
        random: The randomness of that policy's jitter.
        display: The server, for log lines.
    """

    outbox: Outbox = attrs.field(factory=Outbox)
    backoff: RetryPolicy | None = None
    random: _random.Random = attrs.field(factory=_random.Random)
    display: str = ""
    #: Called when a publish has entered the outbox (the inbox's reader may
    #: now buffer past ``max_queue``: :mod:`._overflow`).
    entered: Callable[[], None] = attrs.field(default=lambda: None, kw_only=True)
    #: The ready connection (``None`` before ``ready`` and after its loss).
    ws: trio_websocket.WebSocketConnection | None = attrs.field(init=False, default=None)
    #: Whether that connection's server speaks version 2.
    v2: bool = attrs.field(init=False, default=False)
    _waiters: dict[str, _Waiter] = attrs.field(init=False, factory=dict)
    _room: trio.Event = attrs.field(init=False, factory=trio.Event)
    _room_turn: trio.Lock = attrs.field(init=False, factory=trio.Lock)
    _empty: trio.Event = attrs.field(init=False, factory=trio.Event)
    _wake: trio.Event = attrs.field(init=False, factory=trio.Event)
    #: Publishes entered since the last take of the unsent ones.
    _fresh: int = attrs.field(init=False, default=0)
    #: The held publish whose backoff runs, and when it ends.
    _timed: str | None = attrs.field(init=False, default=None)
    _retry_at: float = attrs.field(init=False, default=math.inf)
    _previous_delay: float | None = attrs.field(init=False, default=None)
    _ended: BaseException | None = attrs.field(init=False, default=None)

    # ------------------------------------------------------------ application

    async def publish(self, channel: str, data: Any) -> str:
        """Publish ``data`` to ``channel``; the event id of its ``ack``.

        Raises:
            PublishRefused: a final ``nack``, or a version 1 server.
            ValueError: a bad channel name, data that is not JSON, or a
                publish larger than the outbox.
        """
        self._raise_if_ended()
        problem = channel_problem(channel)
        if problem is not None:
            raise ValueError(problem)
        if self.ws is not None and not self.v2:
            raise PublishRefused(channel, None, NackCode.UNSUPPORTED, UNSUPPORTED_REASON)
        entry = await self._enter(channel, data)
        waiter = self._waiters[entry.msg_id] = _Waiter()
        self._wake.set()
        self.entered()
        self._fresh += 1
        if self._fresh >= _SEND_BATCH:
            self._write_now()
        try:
            await waiter.done.wait()
        except BaseException:
            self._waiters.pop(entry.msg_id, None)
            if self.outbox.withdraw(entry.msg_id):
                self._freed()
            raise
        result = waiter.result
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result

    async def _enter(self, channel: str, data: Any) -> PendingPublish:
        """Put the publish in the outbox, waiting for room behind earlier waiters."""
        if not self._room_turn.locked():
            # No schedule point here: the caller's wait for the answer is one,
            # and a cancel there withdraws the publish (one taken here and
            # cancelled before its waiter existed would stay in the outbox).
            await trio.lowlevel.checkpoint_if_cancelled()
            entry = self.outbox.add(channel, data)
            if entry is not None:
                self._empty = trio.Event() if self._empty.is_set() else self._empty
                return entry
        async with self._room_turn:
            while True:
                self._raise_if_ended()
                entry = self.outbox.add(channel, data)
                if entry is not None:
                    self._empty = trio.Event() if self._empty.is_set() else self._empty
                    return entry
                await self._room.wait()

    def _write_now(self) -> None:
        """Write the unsent publishes from this task, if nobody writes (:mod:`._directsend`)."""
        ws = self.ws
        if ws is None or not self.v2:
            return
        turn = send_lock(ws)
        if not isinstance(turn, FlushingTurn) or not turn.can_write_now(ws):
            return
        self._fresh = 0
        entries = self.outbox.take_unsent()
        if entries:
            turn.write_now(ws, [entry.frame for entry in entries])
            if turn.has_left:
                self._wake.set()  # the pump takes the turn, which writes the rest

    def _raise_if_ended(self) -> None:
        if self._ended is not None:
            raise self._ended

    async def wait_empty(self) -> None:
        """Wait until every publish in the outbox has its answer."""
        while len(self.outbox):
            self._raise_if_ended()
            if self._empty.is_set():
                self._empty = trio.Event()
            await self._empty.wait()
        self._raise_if_ended()
        await trio.lowlevel.checkpoint()

    def pending(self) -> bool:
        """Whether a publish waits for its answer (the outbox is not empty)."""
        return len(self.outbox) > 0

    def statistics(self) -> OutboxStatistics:
        """What the outbox holds now."""
        return self.outbox.statistics()

    # ---------------------------------------------------------------- answers

    def answer(self, frame: Ack | Nack) -> None:
        """An ``ack`` or ``nack`` from the ready connection (never waits)."""
        if isinstance(frame, Ack):
            done = self.outbox.ack(frame)
            if done is not None:
                self._settle(done, frame.id)
                return
        else:
            done = self.outbox.nack(frame)
            if done is not None and frame.code.final:
                error = PublishRefused(done.channel, done.msg_id, frame.code, frame.reason)
                self._settle(done, error)
                return
            if done is not None:
                self._wake.set()  # the pump times the backoff
                return
        logger.debug("%s: %s for no publish in the outbox: ignored", self.display, frame)

    def _settle(self, entry: PendingPublish, result: str | PublishRefused) -> None:
        waiter = self._waiters.pop(entry.msg_id, None)
        if waiter is not None:
            waiter.settle(result)
        elif isinstance(result, PublishRefused):
            logger.warning("%s: %s (nobody waits for it)", self.display, result)
        else:
            logger.debug("%s: publish %s acked as %s", self.display, entry.msg_id, result)
        self._freed()

    def _freed(self) -> None:
        self._room.set()
        self._room = trio.Event()
        if not len(self.outbox):
            self._empty.set()

    # ------------------------------------------------------------------ sends

    async def after_ready(self, ws: trio_websocket.WebSocketConnection, v2: bool) -> None:
        """The handshake's last step: re-send what is pending (v2), or fail it (v1)."""
        self.ws = ws
        self.v2 = v2
        if not v2:
            self._fail_all(None)
            return
        await self._send_due(ws)

    async def pump(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Send what is due on the ready connection ``ws`` until it closes."""
        try:
            while True:
                self._wake = trio.Event()
                next_at = await self._send_due(ws)
                with trio.move_on_at(next_at):
                    await self._wake.wait()
        except trio_websocket.ConnectionClosed:
            return  # the reader sees the close too

    async def _send_due(self, ws: trio_websocket.WebSocketConnection) -> float:
        """Send every due publish; when the held one's backoff ends (inf: none held)."""
        if not self.v2:
            return math.inf
        while True:
            due = self._held_due()
            entries = self.outbox.take_unsent()
            self._fresh = 0
            if not entries:
                turn = send_lock(ws) if can_write_batch(ws) else None
                if isinstance(turn, FlushingTurn) and turn.has_left:
                    async with turn:  # taking it writes what a direct write left behind
                        pass
                return due
            if can_write_batch(ws):
                for start in range(0, len(entries), _SEND_BATCH):
                    batch = entries[start : start + _SEND_BATCH]
                    await write_batch(ws, [entry.frame for entry in batch])
            else:
                for entry in entries:
                    await ws.send_message(entry.frame)

    def _held_due(self) -> float:
        """Time the oldest held publish's backoff; release it once over."""
        held = self.outbox.oldest_held()
        if held is None:
            self._timed = None
            return math.inf
        if self._timed != held.msg_id:
            policy = self.backoff if self.backoff is not None else Backoff()
            delay = policy.delay(self.outbox.attempts(held.msg_id), self.random, None)
            self._timed = held.msg_id
            self._retry_at = trio.current_time() + delay
            logger.info(
                "%s: publish %s to %r unavailable; sending it again in %.3f s",
                self.display,
                held.msg_id,
                held.channel,
                delay,
            )
        if self._retry_at > trio.current_time():
            return self._retry_at
        self._timed = None
        self.outbox.release(held.msg_id)
        return math.inf

    # ------------------------------------------------------------- lifecycle

    def connection_lost(self) -> None:
        """The connection dropped (or its attempt failed): all is sent again after ``ready``."""
        self.ws = None
        self.v2 = False
        self._timed = None
        self.outbox.connection_lost()

    def _fail_all(self, error: BaseException | None) -> None:
        """Fail every pending publish: ``unsupported`` (removed), or the client's end (kept)."""
        entries = self.outbox.fail_all() if error is None else self.outbox.pending()
        for entry in entries:
            waiter = self._waiters.pop(entry.msg_id, None)
            failure = error or PublishRefused(
                entry.channel, entry.msg_id, NackCode.UNSUPPORTED, UNSUPPORTED_REASON
            )
            if waiter is not None:
                waiter.settle(failure)
            elif error is None:
                logger.warning("%s: %s (nobody waits for it)", self.display, failure)
        self._freed()

    def close(self, error: BaseException) -> None:
        """The client ended: every pending publish, and every later one, raises ``error``.

        The outbox keeps them (``ws.outbox_state()`` still has them, to persist).
        """
        self._ended = error
        self.ws = None
        self._fail_all(error)
        self._empty.set()
