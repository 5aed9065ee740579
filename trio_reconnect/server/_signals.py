"""Serving until a signal, then stopping gracefully (:meth:`ReconnectServer.serve_until_signal`)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
import trio
from trio_websocket import WebSocketServer

from ._drain import DrainSummary

__all__ = ["until_signal"]

logger = logging.getLogger("trio_reconnect.server")


async def until_signal(
    serve: Callable[[trio.TaskStatus[WebSocketServer]], Awaitable[None]],
    shutdown: Callable[[], Awaitable[DrainSummary]],
    cut_short: Callable[[], None],
    signals: Iterable[int],
    task_status: trio.TaskStatus[WebSocketServer],
) -> DrainSummary:
    """Run ``serve`` until one of ``signals``; then ``shutdown``, a second one cutting it short."""
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            description = await nursery.start(serve)
            task_status.started(description)
            first = None
            async for signum in received:
                first = signum
                break
            logger.info("%s: draining", signal.Signals(first).name if first else "signal")
            nursery.start_soon(_cut_short, received, cut_short)
            summary = await shutdown()
            nursery.cancel_scope.cancel()
    return attrs.evolve(summary, signal=first)


async def _cut_short(received: Any, cut_short: Callable[[], None]) -> None:
    async for _ in received:
        logger.warning("second signal: not waiting for the drained clients")
        cut_short()
