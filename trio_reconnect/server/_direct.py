"""Writing live events straight to an idle client's socket, from the fan-out.

Why
---

A node has one task per client connection writing that client's queue, and
one fan-out task feeding every queue (:mod:`trio_reconnect.server._fanout`).
When events come one at a time (the usual case on a shared log such as
Redis: each arrives on a tail read of its own), every delivery then costs a
wake-up of the client's write loop, its passes through trio's scheduler
around the send, and a park: several scheduler passes for one ``send``. A
plain broadcast (one task awaiting ``send_message`` on every websocket in
turn) makes two. So when the client is idle, the fan-out writes the event
itself, in the same synchronous step that would have queued it: one
non-blocking ``write`` on the socket, no task woken, no scheduler pass.

When
----

Only when nothing else is, or could be, in the middle of writing to this
connection: the client is ``ready`` and not closing, its queue is empty and
its write loop holds no frames, trio-websocket's send lock is free, no
earlier direct write left bytes behind, and wsproto's connection is open.
Otherwise the events are queued, as always. Since a frame is only written
directly while the queue is empty, the order of events and messages on the
wire is the order they were queued in.

It needs a plain TCP connection on a POSIX system (``trio.SocketStream``: TLS
streams are written by their ``send_all`` only) and, from trio-websocket
0.12, private attributes reached through :mod:`trio_reconnect._tws`.
:meth:`DirectWriter.install` probes them when the connection is created,
and without them nothing changes: every frame goes through the queue.

A write that does not go through whole
--------------------------------------

A non-blocking write may take only part of the bytes (the socket's send
buffer is full: a slow client). The rest must reach the wire before any
other byte, from whoever sends next. trio-websocket sends everything (its
messages, pings, pongs, the close frame) under its send lock, so
:meth:`install` replaces that lock by a :class:`FlushingLock`: taking it
first writes what a direct write left behind. The client's write loop is
woken to take the lock, so that the rest goes out even when nothing else is
sent. The flush writes with ``os.write`` and waits with trio's
``wait_writable``, and always knows how much of the rest is left, so
cancelling it never leaves the stream in an unknown state: the next holder
of the lock goes on where it stopped. Bytes left behind are at most one
fan-out feed (the events of one tail read); they are not counted against the
client's ``queue_size``, but everything fed after them is, since it is
queued.

A write that fails (the peer reset the connection, the socket is closed) is
not reported here: the events are queued, and the write loop's own send
meets the same error and closes the connection the usual way. Likewise a
flush waiting for the socket when another task closes the stream drops the
rest and returns: the send of the lock's holder then meets the closed
stream, which trio-websocket handles (an exception out of the lock would
crash its reader task). The socket's
file descriptor is asked for at every write, never kept: a closed trio
socket answers ``-1``, so a closed connection's number, given meanwhile to
another connection, is never written to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import TracebackType

import trio
from trio_websocket import WebSocketConnection

from .._tws import capable, encode_messages, socket_stream, swap_send_lock, writable

__all__ = ["DirectWriter", "FlushingLock"]

# Whether connections may be written directly (module comment). Off (tests),
# every frame goes through the client's queue and write loop.
_DIRECT_WRITES = True


class DirectWriter:
    """One connection's direct writes, and the bytes they left behind."""

    __slots__ = ("_left", "_left_events", "_lock", "_socket", "_wake", "_ws", "events_written")

    def __init__(
        self, ws: WebSocketConnection, socket: trio.socket.SocketType, wake: Callable[[], None]
    ) -> None:
        self._ws = ws
        self._socket = socket
        self._wake = wake
        self._lock = FlushingLock(self)
        #: What a partial write left behind, not written yet.
        self._left = memoryview(b"")
        #: Events in ``_left``: counted in ``events_written`` when it is written.
        self._left_events = 0
        #: Events whose bytes reached the socket through this writer.
        self.events_written = 0

    @classmethod
    def install(cls, ws: WebSocketConnection, wake: Callable[[], None]) -> DirectWriter | None:
        """A writer for ``ws``, with its send lock replaced; ``None`` where it cannot be used.

        Args:
            ws: The connection, before anything of ours sends on it.
            wake: Called (synchronously) when a direct write left bytes behind:
                the write loop should take the send lock.
        """
        if not _DIRECT_WRITES or os.name != "posix":
            return None
        stream = socket_stream(ws)
        if stream is None or not capable(ws):
            return None
        writer = cls(ws, stream.socket, wake)
        # Not swapped (a send in progress holds the lock, or it is of another
        # kind): no direct writes.
        return writer if swap_send_lock(ws, writer._lock) else None

    @property
    def has_left(self) -> bool:
        """Whether a partial write left bytes to write before any other."""
        return bool(self._left)

    @property
    def events_left(self) -> int:
        """Events whose bytes a partial write left behind."""
        return self._left_events

    def write(self, messages: Sequence[str]) -> bool:
        """Write ``messages`` now, if nothing else is writing; ``False``: queue them instead.

        The caller has checked that the client has nothing queued and its
        write loop holds no frames. ``True`` means the frames are the
        socket's, whole or in part (the rest goes out before anything else).
        """
        if self._left or self._lock.locked() or not writable(self._ws):
            return False
        fd = self._socket.fileno()
        if fd < 0:
            return False
        data = encode_messages(self._ws, messages)
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return False  # the write loop's send meets the error and closes
        if written == len(data):
            self.events_written += len(messages)
        else:
            self._left = memoryview(data)[written:]
            self._left_events = len(messages)
            self._wake()
        return True

    async def flush(self) -> None:
        """Write what a partial write left behind (under the send lock).

        Cancelling it is safe: what is left is always known. A socket error
        drops the rest silently: the send that follows meets the same error.
        """
        while self._left:
            fd = self._socket.fileno()
            if fd < 0:
                self._drop_left()
                return
            try:
                written = os.write(fd, self._left)
            except BlockingIOError:
                written = 0
            except OSError:
                self._drop_left()
                return
            self._left = self._left[written:]
            if self._left:
                try:
                    await trio.lowlevel.wait_writable(self._socket)
                except trio.ClosedResourceError:
                    # Another task closed the stream meanwhile (trio-websocket's
                    # aclose giving up while its reader waits here to send a
                    # pong): the holder's send meets the closed stream, as
                    # trio-websocket expects it to.
                    self._drop_left()
                    return
        if self._left_events:
            self.events_written += self._left_events
            self._left_events = 0

    def _drop_left(self) -> None:
        self._left = memoryview(b"")
        self._left_events = 0


class FlushingLock:
    """trio-websocket's send lock, which first writes what a direct write left behind."""

    __slots__ = ("_lock", "_writer")

    def __init__(self, writer: DirectWriter) -> None:
        self._lock = trio.StrictFIFOLock()
        self._writer = writer

    def locked(self) -> bool:
        """Whether some task holds the lock."""
        return self._lock.locked()

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        if self._writer.has_left:
            try:
                await self._writer.flush()
            except BaseException:
                self._lock.release()
                raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._lock.release()
