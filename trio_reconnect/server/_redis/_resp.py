"""A small RESP2 encoder and incremental parser, for our own Redis sockets. Pure.

The reader (:mod:`._notify`) owns one socket in subscribe mode: it sends
``AUTH``/``SELECT``/``SUBSCRIBE`` and then only reads pushes. Every complete
frame of a chunk is parsed in one synchronous step (:meth:`RespParser.feed`);
a partial frame stays in the buffer until the rest arrives. The buffer is
bounded: a frame that does not complete within ``max_pending`` bytes is an
error, not unbounded memory. The command links (:mod:`._link`) parse their
replies with it too.

It is on the path of every event (a notification, a script's reply), so
it takes the cheap way where it can: a chunk that starts a frame is parsed
where it lies (only an incomplete tail is copied into the buffer), and an
array's bulk strings (the items of a notification and of a script's reply)
are parsed inline rather than by one call each.
"""

from __future__ import annotations

from typing import Final, TypeAlias

import attrs

__all__ = ["DEFAULT_MAX_PENDING", "RespError", "RespParser", "RespValue", "encode_command"]

#: Largest incomplete frame the parser holds, bytes (Redis's own bulk limit is 512 MB).
DEFAULT_MAX_PENDING: Final = 64 * 1024 * 1024


class RespError(Exception):
    """A ``-ERR ...`` reply, or a stream that is not RESP2."""


#: A parsed value: bulk/simple strings as bytes, integers, arrays, ``None``, or an error.
RespValue: TypeAlias = "bytes | int | list[RespValue] | RespError | None"


class _Incomplete(Exception):
    """The buffer ends inside a frame."""


def encode_command(*parts: str | bytes | int) -> bytes:
    """One command as a RESP2 array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _integer(buf: bytes | bytearray, start: int, end: int) -> int:
    try:
        return int(buf[start:end])
    except ValueError:
        raise RespError(
            f"not RESP2: bad length or integer {bytes(buf[start:end][:40])!r}"
        ) from None


def _parse(buf: bytes | bytearray, pos: int) -> tuple[RespValue, int]:
    if pos >= len(buf):
        raise _Incomplete
    kind = buf[pos]
    end = buf.find(b"\r\n", pos + 1)
    if end < 0:
        raise _Incomplete
    after = end + 2
    if kind == 0x24:  # '$' bulk string
        length = _integer(buf, pos + 1, end)
        if length < 0:
            return None, after
        if after + length + 2 > len(buf):
            raise _Incomplete
        return bytes(buf[after : after + length]), after + length + 2
    if kind == 0x2A:  # '*' array
        return _array(buf, _integer(buf, pos + 1, end), after)
    if kind == 0x3A:  # ':' integer
        return _integer(buf, pos + 1, end), after
    if kind == 0x2B:  # '+' simple string
        return bytes(buf[pos + 1 : end]), after
    if kind == 0x2D:  # '-' error
        return RespError(bytes(buf[pos + 1 : end]).decode(errors="replace")), after
    raise RespError(f"not RESP2: frame starts with {bytes([kind])!r}")


def _array(buf: bytes | bytearray, count: int, pos: int) -> tuple[RespValue, int]:
    """``count`` values from ``pos``; a bulk string (the frequent item) parsed inline."""
    if count < 0:
        return None, pos
    items: list[RespValue] = []
    size = len(buf)
    for _ in range(count):
        if pos < size and buf[pos] == 0x24:  # '$': as _parse does, without the call
            end = buf.find(b"\r\n", pos + 1)
            if end < 0:
                raise _Incomplete
            length = _integer(buf, pos + 1, end)
            pos = end + 2
            if length < 0:
                items.append(None)
                continue
            if pos + length + 2 > size:
                raise _Incomplete
            items.append(bytes(buf[pos : pos + length]))
            pos += length + 2
        else:
            item, pos = _parse(buf, pos)
            items.append(item)
    return items, pos


@attrs.define(eq=False)
class RespParser:
    """Turns chunks of a RESP2 stream into values; keeps the partial frame at the end."""

    max_pending: int = DEFAULT_MAX_PENDING
    _buf: bytearray = attrs.field(factory=bytearray, init=False)

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray) -> list[RespValue]:
        """Every value completed by ``chunk``, in order.

        Raises:
            RespError: the stream is not RESP2, or a frame outgrew ``max_pending``.
        """
        # A chunk that starts a frame is parsed as it is (no copy into the buffer).
        buf: bytes | bytearray = chunk
        if self._buf:
            self._buf += chunk
            buf = self._buf
        values: list[RespValue] = []
        pos = 0
        try:
            while pos < len(buf):
                value, pos = _parse(buf, pos)
                values.append(value)
        except _Incomplete:
            pass
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])
        if len(self._buf) > self.max_pending:
            raise RespError(f"a frame outgrew {self.max_pending} bytes")
        return values
