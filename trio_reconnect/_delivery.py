"""Delivery on a ready connection: every message into the application's inbox.

Messages are read all the time, whether or not the application reads:
trio-websocket stops answering pongs while its own queue is full, so its
queue must not be the application's buffer. Once a connection is ready,
trio-websocket's reader task delivers every message straight into the
client's bounded inbox (:class:`_DirectSink` takes the place of its internal
message channel), so that a message crosses one task switch, not two:
trio-websocket's reader, then the application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import trio
import trio_websocket

from ._cursor import Cursor
from ._inbox import Inbox
from ._overflow import frame_size
from ._protocol import Item, ServerEvent, parse_live
from ._tws import capable, message_queue, replace_message_channels
from ._wire import Malformed, parse_server_frame

if TYPE_CHECKING:
    from ._subscriptions import Channels

__all__ = ["deliver", "live_acceptor"]

# Whether a ready connection's messages are delivered by trio-websocket's
# reader straight into the inbox (see _DirectSink). Off (tests), or on a
# trio-websocket without those internals, the attempt reads with
# get_message() and puts into the inbox itself: one more task switch per
# message.
_DIRECT_DELIVERY = True


def live_acceptor(
    resume: bool, cursor: Cursor, channels: Channels | None = None
) -> Callable[[str | bytes], Item | None]:
    """What a ready connection delivers for each message (``None``: a duplicate, dropped).

    Without resume every message is delivered raw; with it an event frame
    becomes a :class:`~._protocol.ServerEvent` that moves the cursor, and
    any other frame is delivered raw. With ``channels`` (a connection whose
    ``ready`` had ``channels``: protocol version 2) each channel frame goes to
    its subscription instead (synchronously: never waits), and a malformed
    one is logged and dropped.
    """
    if resume and channels is not None:
        hub = channels

        def accept_v2(message: str | bytes) -> Item | None:
            frame = parse_server_frame(message)
            if isinstance(frame, ServerEvent):
                return frame if cursor.deliver(frame) else None
            if isinstance(frame, str | bytes):
                return frame
            if isinstance(frame, Malformed):
                hub.malformed(frame)
            else:
                hub.route(frame)
            return None

        return accept_v2

    def accept(message: str | bytes) -> Item | None:
        if not resume:
            return message
        item = parse_live(message)
        if item is message:  # not an event frame: nothing for the cursor
            return item
        return item if cursor.deliver(item) else None

    return accept


async def deliver(
    ws: trio_websocket.WebSocketConnection,
    inbox: Inbox[Item],
    accept: Callable[[str | bytes], Item | None],
    reader_ended: trio.Event,
) -> NoReturn:
    """Deliver the ready connection's messages to the inbox until it closes.

    Each message goes through ``accept`` (see :func:`live_acceptor`) first.

    Raises:
        trio_websocket.ConnectionClosed: when it has closed.
    """
    if not _can_deliver_directly(ws):
        sink = _DirectSink(accept, inbox, trio.Event())
        while True:
            await sink.send(await ws.get_message())
    sink = _DirectSink(accept, inbox, reader_ended)
    queued = message_queue(ws)
    while True:  # what trio-websocket queued before ready goes first
        try:
            message = queued.receive_nowait()
        except trio.WouldBlock:
            break
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio_websocket.ConnectionClosed(ws.closed) from None
        await sink.send(message)
    # No checkpoint since the queue was found empty: nothing can slip in
    # between. From here on trio-websocket's reader delivers.
    replace_message_channels(ws, sink)
    await reader_ended.wait()
    raise trio_websocket.ConnectionClosed(ws.closed)


class _DirectSink:
    """Takes the place of trio-websocket's message channel on a ready connection.

    trio-websocket's reader task hands each complete message to
    ``self._send_channel.send()`` and closes it with ``aclose()`` when the
    websocket closes; ``get_message()`` reads ``self._recv_channel``, and
    ``aclose()`` and a message over ``max_message_size`` close it. Put in as
    both, this object turns the reader's ``send`` into ``accept`` and a put
    into the inbox, in the reader's own task. The inbox's backpressure and
    its stall count are unchanged: a full inbox makes the reader wait, as a
    full channel did (past ``max_queue`` while a publish waits for its
    answer, up to a bound in bytes: :mod:`._overflow`). Once ``done`` is set
    (the websocket closed, or the reader ended), ``send`` refuses as a closed
    channel does, so that nothing arrives after the close, as before.

    This relies on two private attributes of trio-websocket 0.12
    (:func:`_can_deliver_directly` checks them, and the attempt falls back to
    reading with ``get_message()`` without them).
    """

    def __init__(
        self,
        accept: Callable[[str | bytes], Item | None],
        inbox: Inbox[Item],
        done: trio.Event,
    ) -> None:
        self._accept = accept
        self._inbox = inbox
        self.done = done
        self._closed = False

    async def send(self, message: str | bytes) -> None:
        if self._closed:  # only trio-websocket's reader sends, so no send follows its end
            raise trio.BrokenResourceError("the websocket is closed")
        item = self._accept(message)
        if item is not None:
            await self._inbox.put(item, frame_size(message))

    async def receive(self) -> str | bytes:
        raise trio.EndOfChannel  # get_message() turns it into ConnectionClosed

    async def aclose(self) -> None:
        self._closed = True
        self.done.set()


def _can_deliver_directly(ws: trio_websocket.WebSocketConnection) -> bool:
    return _DIRECT_DELIVERY and capable(ws)
