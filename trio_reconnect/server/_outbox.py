"""A client's bounded outgoing queue: live events and application messages, in order.

The fan-out puts events without waiting (:meth:`Outbox.put_many_nowait`: a
client whose queue cannot take them is too slow), the application's
:meth:`~trio_reconnect.server.ConnectedClient.send` waits for room
(:meth:`Outbox.put_many`, one frame or several), and the
connection's write loop takes several frames at once
(:meth:`Outbox.get_many`) to write them in one ``send_all``. The frames
taken but not written yet still count against the size (but the one being
written). The persistent filter (:func:`~trio_reconnect.server._verdicts.uncovered`)
drops the events a handshake already sent, here as everywhere.

The reader need not wait on the queue: it may leave while there is nothing
to take (:meth:`Outbox.wanted` is false) and be started again by
``on_readable``, called whenever frames arrive or :meth:`Outbox.wake` is
called (the connection's write loop runs only while it has work).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from ._verdicts import Frame, uncovered

__all__ = ["Outbox"]


class Outbox:
    """A client's bounded outgoing queue (a list, woken through parking lots)."""

    __slots__ = (
        "_closed",
        "_held",
        "_items",
        "_on_readable",
        "_readable",
        "_size",
        "_taken",
        "_woken",
        "_writable",
    )

    def __init__(self, size: int, on_readable: Callable[[], None] | None = None) -> None:
        # A list, not a deque: an empty deque holds a 64-slot block (760 bytes per
        # idle client), an empty list nothing; the reader takes the whole queue
        # at once but for batches over its limit, and a cleared list frees its slots.
        self._items: list[Frame] = []
        #: Called when frames arrive or :meth:`wake` is called (the reader may be gone).
        self._on_readable = on_readable
        self._size = size
        self._closed = False
        #: Frames taken by :meth:`get_many` and not yet written, but the first.
        self._held = 0
        #: Whether :meth:`get_many` returned frames not yet :meth:`written`.
        self._taken = False
        #: Whether :meth:`wake` asked the reader to come back with nothing.
        self._woken = False
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        """Frames queued, and taken for a batch but not written yet (all but the first)."""
        return len(self._items) + self._held

    def idle(self) -> bool:
        """Nothing queued, and no frames taken by the reader but not yet written."""
        return not self._items and not self._taken

    def wanted(self) -> bool:
        """Whether :meth:`get_many` would return at once: frames queued, or a :meth:`wake`."""
        return bool(self._items) or self._woken

    def wake(self) -> None:
        """Make the reader's :meth:`get_many` return (empty-handed if nothing is queued)."""
        self._woken = True
        self._readable_now()

    def _readable_now(self) -> None:
        self._readable.unpark()
        if self._on_readable is not None:
            self._on_readable()

    def put_many_nowait(self, frames: Sequence[Frame]) -> bool:
        """Queue ``frames``; ``False`` if they do not all fit. Closed: dropped."""
        if self._closed:
            return True
        if len(self._items) + self._held + len(frames) > self._size:
            return False
        self._items.extend(frames)
        self._readable_now()
        return True

    async def put_many(self, frames: Sequence[Frame]) -> bool:
        """Queue ``frames`` in order, waiting for room; ``False`` if the queue is closed.

        One checkpoint for all of them when they fit (the reader then takes
        them in one batch); otherwise as many as fit at a time. Cancelled
        while it waits for room, the frames queued so far stay queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        items = self._items
        start = 0
        while start < len(frames):
            while len(items) + self._held >= self._size and not self._closed:
                await self._writable.park()
            if self._closed:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return False
            room = self._size - len(items) - self._held
            items.extend(frames[start : start + room])
            start += room
            self._readable_now()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return True

    async def get_many(self, limit: int) -> list[Frame]:
        """The oldest frames, at most ``limit`` of them, waiting for one (or a :meth:`wake`).

        All but the first still count against the size until :meth:`written`.
        An empty list: :meth:`wake` was called and nothing is queued.

        Raises:
            trio.EndOfChannel: once the queue is closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        items = self._items
        while not items:
            if self._closed:
                raise trio.EndOfChannel
            if self._woken:
                self._woken = False
                await trio.lowlevel.cancel_shielded_checkpoint()
                return []
            await self._readable.park()
        if self._closed:
            raise trio.EndOfChannel
        self._woken = False
        self._taken = True
        if len(items) <= limit:
            frames = items.copy()
            items.clear()
        else:
            frames = items[:limit]
            del items[:limit]
        self._held = len(frames) - 1
        self._writable.unpark()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return frames

    def written(self) -> None:
        """The frames :meth:`get_many` returned were written (or dropped)."""
        self._taken = False
        if self._held:
            self._held = 0
            self._writable.unpark_all()

    def drop_events_through(self, seq: int) -> None:
        """Drop the queued events at or below ``seq`` (messages stay, in order)."""
        items = self._items
        kept = uncovered(items, seq)
        if len(kept) != len(items):
            items.clear()
            items.extend(kept)
            self._writable.unpark_all()

    def close(self) -> None:
        """Drop everything queued and wake every waiter."""
        self._closed = True
        self._items.clear()
        self._readable.unpark_all()
        self._writable.unpark_all()
