"""Ctrl-C as a clean cancellation, for every command that runs trio (``connect``, ``demo`` ...)."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

__all__ = ["interruptible"]

T = TypeVar("T")


async def interruptible(command: Callable[[], Awaitable[T]]) -> T:
    """Run ``command`` until it returns or Ctrl-C; on Ctrl-C cancel it, raise KeyboardInterrupt.

    trio's default raises KeyboardInterrupt wherever the program happens to be,
    which can leave half-started work behind (a "coroutine was never awaited"
    warning on stderr, say). A signal receiver turns Ctrl-C into an ordinary
    cancellation, after which :func:`main` exits 130 as for any interrupt.
    """
    result: list[T] = []
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                result.append(await command())
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    if not result:
        raise KeyboardInterrupt
    return result[0]
