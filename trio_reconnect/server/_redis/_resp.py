"""A small RESP2 encoder and incremental parser, for the notification reader. Pure.

The reader (:mod:`._notify`) owns one socket in subscribe mode: it sends
``AUTH``/``SELECT``/``SUBSCRIBE`` and then only reads pushes. Every complete
frame of a chunk is parsed in one synchronous step (:meth:`RespParser.feed`);
a partial frame stays in the buffer until the rest arrives. The buffer is
bounded: a frame that does not complete within ``max_pending`` bytes is an
error, not unbounded memory.
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


def _line(buf: bytearray, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    return bytes(buf[pos:end]), end + 2


def _integer(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise RespError(f"not RESP2: bad length or integer {text[:40]!r}") from None


def _parse(buf: bytearray, pos: int) -> tuple[RespValue, int]:
    if pos >= len(buf):
        raise _Incomplete
    kind = buf[pos]
    line, after = _line(buf, pos + 1)
    if kind == 0x24:  # '$' bulk string
        length = _integer(line)
        if length < 0:
            return None, after
        if after + length + 2 > len(buf):
            raise _Incomplete
        return bytes(buf[after : after + length]), after + length + 2
    if kind == 0x2A:  # '*' array
        count = _integer(line)
        if count < 0:
            return None, after
        items: list[RespValue] = []
        for _ in range(count):
            item, after = _parse(buf, after)
            items.append(item)
        return items, after
    if kind == 0x3A:  # ':' integer
        return _integer(line), after
    if kind == 0x2B:  # '+' simple string
        return line, after
    if kind == 0x2D:  # '-' error
        return RespError(line.decode(errors="replace")), after
    raise RespError(f"not RESP2: frame starts with {bytes([kind])!r}")


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
        self._buf += chunk
        values: list[RespValue] = []
        pos = 0
        try:
            while pos < len(self._buf):
                value, pos = _parse(self._buf, pos)
                values.append(value)
        except _Incomplete:
            pass
        del self._buf[:pos]
        if len(self._buf) > self.max_pending:
            raise RespError(f"a frame outgrew {self.max_pending} bytes")
        return values
