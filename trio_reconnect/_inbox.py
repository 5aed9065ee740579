"""The application's receive buffer: ordered across connections, bounded.

The supervisor's reader task puts items in; ``get_message`` takes them out.
Two ways in:

* :meth:`Inbox.put` waits while the buffer holds ``max_size`` items or more
  (backpressure), and counts each such stall, so that the pinger can tell a
  slow consumer from a dead server;
* :meth:`Inbox.put_nowait` never waits; the handshake uses it for the bounded
  burst of a replay, so that a slow consumer cannot make ``resume_timeout``
  expire.

Closing (:meth:`Inbox.close`) discards what is buffered; every pending and
later :meth:`Inbox.get` raises the given error.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

import attrs
import trio

T = TypeVar("T")

__all__ = ["Inbox"]


@attrs.define(eq=False)
class Inbox(Generic[T]):
    """A bounded FIFO of items with a terminal error."""

    max_size: int
    #: How many times :meth:`put` had to wait for the consumer.
    stalls: int = 0
    _send: trio.MemorySendChannel[T] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[T] = attrs.field(init=False)
    _queued: int = 0
    _space: trio.Event | None = None
    _error: BaseException | None = None

    def __attrs_post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {self.max_size!r}")
        self._send, self._receive = trio.open_memory_channel[T](math.inf)

    @property
    def stalled(self) -> bool:
        """Whether :meth:`put` is waiting for the consumer right now."""
        return self._space is not None

    def __len__(self) -> int:
        return self._queued

    def put_nowait(self, item: T) -> None:
        """Append ``item`` without waiting (dropped once closed)."""
        if self._error is None:
            self._send.send_nowait(item)
            self._queued += 1

    async def put(self, item: T) -> None:
        """Append ``item``, then wait while the buffer is full.

        There is one producer (the supervisor's reader): a second task calling
        this while the first waits would be a bug, and is refused.
        """
        if self._space is not None:
            raise RuntimeError("Inbox.put has a single producer; another one is waiting")
        self.put_nowait(item)
        await self.wait_for_room()

    async def wait_for_room(self) -> None:
        """Wait while the buffer holds ``max_size`` items or more (a stall)."""
        if self._space is not None:
            raise RuntimeError("Inbox.put has a single producer; another one is waiting")
        if self._queued >= self.max_size and self._error is None:
            self.stalls += 1
            self._space = space = trio.Event()
            try:
                await space.wait()
            finally:
                if self._space is space:  # cancelled while waiting: no producer waits now
                    self._space = None

    async def get(self) -> T:
        """The oldest item; waits for one. Raises the close error once closed."""
        try:
            item = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            assert self._error is not None
            raise self._error from None
        self._queued -= 1
        if self._space is not None and self._queued < self.max_size:
            self._space.set()
            self._space = None
        return item

    def close(self, error: BaseException) -> None:
        """Discard the buffer; make every ``get`` raise ``error``. Idempotent."""
        if self._error is not None:
            return
        self._error = error
        self._send.close()
        self._receive.close()
        self._queued = 0
        if self._space is not None:
            self._space.set()
            self._space = None
