"""The cluster registry on Redis (:class:`RedisRegistry`).

:class:`RedisRegistry` keeps one key per node (``prefix:node:NAME``, its
:class:`NodeStatus` as JSON) written with ``PX ttl``, so Redis itself expires
a node that stopped announcing, with no clock shared between hosts; a set
(``prefix:names``) indexes them, and :meth:`RedisRegistry.nodes` drops the
names whose key has expired. ``now()`` is ``time.time()``, the clock that
``drain_ends`` is written on: the nodes' clocks must agree to well within a
drain window (NTP does that).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Any, Final, cast

import attrs
import coredis

from ..._validators import check_positive, positive_number
from .._cluster import NodeStatus
from ._scripts import ANNOUNCE, NODES
from ._store import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, ClientOwner, Store

__all__ = ["DEFAULT_REGISTRY_PREFIX", "RedisRegistry"]

_logger = logging.getLogger("trio_reconnect.server")

#: The key prefix a :class:`RedisRegistry` uses by default.
DEFAULT_REGISTRY_PREFIX: Final = "trio_reconnect:nodes"


@attrs.define(eq=False)
class RedisRegistry:
    """A :class:`~trio_reconnect.server.ClusterRegistry` on Redis: one expiring key per node.

    Use it as an async context manager, like :class:`RedisStreamLog`::

        async with RedisRegistry("redis://127.0.0.1:6379/0") as registry:
            await registry.announce(NodeStatus("node-a", 300.0), ttl=5.0)

    Args:
        url: The Redis URL.
        prefix: Key prefix: ``prefix:node:NAME`` per node, ``prefix:names`` the index.
        timeout: Seconds for any command; beyond it, or on a connection
            error, :class:`~trio_reconnect.server.LogUnavailableError`.
    """

    url: str = attrs.field(repr=False)  # it may hold a password
    prefix: str = attrs.field(default=DEFAULT_REGISTRY_PREFIX, kw_only=True)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, kw_only=True, validator=positive_number)
    _store: Store = attrs.field(init=False, repr=False)
    _owner: ClientOwner = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._store = Store(self.url, self.timeout, DEFAULT_MAX_CONNECTIONS)
        self._owner = self._store.owner("registry", stream_timeout=self.timeout)

    async def __aenter__(self) -> RedisRegistry:
        await self._store.open([self._owner])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._store.close()

    def now(self) -> float:
        """``time.time()``: the clock ``drain_ends`` is written on."""
        return time.time()

    async def announce(self, status: NodeStatus, *, ttl: float) -> None:
        """Publish ``status``; Redis expires it after ``ttl`` seconds."""
        check_positive("ttl", ttl)
        body = json.dumps(attrs.asdict(status), separators=(",", ":"))
        args = [status.node, body, str(max(1, math.ceil(ttl * 1000)))]

        async def op(client: coredis.Redis[bytes]) -> object:
            return await ANNOUNCE.run(client, keys=[self._key(status.node), self._names], args=args)

        await self._store.call(self._owner, op, what="announce")

    async def nodes(self) -> Sequence[NodeStatus]:
        """Every node whose announcement has not expired, sorted by name."""

        async def op(client: coredis.Redis[bytes]) -> object:
            return await NODES.run(client, keys=[self._names], args=[self.prefix + ":node:"])

        reply = cast(list[Any], await self._store.call(self._owner, op, what="nodes"))
        found: list[NodeStatus] = []
        for raw in reply:
            try:
                fields = json.loads(raw)
                found.append(NodeStatus(**fields))
            except (ValueError, TypeError) as exc:
                _logger.warning("ignoring a malformed node status in Redis: %r (%s)", raw, exc)
        return sorted(found, key=lambda status: status.node)

    async def withdraw(self, node: str) -> None:
        """Remove ``node`` at once."""

        async def op(client: coredis.Redis[bytes]) -> object:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete([self._key(node)])
                pipe.srem(self._names, [node])
            return None

        await self._store.call(self._owner, op, what="withdraw")

    @property
    def _names(self) -> str:
        return self.prefix + ":names"

    def _key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"
