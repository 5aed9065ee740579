"""The bytes of one direction of a :class:`~trio_reconnect.testing.Link`: what TCP shows.

A :class:`Pipe` carries bytes in order, ``latency`` (plus ``jitter``) seconds
late, at most ``window`` bytes in flight, with FIN, RST and black-hole; the
conditions are the network's (:class:`Conditions`), read at every write, so
a test may change them at any time. :func:`close_frame` is the websocket
close frame a middlebox injects; :func:`frame_at` walks the frames a server
sends (for the raw clients of the herd simulator's tap and of ``bench``).
"""

from __future__ import annotations

import collections
import math
import random as _random
import struct
from collections.abc import Callable
from typing import Final, Protocol

import trio

from .._hints import MAX_CLOSE_REASON_BYTES

__all__ = ["OP_CLOSE", "OP_TEXT", "Conditions", "Pipe", "close_frame", "frame_at"]

_UPGRADE_REPLY: Final = b"HTTP/1.1 101"
#: RFC 6455 opcodes: a text frame, a close frame.
OP_TEXT: Final = 0x1
OP_CLOSE: Final = 0x8
#: The FIN bit of a frame's first byte, and the MASK bit of its second.
_FIN: Final = 0x80
_MASK: Final = 0x80


class Conditions(Protocol):
    """The network's conditions a pipe reads (a :class:`~trio_reconnect.testing.MemoryNetwork`)."""

    latency: float
    jitter: float
    random: _random.Random
    window: int


def close_frame(code: int, reason: str, *, masked: bool, rng: _random.Random) -> bytes:
    """A websocket close frame (RFC 6455 section 5.5.1), as a middlebox would send it."""
    encoded = reason.encode("utf-8")
    if len(encoded) > MAX_CLOSE_REASON_BYTES:
        raise ValueError(f"a close reason must fit in {MAX_CLOSE_REASON_BYTES} bytes")
    payload = struct.pack("!H", code) + encoded
    if not masked:
        return bytes([_FIN | OP_CLOSE, len(payload)]) + payload
    key = rng.randbytes(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([_FIN | OP_CLOSE, _MASK | len(payload)]) + key + body


def frame_at(buffer: bytes | bytearray, offset: int = 0) -> tuple[int, int, int] | None:
    """The unmasked frame starting at ``offset``: ``(opcode, payload start, end)``.

    ``None`` while ``buffer`` does not hold all of it yet. Server frames only
    (no masking key); lengths of 126 and 127 announce the 2- and 8-byte
    extended lengths of RFC 6455 section 5.2.
    """
    size = len(buffer)
    if size - offset < 2:
        return None
    length = buffer[offset + 1] & 0x7F
    head = 2
    if length == 126:
        if size - offset < 4:
            return None
        length, head = int.from_bytes(buffer[offset + 2 : offset + 4], "big"), 4
    elif length == 127:
        if size - offset < 10:
            return None
        length, head = int.from_bytes(buffer[offset + 2 : offset + 10], "big"), 10
    end = offset + head + length
    if end > size:
        return None
    return buffer[offset] & 0x0F, offset + head, end


class Pipe:
    """Bytes one way: in order, delayed, bounded, with FIN, RST and black-hole."""

    def __init__(self, network: Conditions, held: Callable[[], bool]) -> None:
        self._network = network
        self._held = held
        self._chunks: collections.deque[tuple[float, bytes]] = collections.deque()
        self._buffered = 0
        self._last_due = -math.inf
        self._fin_due: float | None = None
        self.reset = False
        self.blackholed = False
        self.reader_closed = False
        self.writer_closed = False
        self.carried_upgrade = False
        self.carried_bytes = 0
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()

    def _due(self) -> float:
        delay = self._network.latency
        if self._network.jitter:
            delay += self._network.random.uniform(0.0, self._network.jitter)
        # In order: nothing overtakes what was sent before it.
        self._last_due = max(self._last_due, trio.current_time() + delay)
        return self._last_due

    def wake(self) -> None:
        """Wake the reader and the writer (to look at the pipe's state again)."""
        self._readable.unpark_all()
        self._writable.unpark_all()

    def wake_reader(self) -> None:
        """Wake the reader (bytes held by a partition may move now)."""
        self._readable.unpark_all()

    async def write(self, data: bytes) -> None:
        while True:
            if self.writer_closed:
                raise trio.ClosedResourceError("this stream was closed")
            if self.reset:
                raise trio.BrokenResourceError("connection reset")
            if self._fin_due is not None:
                raise trio.BrokenResourceError("the connection was closed")
            if self.reader_closed and not self.blackholed:  # no RST out of a black hole
                raise trio.BrokenResourceError("the peer closed the connection")
            if self.blackholed:
                await trio.lowlevel.checkpoint()
                return
            if self._buffered == 0 or self._buffered + len(data) <= self._network.window:
                break
            await self._writable.park()
        if not self.carried_bytes and data.startswith(_UPGRADE_REPLY):
            self.carried_upgrade = True
        self.carried_bytes += len(data)
        self._chunks.append((self._due(), data))
        self._buffered += len(data)
        self._readable.unpark_all()
        await trio.lowlevel.checkpoint()

    async def wait_writable(self) -> None:
        """Return once a write would not wait (or would fail at once)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not (
            self.reset
            or self.blackholed
            or self.reader_closed
            or self._fin_due is not None
            or self._buffered < self._network.window
        ):
            await self._writable.park()
        if self.writer_closed:
            raise trio.ClosedResourceError("this stream was closed")
        await trio.lowlevel.cancel_shielded_checkpoint()

    def inject(self, data: bytes) -> None:
        """Queue bytes from a middlebox (after everything already in flight)."""
        if not (self.reset or self.blackholed or self._fin_due is not None):
            self._chunks.append((self._due(), data))
            self._buffered += len(data)
            self._readable.unpark_all()

    def finish(self) -> None:
        """FIN: the reader sees EOF once everything before it has arrived."""
        if self._fin_due is None and not self.blackholed:
            self._fin_due = self._due()
            self._readable.unpark_all()
        elif self._fin_due is None:
            self._fin_due = math.inf  # the FIN vanished, but the writer is closed
        self._writable.unpark_all()

    def _next_due(self) -> float:
        if self._chunks:
            return self._chunks[0][0]
        return self._fin_due if self._fin_due is not None else math.inf

    async def read(self, max_bytes: int | None) -> bytes:
        while True:
            if self.reader_closed:
                raise trio.ClosedResourceError("this stream was closed")
            if self.reset:
                raise trio.BrokenResourceError("connection reset")
            due = self._next_due()
            now = trio.current_time()
            if due <= now and not self._held():
                break
            with trio.move_on_at(due if not self._held() else math.inf):
                await self._readable.park()
        if not self._chunks:
            await trio.lowlevel.checkpoint()
            return b""
        due, data = self._chunks.popleft()
        if max_bytes is not None and len(data) > max_bytes:
            self._chunks.appendleft((due, data[max_bytes:]))
            data = data[:max_bytes]
        self._buffered -= len(data)
        self._writable.unpark_all()
        await trio.lowlevel.checkpoint()
        return data

    def vanish(self) -> None:
        """Black-hole: what is in flight and everything later is lost."""
        self.blackholed = True
        self._chunks.clear()
        self._buffered = 0
        if self._fin_due is not None:
            self._fin_due = math.inf
        self.wake()

    def break_(self) -> None:
        """RST: what is in flight is lost; both ends fail from now on."""
        self.reset = True
        self._chunks.clear()
        self._buffered = 0
        self.wake()
