"""The steps of a connection's handshake, between the websocket opening and the gate.

A connection opens, then the protocol's resume runs (:func:`resume`, with
``resume=True``), then the gate opens. Each step is a small function the
attempt (:mod:`._attempt`) runs in order, under the phase deadline
``resume_timeout``.
"""

from __future__ import annotations

import math

import trio
import trio_websocket

from ._cursor import Cursor
from ._exceptions import ResumeProtocolError
from ._inbox import Inbox
from ._options import ClientOptions
from ._protocol import HandshakeResult, Item, ResumeHandshake, ServerEvent

__all__ = ["resume"]


async def resume(
    ws: trio_websocket.WebSocketConnection,
    cursor: Cursor,
    inbox: Inbox[Item],
    options: ClientOptions,
    deadline: trio.CancelScope,
) -> HandshakeResult:
    """The resume handshake of docs/protocol.md: ``resume``, the replay, ``ready``.

    Raises:
        ResumeProtocolError: the server broke the protocol, or replayed more
            than ``max_replay`` events.
    """
    handshake = ResumeHandshake(cursor.last_event_id)
    await ws.send_message(handshake.frame())
    received = 0
    max_replay = options.max_replay
    while handshake.result is None:
        item = handshake.receive(await ws.get_message())
        if isinstance(item, ServerEvent):
            received += 1
            if received > max_replay:
                raise ResumeProtocolError(
                    f"the server replayed more than max_replay={max_replay} events"
                )
        if item is not None and cursor.deliver(item):
            await _deliver_replayed(inbox, item, deadline, options.resume_timeout)
    cursor.ready(handshake.result)
    return handshake.result


async def _deliver_replayed(
    inbox: Inbox[Item], item: Item, deadline: trio.CancelScope, resume_timeout: float
) -> None:
    """Buffer one handshake item; wait for the application if the buffer is full.

    The wait is the application's, not the server's, so ``resume_timeout``
    is paused during it and starts again when there is room. This keeps
    the buffer at ``max_queue`` (plus the item being added) even when
    every attempt replays ``max_replay`` events to an application that is
    not reading.
    """
    if len(inbox) + 1 < inbox.max_size:
        inbox.put_nowait(item)
        return
    deadline.deadline = math.inf
    try:
        await inbox.put(item)
    finally:
        deadline.deadline = trio.current_time() + resume_timeout
