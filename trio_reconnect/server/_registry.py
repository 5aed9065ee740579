"""An in-memory :class:`~trio_reconnect.server.ClusterRegistry`, for nodes in one process.

The nodes of the herd simulator and of the tests share one of these; a real
cluster shares a store (the Redis registry). Expiry is lazy: an announcement
older than its TTL is simply not returned by :meth:`MemoryRegistry.nodes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import trio

from .._validators import check_positive
from ._cluster import NodeStatus

__all__ = ["MemoryRegistry"]


@attrs.define(eq=False)
class MemoryRegistry:
    """A :class:`~trio_reconnect.server.ClusterRegistry` held in memory.

    Args:
        clock: The shared clock, in seconds (``trio.current_time`` by default,
            so it follows a test's mock clock).
    """

    clock: Callable[[], float] = attrs.field(default=trio.current_time, kw_only=True)
    #: node -> (status, expiry on ``clock``), in order of first announcement.
    _entries: dict[str, tuple[NodeStatus, float]] = attrs.field(init=False, factory=dict)

    def now(self) -> float:
        """The registry's clock."""
        return self.clock()

    async def announce(self, status: NodeStatus, *, ttl: float) -> None:
        """Publish ``status``; it counts as alive for ``ttl`` seconds."""
        check_positive("ttl", ttl)
        await trio.lowlevel.checkpoint()
        self._entries[status.node] = (status, self.now() + ttl)

    async def nodes(self) -> Sequence[NodeStatus]:
        """Every node whose last announcement has not expired."""
        await trio.lowlevel.checkpoint()
        now = self.now()
        return [status for status, expires in self._entries.values() if expires > now]

    async def withdraw(self, node: str) -> None:
        """Remove ``node`` at once."""
        await trio.lowlevel.checkpoint()
        self._entries.pop(node, None)
