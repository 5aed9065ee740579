"""The server's roles, and what the parts of a node share: its settings and its clients.

Each rule of the server lives in its own module:

========================  ===================================================
``_logbase``              the async event-log contract and the id rules
``_log``                  :class:`~trio_reconnect.server.ReplayLog`, the in-memory log
``_planner`` (pure)       replay / snapshot / lost, the ready id
``_channelbase``          the async channel-store contract (protocol v2)
``_channels``             :class:`~trio_reconnect.server.MemoryChannelStore`
``_chanplan`` (pure)      a channel's answer, the covered filter, limits
``_chanfeed``             ONE task per node reads every channel's notifications
``_chananswer``           answering subscriptions: authorize, register, read
``_chanframes``           a v2 connection's frames: map, subscribe, publish
``_pubplan`` (pure)       a connection's publish queue: R3, bounds, batch cut
``_chanpublish``          one publish worker per connection, a batch per call
``_membersplan`` (pure)   presence's rules: release now or later, keys, gaps
``_presencebase``         the async presence-store contract (4.4)
``_presence_memory``      :class:`~trio_reconnect.server.MemoryPresenceStore`
``_members``              a node's presence: holds, lists, join/leave frames
``_sweeper``              owner liveness, the grace sweeper, queued releases
``_auth``                 the authenticate / authorize hooks, ``Refuse``
``_resume``               the handshake: register first, read second
``_fanout``               ONE task per node reads the log's tail for all
``_connection``           one client: loops, pings, close protocol
``_clientbase``           a client's states, settings, snapshot; close codes
``_outbox``               one client's bounded outgoing queue
``_verdicts`` (pure)      the covered filter, direct writes, half-open
``_direct``               writing to an idle client's socket from the fan-out
``_spread`` (pure)        spreading a mass disconnect, admission control
``_health`` (pure)        the log's health; the admission verdict
``_cluster`` (pure)       what nodes publish, a node's presence, cluster drains
``_stats``                the typed counters, the statistics snapshot
``_node``                 what the parts share: settings, the client set
``_parts``                making the parts and wiring them together
``_accept``               a new connection: upgrade, admission, run
``_hooks``                what connections and handshakes report to the node
``_outage``               the log's health applied
``_drain``                closing with spread hints; drains and stops
``_presence``             the node in its cluster registry
``_registry``             :class:`~trio_reconnect.server.MemoryRegistry`
``_server``               :class:`~trio_reconnect.server.ReconnectServer`:
                          settings, serving, publishing, statistics
``_redis/``               the Redis log and registry (the ``redis`` extra)
========================  ===================================================

:class:`~trio_reconnect.server.ReconnectServer` is the node's settings (its
public attributes; some may be reassigned while it serves, such as
``spread`` or ``outage_limit``). Each part gets them as a
:class:`NodeConfig`, and the other parts it needs
(:func:`~trio_reconnect.server._parts.assemble`); none reaches anything
private of the server or of another part.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

import attrs

from ._auth import Authenticator, Authorizer
from ._chananswer import ChannelSnapshotProvider
from ._channelbase import ChannelStore
from ._clientbase import ClientState
from ._cluster import ClusterRegistry
from ._connection import ConnectedClient
from ._logbase import EventLog
from ._members import PresenceInfo
from ._resume import SnapshotProvider
from ._spread import SpreadPolicy

__all__ = ["ClientSet", "MessageHandler", "NodeConfig", "NodeSettings"]

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
    authenticate: Authenticator | None


class NodeSettings(NodeConfig, Protocol):
    """Every setting of a node, as :func:`~trio_reconnect.server._parts.assemble` reads them."""

    log: EventLog
    snapshot: SnapshotProvider | None
    max_replay: int
    replay_to_fresh: bool
    admission_burst: float | None
    close_timeout: float
    queue_size: int
    incoming_queue_size: int
    ping_interval: float | None
    outage_retry_after: float
    channels: ChannelStore | None
    authorize: Authorizer | None
    max_subscriptions: int
    channel_snapshot: ChannelSnapshotProvider | None
    dedupe_ttl: float
    presence: tuple[str, ...]
    presence_grace: float
    presence_info: PresenceInfo | None


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
