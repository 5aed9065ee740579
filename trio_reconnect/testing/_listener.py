"""The server side of a :class:`~trio_reconnect.testing.MemoryNetwork` address."""

from __future__ import annotations

import collections
import math
import ssl
from typing import Protocol

import trio

__all__ = ["MemoryListener"]


class _Connection(Protocol):
    """What a listener needs of a :class:`~trio_reconnect.testing.Link`."""

    @property
    def server_stream(self) -> trio.abc.Stream: ...

    def reset(self) -> None: ...


class _Network(Protocol):
    """What a listener needs of its :class:`~trio_reconnect.testing.MemoryNetwork`."""

    @property
    def _listeners(self) -> dict[tuple[str, int], MemoryListener]: ...


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """The server side of a :class:`MemoryNetwork` address.

    Give it to ``ReconnectServer.serve_listeners([listener])`` or to
    :func:`trio.serve_listeners`.

    Args:
        accept_rate: Connections handed to the server per second at most (a
            model of the server's raw handshake throughput); ``None``: no limit.
            Connections beyond it wait in the backlog; their clients' bytes
            wait with them, as in a kernel's accept queue.
        backlog: Connections waiting to be accepted before new ones are
            refused (``None``: no limit).
    """

    def __init__(
        self,
        network: _Network,
        host: str,
        port: int,
        *,
        accept_rate: float | None,
        backlog: int | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._network = network
        self.host = host
        self.port = port
        self.accept_rate = accept_rate
        self.backlog = backlog
        self.ssl_context = ssl_context
        self._pending: collections.deque[_Connection] = collections.deque()
        self._arrived = trio.lowlevel.ParkingLot()
        self._next_accept = -math.inf
        self._closed = False
        #: Connections handed to the server so far.
        self.accepted = 0

    def __repr__(self) -> str:
        return f"<MemoryListener {self.host}:{self.port}>"

    def _enqueue(self, link: _Connection) -> bool:
        if self._closed or (self.backlog is not None and len(self._pending) >= self.backlog):
            return False
        self._pending.append(link)
        self._arrived.unpark_all()
        return True

    async def accept(self) -> trio.abc.Stream:
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the listener was closed")
            if self._pending:
                break
            await self._arrived.park()
        if self.accept_rate is not None:
            at = max(self._next_accept, trio.current_time())
            self._next_accept = at + 1.0 / self.accept_rate
            await trio.sleep_until(at)
        else:
            await trio.lowlevel.checkpoint()
        link = self._pending.popleft()
        self.accepted += 1
        stream = link.server_stream
        if self.ssl_context is not None:
            return trio.SSLStream(stream, self.ssl_context, server_side=True)
        return stream

    async def aclose(self) -> None:
        self._closed = True
        pending, self._pending = self._pending, collections.deque()
        for link in pending:
            link.reset()
        self._arrived.unpark_all()
        self._network._listeners.pop((self.host, self.port), None)
        await trio.lowlevel.checkpoint()
