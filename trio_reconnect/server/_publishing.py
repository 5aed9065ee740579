"""The application's publish (:meth:`~trio_reconnect.server.ReconnectServer.publish`), applied."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import trio

from ._logbase import EventLog, LogUnavailableError
from ._parts import NodeParts

__all__ = ["publish"]


async def publish(parts: NodeParts, log: EventLog, args: Sequence[Any]) -> str:
    """Append ``args == (data,)`` to the log, or ``(channel, data)`` to a channel; the new id."""
    if len(args) not in (1, 2):
        raise TypeError(f"publish takes (data) or (channel, data), got {len(args)} arguments")
    await trio.lowlevel.checkpoint_if_cancelled()
    # Fail before the event enters the log; and store a copy, as a store
    # would: the fan-out encodes the event later, so an in-memory log
    # holding the caller's object would send what it was mutated into.
    data = json.loads(json.dumps(args[-1], allow_nan=False))
    if len(args) == 2:
        channels = parts.channels
        if channels is None:
            raise RuntimeError("this server has no channel store (channels=None)")
        return await channels.publish(args[0], data)
    try:
        event_id = await log.append(data)
    except LogUnavailableError as error:
        parts.watch.log_unavailable(error)
        raise
    parts.watch.log_available()  # an append that succeeded proves the store is back
    parts.counts.events_published += 1
    return event_id
