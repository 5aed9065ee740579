"""The application's receive buffer: ordered across connections, bounded.

The supervisor's reader task puts items in; ``get_message`` takes them out.
Two ways in:

* :meth:`Inbox.put` waits while the buffer holds ``max_size`` items or more
  (backpressure), and counts each such stall, so that the pinger can tell a
  slow consumer from a dead server. While ``publishing()`` says a publish
  waits for its answer, it goes on past ``max_size`` items up to
  ``overflow_bytes`` bytes of frames, so that the answers behind unread items
  are read (the rule: :func:`~._overflow.reader_must_wait`);
  :meth:`Inbox.recheck` releases a waiting put when that becomes true;
* :meth:`Inbox.put_nowait` never waits; the handshake uses it for the bounded
  burst of a replay, so that a slow consumer cannot make ``resume_timeout``
  expire.

Closing (:meth:`Inbox.close`) discards what is buffered; every pending and
later :meth:`Inbox.get` raises the given error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs
import trio

from ._overflow import reader_must_wait

T = TypeVar("T")

__all__ = ["Inbox"]


def _never() -> bool:
    return False


@attrs.define(eq=False)
class Inbox(Generic[T]):
    """A bounded FIFO of items with a terminal error.

    Args:
        max_size: The bound in items (``max_queue``).
        overflow_bytes: The bound past ``max_size`` while ``publishing()``
            (``outbox_bytes``; 0: none).
        publishing: Whether a publish waits for its answer.
    """

    max_size: int
    overflow_bytes: int = attrs.field(default=0, kw_only=True)
    publishing: Callable[[], bool] = attrs.field(default=_never, kw_only=True)
    #: How many times :meth:`put` had to wait for the consumer.
    stalls: int = attrs.field(init=False, default=0)
    #: Items :meth:`put` took past ``max_size`` without waiting (a publish pending).
    overflows: int = attrs.field(init=False, default=0)
    #: The buffered frames' bytes (as given to :meth:`put`).
    size: int = attrs.field(init=False, default=0)
    _send: trio.MemorySendChannel[tuple[T, int]] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[tuple[T, int]] = attrs.field(init=False)
    _queued: int = 0
    _space: trio.Event | None = None
    _error: BaseException | None = None

    def __attrs_post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {self.max_size!r}")
        self._send, self._receive = trio.open_memory_channel[tuple[T, int]](math.inf)

    @property
    def stalled(self) -> bool:
        """Whether :meth:`put` is waiting for the consumer right now."""
        return self._space is not None

    def __len__(self) -> int:
        return self._queued

    def put_nowait(self, item: T, size: int = 0) -> None:
        """Append ``item`` (its frame of ``size`` bytes) without waiting (dropped once closed)."""
        if self._error is None:
            self._send.send_nowait((item, size))
            self._queued += 1
            self.size += size

    async def put(self, item: T, size: int = 0) -> None:
        """Append ``item`` (its frame of ``size`` bytes), then wait while the buffer is full.

        There is one producer (the supervisor's reader): a second task calling
        this while the first waits would be a bug, and is refused.
        """
        if self._space is not None:
            raise RuntimeError("Inbox.put has a single producer; another one is waiting")
        self.put_nowait(item, size)
        await self.wait_for_room()

    def _full(self) -> bool:
        return reader_must_wait(
            items=self._queued,
            size=self.size,
            max_items=self.max_size,
            overflow_bytes=self.overflow_bytes,
            publishing=self.publishing(),
        )

    async def wait_for_room(self) -> None:
        """Wait while the buffer is full (a stall): see :func:`~._overflow.reader_must_wait`."""
        if self._space is not None:
            raise RuntimeError("Inbox.put has a single producer; another one is waiting")
        if self._queued < self.max_size or self._error is not None:
            return
        if not self._full():
            self.overflows += 1
            return
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
            item, size = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            assert self._error is not None
            raise self._error from None
        self._queued -= 1
        self.size -= size
        if self._space is not None:
            self.recheck()
        return item

    def recheck(self) -> None:
        """Release a waiting :meth:`put` if the buffer is no longer full.

        The consumer calls it after each :meth:`get`; the publisher when a
        publish enters its outbox (the reader may now go past ``max_size``).
        """
        if self._space is not None and (self._queued < self.max_size or not self._full()):
            self._space.set()
            self._space = None

    def close(self, error: BaseException) -> None:
        """Discard the buffer; make every ``get`` raise ``error``. Idempotent."""
        if self._error is not None:
            return
        self._error = error
        self._send.close()
        self._receive.close()
        self._queued = 0
        self.size = 0
        if self._space is not None:
            self._space.set()
            self._space = None
