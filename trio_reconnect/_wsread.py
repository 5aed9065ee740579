"""A client's wsproto connection that reads plain text frames itself, and wsproto the rest. Pure.

A resume of 100 channels is answered by 101 text frames in one write
(PROTOCOL.md 4.2). wsproto turns each into a ``TextMessage`` through its
buffer, a header parse, a masker, a frame, an incremental UTF-8 decoder and
a commit that moves the rest of the buffer: about 5 us a frame, the largest
share of the client's work in such a resume (this takes about 1 us).

:class:`FastTextReads` is a :class:`wsproto.WSConnection` that takes, from
the front of each chunk received, the complete frames of the one kind a
server sends most, and makes their events itself:

* final (FIN), no RSV bit, opcode text (first byte ``0x81``);
* unmasked (a server's), a 7-bit or a minimal 16-bit length;
* the whole payload in the chunk, and valid UTF-8.

The first frame of any other kind (control frames, binary, fragments, a
masked or a non-minimal header, an 8-byte length, invalid UTF-8, a frame cut
by the end of the chunk) and everything after it in the chunk go to
wsproto, which makes what it always made of them, errors and close codes
included (invalid UTF-8: 1007). It does so only while wsproto stands between
two frames with nothing of its own pending: the connection open, no
extension, no event queued, nothing buffered, no fragmented message begun,
its parser not ended by an error. Otherwise the whole chunk goes to wsproto,
with two exceptions that keep reads cut in the middle of a frame on this
path: the rest of a data frame wsproto has begun, when the chunk holds all
of it, goes to wsproto alone and its event is taken at once (the event
wsproto would make of it later); and the first bytes of a plain text frame's
header, cut by the end of a chunk, are held until the next one (wsproto
makes no event of a partial header).

The events are the ones wsproto makes of the same frames
(``TextMessage(data, frame_finished=True, message_finished=True)``, where
``data`` is the payload decoded as ``str(payload, "utf-8")``, which is what
wsproto's decoder gives for a final frame), and :meth:`events` gives them
first, in order, before wsproto's events of the bytes that followed them.
tests/client/test_wsread.py feeds random frame sequences, cut at random
points, to this and to wsproto and requires the same events and states.

It reads wsproto 1.x's internals (``Connection._events``, ``_state``,
``_proto`` and its frame and message decoders); :func:`fast_reads` checks
them and gives ``None`` where they are not there, and the caller keeps
wsproto as it is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from types import GeneratorType
from typing import Any

import wsproto
from wsproto.connection import Connection, ConnectionState
from wsproto.events import Event, TextMessage
from wsproto.frame_protocol import FrameProtocol

__all__ = ["FastTextReads", "fast_reads", "plain_text_frames"]

#: FIN, no RSV bit, opcode 1 (text).
_FINAL_TEXT = 0x81


def plain_text_frames(data: bytes | bytearray, out: deque[Event]) -> int:
    """Append the events of the plain text frames at the front of ``data`` to ``out``.

    Returns the bytes taken: the frames from the first one of another kind
    (or cut by the end of ``data``) on are left for wsproto.
    """
    pos = 0
    end = len(data)
    while end - pos >= 2:
        if data[pos] != _FINAL_TEXT:
            break
        size = data[pos + 1]
        start = pos + 2
        if size > 125:
            if size != 126:  # an 8-byte length, or masked (the mask bit): wsproto's
                break
            start = pos + 4
            if start > end:
                break
            size = (data[pos + 2] << 8) | data[pos + 3]
            if size < 126:  # not minimal: wsproto's error
                break
        stop = start + size
        if stop > end:
            break
        try:
            text = str(data[start:stop], "utf-8")
        except UnicodeDecodeError:  # wsproto's error (1007)
            break
        out.append(TextMessage(data=text))
        pos = stop
    return pos


def _parsing(proto: FrameProtocol) -> bool:
    """Whether wsproto's parser still parses: not ended by an error (or after a close)."""
    parser: GeneratorType[Any, None, None] = proto._parse_more  # type: ignore[assignment]
    return parser.gi_frame is not None


def _between_frames(connection: Connection) -> bool:
    """Whether wsproto's connection stands between two frames with nothing pending."""
    proto = connection._proto
    decoder = proto._frame_decoder
    return (
        connection._state is ConnectionState.OPEN
        and not connection._events
        and decoder.header is None
        and not decoder.buffer.buffer
        and proto._message_decoder.opcode is None
        and not proto.extensions
        and _parsing(proto)  # not ended by an error or a close
    )


