"""trio-websocket's internals: every private access, and the one probe for them.

Both sides write and read beneath trio-websocket 0.12's public API where its
API costs too much: the server writes several frames in one ``send_all`` and
writes to an idle client's socket from the fan-out; the client swaps the send
lock for a cheaper one and has trio-websocket's reader hand messages straight
to its inbox. Each of these needs private attributes of
:class:`trio_websocket.WebSocketConnection`:

======================================  =========================================
``_wsproto``                            the wsproto connection (encode frames,
                                        read its state)
``_stream``                             the byte stream under the websocket
``_stream_lock``                        the lock every write is made under
``_close_reason``                       set once the websocket is closing
``_abort_web_socket()``                 what ``send_message`` does on a broken
                                        stream
``_send_channel``, ``_recv_channel``    the reader's message queue (the client
                                        also puts :class:`EagerSend` in front of
                                        its send side for a handshake)
``_for_testing_peer_closed_connection`` set when the peer started the close
======================================  =========================================

A client's reader parses the server's plain text frames without wsproto's
frame machinery (:func:`fast_text_reads`, :mod:`._wsread`): the wsproto
connection in ``_wsproto`` is swapped for one that shares its state.

Plain text frames (a server's, and a client's masked ones) are built here
where wsproto would only add a header and mask (:func:`encode_messages`),
which reads wsproto's own ``connection._proto``
(``client``, ``extensions``, ``_outbound_opcode``) to know it may.
They are named here and nowhere else. :func:`capable` checks them once per
connection (the one probe; :func:`can_write_batch`, the part a writer needs,
for a client whose reader channels are already replaced); a caller that finds them missing (another
trio-websocket) takes the public path, so an upgrade of trio-websocket can
make the library slower, never wrong. The functions below do one access
each.

One more fact about trio-websocket lives here because both sides decide by
it: its reader handles no frame, pongs included, while its message queue is
full, that is while the application holds the reader up. A pong missed then
proves nothing about the peer: the rule is
:func:`trio_reconnect._settings.missed_pong_is_backpressure` (pure, so that
the server's pure verdicts may use it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, Protocol

import trio
import wsproto
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import BytesMessage, TextMessage

from ._wsread import fast_reads

__all__ = [
    "EagerSend",
    "SendLock",
    "can_write_batch",
    "capable",
    "close_reason",
    "eager_message_sends",
    "encode_messages",
    "fast_text_reads",
    "message_queue",
    "peer_close_event",
    "plain_frames",
    "peer_started_close",
    "replace_message_channels",
    "replace_stream",
    "send_lock",
    "socket_stream",
    "swap_send_lock",
    "writable",
    "write_batch",
    "wsproto_frames",
]


class SendLock(Protocol):
    """What trio-websocket needs of its ``_stream_lock``: ``async with`` and ``locked()``."""

    def locked(self) -> bool: ...

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> object: ...


def _is_lock(lock: object) -> bool:
    return callable(getattr(lock, "locked", None)) and hasattr(lock, "__aenter__")


def capable(ws: object) -> bool:
    """Whether ``ws`` has every trio-websocket 0.12 internal this module reaches.

    The one probe: without them, callers take trio-websocket's public path.
    """
    return (
        isinstance(getattr(ws, "_wsproto", None), wsproto.WSConnection)
        and isinstance(getattr(ws, "_stream", None), trio.abc.Stream)
        and _is_lock(getattr(ws, "_stream_lock", None))
        and hasattr(ws, "_close_reason")
        and callable(getattr(ws, "_abort_web_socket", None))
        and isinstance(getattr(ws, "_send_channel", None), trio.MemorySendChannel)
        and isinstance(getattr(ws, "_recv_channel", None), trio.MemoryReceiveChannel)
    )


def can_write_batch(ws: object) -> bool:
    """Whether ``ws`` has the internals :func:`write_batch` uses (a subset of :func:`capable`'s).

    The probe for a writer only: it holds after the client has replaced the
    reader's message channels (:func:`replace_message_channels`), where
    :func:`capable` no longer does.
    """
    return (
        isinstance(getattr(ws, "_wsproto", None), wsproto.WSConnection)
        and isinstance(getattr(ws, "_stream", None), trio.abc.Stream)
        and _is_lock(getattr(ws, "_stream_lock", None))
        and hasattr(ws, "_close_reason")
        and callable(getattr(ws, "_abort_web_socket", None))
    )


# -- reads ---------------------------------------------------------------------


def close_reason(ws: WebSocketConnection) -> CloseReason | None:
    """Why ``ws`` is closing (``None``: it is not), as ``send_message`` checks it."""
    reason: CloseReason | None = ws._close_reason
    return reason


def writable(ws: WebSocketConnection) -> bool:
    """Whether a frame may be written beneath ``ws`` now: not closing, wsproto open."""
    return ws._close_reason is None and ws._wsproto.state is WsState.OPEN


def send_lock(ws: WebSocketConnection) -> SendLock:
    """The lock trio-websocket takes around every write on ``ws``."""
    lock: SendLock = ws._stream_lock
    return lock


def socket_stream(ws: object) -> trio.SocketStream | None:
    """``ws``'s stream if it is a plain TCP ``trio.SocketStream`` (not TLS, not in memory)."""
    stream = getattr(ws, "_stream", None)
    return stream if type(stream) is trio.SocketStream else None


def message_queue(ws: WebSocketConnection) -> trio.MemoryReceiveChannel[str | bytes]:
    """The messages trio-websocket's reader queued for ``get_message()``."""
    queue: trio.MemoryReceiveChannel[str | bytes] = ws._recv_channel
    return queue


def peer_close_event(ws: object) -> trio.Event | None:
    """The event set when the peer's close frame arrives on ``ws`` (``None``: not there)."""
    event = getattr(ws, "_for_testing_peer_closed_connection", None)
    return event if isinstance(event, trio.Event) else None


def peer_started_close(ws: object) -> bool:
    """Whether the peer sent the close frame that ended ``ws`` (unknown: ``True``).

    trio-websocket sets this event only when the peer started the close.
    """
    event = getattr(ws, "_for_testing_peer_closed_connection", None)
    return not isinstance(event, trio.Event) or event.is_set()


# -- writes --------------------------------------------------------------------


def encode_messages(
    ws: WebSocketConnection, messages: Sequence[str | bytes], *, cache: bool = True
) -> bytes:
    """The bytes of ``messages``, one frame each, as ``ws``'s wsproto (open) writes them.

    A text frame with no extension and no fragment in progress is the
    header, the masking key on a client, and the UTF-8 bytes, masked on a
    client (RFC 6455 5.2, 5.3): such frames are built here, and any other
    goes through wsproto. A server's are cached once per text for a fan-out
    that writes the same event to many clients (:func:`_text_frame`; with
    ``cache=False``, for texts written once such as a handshake's answers,
    built without taking a place in that cache); a
    client's are masked with an integer XOR, each with its own key from one
    ``os.urandom`` call for the batch (:func:`_masked_text_frame`), where
    wsproto masks a slice at a time after one ``os.urandom`` per frame (a
    pipelined publish spent more on its frame than on anything else).
    """
    protocol = ws._wsproto
    side = plain_frames(protocol)
    if side is None:
        return b"".join(_wsproto_frame(protocol, message) for message in messages)
    if side == "server":
        if len(messages) == 1 and isinstance(messages[0], str):  # a fan-out's usual write
            return _text_frame(messages[0], cache)
        return b"".join(
            _text_frame(message, cache)
            if isinstance(message, str)
            else _wsproto_frame(protocol, message)
            for message in messages
        )
    keys = os.urandom(4 * len(messages))
    return b"".join(
        _masked_text_frame(message, keys[4 * i : 4 * i + 4])
        if isinstance(message, str)
        else _wsproto_frame(protocol, message)
        for i, message in enumerate(messages)
    )


def _wsproto_frame(protocol: wsproto.WSConnection, message: str | bytes) -> bytes:
    return protocol.send(
        TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
    )


def plain_frames(protocol: object) -> Literal["client", "server"] | None:
    """Which side's plain text frames ``protocol`` (a wsproto connection) writes, if it does.

    ``None``: an extension is on, a fragment is in progress, or the object is
    not the wsproto this module knows; its frames then go through wsproto.
    """
    proto = getattr(getattr(protocol, "connection", None), "_proto", None)
    if (
        proto is None
        or getattr(proto, "extensions", True)
        or getattr(proto, "_outbound_opcode", True) is not None
    ):
        return None
    client = getattr(proto, "client", None)
    if client is False:
        return "server"
    return "client" if client is True else None


def wsproto_frames(protocol: object) -> bool:
    """Whether ``protocol`` (a wsproto connection) writes plain server frames (the fast path)."""
    return plain_frames(protocol) == "server"


def _header(size: int, mask_bit: int) -> bytes:
    if size < 126:
        return bytes((0x81, mask_bit | size))
    if size < 65536:
        return bytes((0x81, mask_bit | 0x7E)) + size.to_bytes(2, "big")
    return bytes((0x81, mask_bit | 0x7F)) + size.to_bytes(8, "big")


def _masked_text_frame(text: str, key: bytes) -> bytes:
    """A final text frame of ``text``, masked with the 4 bytes of ``key`` (a client's)."""
    payload = text.encode()
    size = len(payload)
    if not size:
        return _header(0, 0x80) + key
    mask = (key * ((size >> 2) + 1))[:size]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(
        size, "little"
    )
    return _header(size, 0x80) + key + masked


#: Recent texts' frames (a fan-out writes one event to many clients), and their bounds.
_FRAMES: dict[str, bytes] = {}
_FRAMES_KEPT = 512
_FRAME_KEPT_BYTES = 8192


def _text_frame(text: str, cache: bool = True) -> bytes:
    """A final, unmasked text frame of ``text`` (a server's, no extension); ``cache``: kept."""
    frame = _FRAMES.get(text)
    if frame is not None:
        return frame
    payload = text.encode()
    size = len(payload)
    frame = _header(size, 0) + payload
    if cache and size <= _FRAME_KEPT_BYTES:
        if len(_FRAMES) >= _FRAMES_KEPT:
            _FRAMES.clear()
        _FRAMES[text] = frame
    return frame


async def write_batch(
    ws: WebSocketConnection, messages: Sequence[str | bytes], *, cache: bool = True
) -> None:
    """Send ``messages`` in one write, as ``send_message`` sends one each.

    ``cache``: as :func:`encode_messages`'s.

    Raises:
        trio_websocket.ConnectionClosed: if the connection is closing or closed
            (checked first, as ``send_message`` does), or the stream broke.
    """
    if ws._close_reason is not None:
        raise ConnectionClosed(ws._close_reason)
    if ws._wsproto.state is not WsState.OPEN:
        # Not a state send_message leaves us in; let it say what to.
        for message in messages:
            await ws.send_message(message)
        return
    data = encode_messages(ws, messages, cache=cache)
    async with ws._stream_lock:
        try:
            await ws._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            broken = True
        else:
            broken = False
    if broken:  # outside the lock: the abort may send through it
        await ws._abort_web_socket()
        raise ConnectionClosed(ws._close_reason)


def swap_send_lock(ws: object, lock: SendLock) -> bool:
    """Put ``lock`` in place of trio-websocket 0.12's free ``StrictFIFOLock``; ``False``: kept.

    Only a free lock of that exact type is replaced: a task in the middle of
    a send gives back the lock it took, so swapping it under that task would
    let the next send write at the same time; and a lock of another kind
    belongs to a trio-websocket whose needs we do not know.
    """
    current = getattr(ws, "_stream_lock", None)
    if type(current) is not trio.StrictFIFOLock or current.locked():
        return False
    ws._stream_lock = lock  # type: ignore[attr-defined]
    return True


def fast_text_reads(ws: object) -> bool:
    """Have ``ws``'s reader parse plain text frames itself (:mod:`._wsread`); ``False``: kept.

    For an open client websocket whose wsproto has the internals
    :mod:`._wsread` reads; any other keeps its wsproto as it is.
    """
    fast = fast_reads(getattr(ws, "_wsproto", None))
    if fast is None:
        return False
    ws._wsproto = fast  # type: ignore[attr-defined]
    return True


def replace_stream(ws: object, old: trio.abc.Stream, new: trio.abc.Stream) -> None:
    """Have ``ws`` read and write ``new`` where it used ``old`` (no-op otherwise)."""
    if getattr(ws, "_stream", None) is old:
        ws._stream = new  # type: ignore[attr-defined]


class EagerSend:
    """The send side of trio-websocket's message queue, without a pass of the scheduler each.

    trio-websocket's reader hands every message to ``await
    self._send_channel.send()``, whose checkpoint is one pass of the
    scheduler per message: a resume of 100 channels, answered by 101 frames
    in one write, cost 101 task switches each way between the reader and the
    handshake. This takes a message into the same queue without one while
    the queue has room (the reader still checkpoints once per read from the
    socket), and waits as the channel does when it is full: same queue, same
    order, same bound.
    """

    def __init__(self, channel: trio.MemorySendChannel[str | bytes]) -> None:
        self.channel = channel

    async def send(self, message: str | bytes) -> None:
        """Queue ``message`` (``ClosedResourceError``, ``BrokenResourceError`` as the channel's)."""
        try:
            self.channel.send_nowait(message)
        except trio.WouldBlock:
            await self.channel.send(message)

    async def aclose(self) -> None:
        """Close the channel (trio-websocket's close of the websocket)."""
        await self.channel.aclose()


@contextlib.contextmanager
def eager_message_sends(ws: object) -> Iterator[None]:
    """Within the block, ``ws``'s reader queues messages through :class:`EagerSend`.

    A no-op for a ``ws`` without trio-websocket 0.12's memory channel there;
    the channel is put back on the way out (unless something else replaced it).
    """
    channel = getattr(ws, "_send_channel", None)
    if not isinstance(channel, trio.MemorySendChannel):
        yield
        return
    eager = EagerSend(channel)
    ws._send_channel = eager  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if getattr(ws, "_send_channel", None) is eager:
            ws._send_channel = channel  # type: ignore[attr-defined]


def replace_message_channels(ws: WebSocketConnection, sink: Any) -> None:
    """Have trio-websocket's reader ``send`` to ``sink`` and ``get_message`` read it.

    ``sink`` needs ``send``, ``receive`` and ``aclose`` as a memory channel's.
    """
    ws._send_channel = ws._recv_channel = sink
