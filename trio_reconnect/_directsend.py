"""Writing publish frames from the publishing task itself, while nothing else writes.

Why
---

A burst of publishes (many tasks calling ``ws.publish`` at once) runs the
first step of every one of them in one pass of trio's scheduler: each puts
its publish in the outbox and wakes the pump (:mod:`._publishing`), which
runs only in the next pass. For a thousand publishes that first pass is
several milliseconds of client CPU during which nothing has reached the
server, which sits idle, then gets everything at once. So a publish that
brings the outbox's unsent publishes to a full write (64) writes them
itself, in the same synchronous step: one non-blocking ``write`` on the
socket. The server starts on the first 64 while the client still takes
the others in; the pump sends what is left, as before.

When
----

Only while nothing else is, or could be, in the middle of writing: the
connection's send lock (a :class:`FlushingTurn`, put in place of
trio-websocket's by :mod:`._attempt`) is free and nobody waits for it, no
earlier direct write left bytes behind, and the websocket is open. The
publisher takes the frames from the outbox (marking them sent) only after
:meth:`FlushingTurn.can_write_now` said yes, and writes them in the same
step, so no other writer can come between: the wire order is the outbox
order, as when the pump writes.

It needs a plain TCP connection on a POSIX system (``trio.SocketStream``;
TLS streams are written by their ``send_all`` only) and trio-websocket's
internals (:mod:`._tws`); without them the send lock is a plain
:class:`~._turn.Turn` and the pump writes everything.

A write that does not go through whole
--------------------------------------

A non-blocking write may take only part of the bytes (the socket's send
buffer is full). The rest must reach the wire before any other byte, from
whoever sends next: every write on the connection (ours, trio-websocket's
messages, pongs and close) is made under the send lock, and taking a
:class:`FlushingTurn` first writes what is left. The pump is woken to take
it, so that the rest goes out even when nothing else is sent. The flush
always knows how much is left, so cancelling it never leaves the stream in
an unknown state: the next holder goes on where it stopped. A write that
fails (the peer reset the connection) drops the bytes: the reader and the
next send meet the same error, the connection is lost, and every publish
is sent again on the next one. The server's fan-out writes idle clients the
same way (:mod:`trio_reconnect.server._direct`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import trio
from trio_websocket import WebSocketConnection

from ._turn import Turn
from ._tws import encode_messages, socket_stream, writable

__all__ = ["FlushingTurn", "send_turn_for"]

# Whether client connections get a FlushingTurn (off: a plain Turn, the pump writes all).
_DIRECT_SENDS = True


def send_turn_for(ws: WebSocketConnection) -> Turn:
    """The send lock to put in place of ``ws``'s: a :class:`FlushingTurn` where it can write."""
    stream = socket_stream(ws)
    if not _DIRECT_SENDS or os.name != "posix" or stream is None:
        return Turn()
    return FlushingTurn(stream.socket)


class FlushingTurn(Turn):
    """A send turn that also writes directly, and first writes what such a write left behind."""

    __slots__ = ("_left", "_socket")

    def __init__(self, socket: trio.socket.SocketType) -> None:
        super().__init__()
        self._socket = socket
        #: What a partial direct write left behind, not written yet.
        self._left = memoryview(b"")

    @property
    def has_left(self) -> bool:
        """Whether a partial write left bytes to write before any other."""
        return bool(self._left)

    def can_write_now(self, ws: WebSocketConnection) -> bool:
        """Whether :meth:`write_now` may write on ``ws`` in this step."""
        return not (self._busy or self._waiting or self._left) and writable(ws)

    def write_now(self, ws: WebSocketConnection, messages: Sequence[str]) -> None:
        """Write ``messages`` now; the caller checked :meth:`can_write_now` in this same step.

        What the socket does not take is kept, and written by the next
        holder of the turn (the caller should wake a task that takes it).
        """
        data = encode_messages(ws, messages)
        fd = self._socket.fileno()
        if fd < 0:
            return  # closed: the reader and the next send meet it
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return  # the reader and the next send meet the same error
        if written < len(data):
            self._left = memoryview(data)[written:]

    async def __aenter__(self) -> None:
        """Take the turn (as :class:`~._turn.Turn` does), then write what is left.

        Raises:
            trio.Cancelled: if the task is cancelled (the turn is given back;
                what is left stays for the next holder).
        """
        await super().__aenter__()
        await self._flush_held()

    async def take(self) -> None:
        """Wait for the turn, then write what is left (see :meth:`__aenter__`)."""
        await super().take()
        await self._flush_held()

    async def _flush_held(self) -> None:
        """With the turn held: write what is left, or give the turn back if that fails."""
        if self._left:
            try:
                await self._flush()
            except BaseException:
                self.give_back()
                raise

    async def _flush(self) -> None:
        while self._left:
            fd = self._socket.fileno()
            if fd < 0:
                self._left = memoryview(b"")
                return
            try:
                written = os.write(fd, self._left)
            except BlockingIOError:
                written = 0
            except OSError:
                self._left = memoryview(b"")  # the send that follows meets the error
                return
            self._left = self._left[written:]
            if self._left:
                try:
                    await trio.lowlevel.wait_writable(self._socket)
                except trio.ClosedResourceError:
                    self._left = memoryview(b"")
                    return
