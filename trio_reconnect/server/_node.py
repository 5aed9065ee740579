"""What the parts of a node share: its settings, read as they are now, and its clients.

:class:`~trio_reconnect.server.ReconnectServer` is the node's configuration
(its public attributes; some may be reassigned while it serves, such as
``spread`` or ``outage_limit``) and wires the parts together:

=================  ==========================================================
``_accept``        a new connection: the upgrade, the admission verdict
``_hooks``         what a connection and a handshake report to the node
``_outage``        the log's health applied: refusing, closing, recovering
``_drain``         closing clients with spread hints, drains and stops
``_presence``      the node's announcements in a cluster registry
``_stats``         the typed counters and the statistics snapshot
=================  ==========================================================

Each part gets this :class:`NodeConfig` and the other parts it needs, and
reaches nothing private of the server or of each other.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import attrs

from ._clientbase import ClientState
from ._cluster import ClusterRegistry
from ._connection import ConnectedClient
from ._spread import SpreadPolicy

__all__ = ["ClientSet", "MessageHandler", "NodeConfig"]

#: An application's handler for each message a ready client sends.
MessageHandler = Callable[[ConnectedClient, str | bytes], Awaitable[None]]


class NodeConfig(Protocol):
    """The node's settings that its parts read when they act (a :class:`ReconnectServer`)."""

    spread: SpreadPolicy
    rng: random.Random
    admission_rate: float | None
    on_message: MessageHandler | None
    handshake_timeout: float
    max_message_size: int
    ping_timeout: float
    outage_limit: float | None
    registry: ClusterRegistry | None
    node: str | None
    announce_interval: float
    announce_ttl: float


@attrs.define(eq=False)
class ClientSet:
    """Every accepted client of a node, in order of arrival, and their numbers."""

    _clients: dict[ConnectedClient, None] = attrs.field(init=False, factory=dict)
    _next_id: int = attrs.field(init=False, default=1)

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[ConnectedClient]:
        return iter(self._clients)

    def next_id(self) -> int:
        """The number of the next client (1, 2, ...)."""
        number = self._next_id
        self._next_id += 1
        return number

    def add(self, client: ConnectedClient) -> None:
        """``client`` was accepted."""
        self._clients[client] = None

    def discard(self, client: ConnectedClient) -> None:
        """``client`` is gone."""
        self._clients.pop(client, None)

    def open(self) -> list[ConnectedClient]:
        """The clients not closing (yet): the ones a drain or an outage closes."""
        return [client for client in self._clients if not client.closing]

    def ready(self) -> int:
        """How many clients are past ``ready``."""
        return sum(1 for client in self._clients if client.state is ClientState.READY)