class FastTextReads(wsproto.WSConnection):
    """``inner``'s connection, reading plain text frames itself (the module comment).

    It shares ``inner``'s handshake and connection objects, so the two are
    one connection: sends, state and every frame of another kind are wsproto's.
    """

    def __init__(self, inner: wsproto.WSConnection) -> None:
        # No super().__init__(): this takes over inner's parts instead of new ones.
        self.client = inner.client
        self.handshake = inner.handshake
        self.connection = inner.connection
        self._taken: deque[Event] = deque()
        #: The start of a plain text frame's header, cut by the end of a chunk.
        self._held = b""

    def receive_data(self, data: bytes | None) -> None:
        connection = self.connection
        if connection is None:
            super().receive_data(data)
            return
        if self._held:
            held, self._held = self._held, b""
            if data is None or not _between_frames(connection):
                # Where wsproto would have had them all along (it makes no
                # event of a header's first bytes, so none is missed).
                connection._proto.receive_bytes(held)
            else:
                data = held + data
        if data and _mid_data_frame(connection):
            data = self._finish_frame(connection, data)
            if data is None:
                return
        if data and _between_frames(connection):
            taken = plain_text_frames(data, self._taken)
            if taken == len(data):
                return
            rest = data[taken:]
            if _header_start(rest):
                self._held = bytes(rest)
                return
            data = rest
        super().receive_data(data)

    def _finish_frame(self, connection: Connection, data: bytes) -> bytes | None:
        """Give wsproto the rest of the data frame it is reading; the bytes after (``None``: none).

        When ``data`` holds the whole rest, wsproto's event of it is taken now:
        it is the one wsproto would make of these bytes later (it reads
        exactly the rest of a frame, whatever follows), and making it now
        changes no state (a data frame's end never does; invalid UTF-8 ends
        wsproto's parser with a 1007 close event, as later). A rest that is
        not all there is all wsproto's, read when it is (a part read now
        would cut the frame where wsproto, read later, might not).
        """
        decoder = connection._proto._frame_decoder
        assert decoder.header is not None
        rest = decoder.header.payload_len - decoder.payload_consumed
        if len(data) < rest:
            super().receive_data(data)
            return None
        super().receive_data(data[:rest])
        self._taken.extend(super().events())
        return data[rest:]

    def events(self) -> Generator[Event, None, None]:
        taken = self._taken
        while taken:
            yield taken.popleft()
        yield from super().events()


def _mid_data_frame(connection: Connection) -> bool:
    """Whether wsproto has read a data frame's header and all it was given; it waits for more."""
    proto = connection._proto
    decoder = proto._frame_decoder
    header = decoder.header
    return (
        header is not None
        and not header.opcode.iscontrol()
        and connection._state is ConnectionState.OPEN
        and not connection._events
        and not decoder.buffer.buffer
        and not proto.extensions
        and _parsing(proto)
    )


def _header_start(rest: bytes | bytearray) -> bool:
    """Whether ``rest`` is the first bytes of a plain text frame's header, not all of it."""
    if not rest or rest[0] != _FINAL_TEXT:
        return False
    return len(rest) == 1 or (rest[1] == 126 and len(rest) < 4)


def fast_reads(protocol: object) -> FastTextReads | None:
    """A :class:`FastTextReads` over ``protocol``, an open client's wsproto; ``None``: not one.

    ``None`` for a server's connection, one still in its opening handshake,
    one with an extension, or a wsproto whose internals are not the ones
    read here (it stays as it is).
    """
    if type(protocol) is not wsproto.WSConnection or not protocol.client:
        return None
    connection = protocol.connection
    if type(connection) is not Connection:
        return None
    proto = getattr(connection, "_proto", None)
    decoder = getattr(proto, "_frame_decoder", None)
    if (
        not isinstance(getattr(connection, "_events", None), deque)
        or getattr(proto, "extensions", True)
        or not hasattr(getattr(proto, "_parse_more", None), "gi_frame")
        or not hasattr(getattr(proto, "_message_decoder", None), "opcode")
        or not hasattr(decoder, "header")
        or not isinstance(getattr(getattr(decoder, "buffer", None), "buffer", None), bytearray)
    ):
        return None
    return FastTextReads(protocol)
