"""A FIFO turn with no owner: one holder at a time, in call order.

Two locks of the client are a :class:`Turn`: the send turn of
``ReconnectingWebSocket.send_message`` (held while a sender waits for the
gate and sends again after a loss, so that the frames of concurrent senders
keep their order across reconnects), and trio-websocket's own send lock on
a client connection (``_stream_lock``, which serializes its ``_send``; see
:mod:`._attempt`).

``trio.StrictFIFOLock`` would do for both, but a trio lock also records its
owner task (so that a task that ends while holding it breaks it, and only
the owner may release it), which costs a ``current_task()`` and an entry in
the task's breaker list on every acquire and release; and its ``acquire``
is a schedule point even when the lock is free. A pipelined sender took the
two locks on every message. A turn is always given back in a ``finally``
(or an ``async with``), so it needs no owner; and what is done while
holding it checkpoints on its own (the write of a websocket frame is a
checkpoint), so ``async with`` takes a free turn without a schedule point.
It is still a cancellation point: a cancelled task never takes the turn.
"""

from __future__ import annotations

from types import TracebackType

import trio

__all__ = ["Turn"]


class Turn:
    """One holder at a time, handed over in call order."""

    __slots__ = ("_busy", "_waiting")

    def __init__(self) -> None:
        self._busy = False
        self._waiting = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        """Whether somebody holds the turn."""
        return self._busy

    @trio.lowlevel.enable_ki_protection
    def take_nowait(self) -> bool:
        """Take the turn if it is free and nobody waits for it (call order is kept)."""
        if self._busy or self._waiting:
            return False
        self._busy = True
        return True

    @trio.lowlevel.enable_ki_protection
    async def take(self) -> None:
        """Wait for the turn (a checkpoint either way)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.take_nowait():
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            await self._waiting.park()  # give_back() hands the turn over

    @trio.lowlevel.enable_ki_protection
    def give_back(self) -> None:
        """Hand the turn to the longest waiter, or free it."""
        if self._waiting:
            self._waiting.unpark()  # still busy: it is the woken waiter's now
        else:
            self._busy = False

    @trio.lowlevel.enable_ki_protection
    async def __aenter__(self) -> None:
        """Take the turn: at once if it is free (no schedule point), else wait for it.

        Raises:
            trio.Cancelled: if the task is cancelled (the turn is not taken).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.take_nowait():
            await self._waiting.park()

    @trio.lowlevel.enable_ki_protection
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.give_back()
