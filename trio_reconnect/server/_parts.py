"""The node's parts, made and wired together once, from its settings.

:func:`assemble` builds every part of a node (:mod:`trio_reconnect.server._node`
lists the roles) and hands each the others it needs; nothing else knows how
they connect. :class:`~trio_reconnect.server.ReconnectServer` keeps the
result and calls into it.
"""

from __future__ import annotations

import attrs
import trio

from ._accept import Acceptor
from ._chananswer import ChannelAnswerer
from ._chanfeed import ChannelFeed
from ._chanframes import ChannelFrames
from ._chanpublish import Publisher
from ._clientbase import ConnectionSettings
from ._cluster import Presence
from ._connection import ConnectedClient
from ._drain import Drains, Spreader
from ._fanout import DEFAULT_LOG_RETRY_INTERVAL, FanOut, SoleTask
from ._health import Admission
from ._hooks import NodeHooks
from ._members import NodeMembers, owner_name
from ._node import ClientSet, NodeSettings
from ._outage import LogWatch
from ._presence import PresenceDriver
from ._presencebase import PresenceStore
from ._resume import Resumer
from ._spread import AdmissionControl
from ._stats import Counts
from ._sweeper import Sweeper

__all__ = ["NodeParts", "assemble"]

#: The messages of ready clients, when there is no ``on_message``.
_Incoming = tuple[ConnectedClient, str | bytes]


@attrs.frozen
class NodeParts:
    """Every part of one node (each has state; the bundle is fixed)."""

    counts: Counts
    clients: ClientSet
    admission: Admission
    watch: LogWatch
    presence: PresenceDriver
    drains: Drains
    fanout: FanOut
    fanout_task: SoleTask
    acceptor: Acceptor
    incoming_send: trio.MemorySendChannel[_Incoming]
    incoming_receive: trio.MemoryReceiveChannel[_Incoming]
    #: The node's channels and their fan-out's task (``None``: a version 1 server).
    channels: ChannelFrames | None = None
    channel_task: SoleTask | None = None
    #: The node's presence and its loop (``None``: no channel carries it).
    members: NodeMembers | None = None
    sweeper: Sweeper | None = None


def _members(config: NodeSettings, retry: float) -> tuple[NodeMembers, Sweeper] | None:
    """The node's presence, when some channels carry it (PROTOCOL.md 4.4)."""
    if not config.presence:
        return None
    make = getattr(config.channels, "presence_store", None)
    if make is None:
        raise ValueError("presence needs a channel store that keeps presence (presence_store())")
    store: PresenceStore = make()
    members = NodeMembers(
        store,
        tuple(config.presence),
        config.presence_grace,
        config.presence_info,
        owner_name(config.node),
    )
    sweeper = Sweeper(members, config.announce_interval, config.announce_ttl, retry)
    return members, sweeper


def _channels(
    config: NodeSettings, hooks: NodeHooks, counts: Counts
) -> tuple[ChannelFrames, SoleTask, tuple[NodeMembers, Sweeper] | None] | None:
    """The channel parts, when the node has a channel store."""
    store = config.channels
    if store is None:
        if config.presence:
            raise ValueError("presence needs a channel store (channels=...)")
        return None
    retry = min(DEFAULT_LOG_RETRY_INTERVAL, config.outage_retry_after)
    feed = ChannelFeed(store, config.max_replay, retry, counts=counts)
    presence = _members(config, retry)
    answerer = ChannelAnswerer(
        store,
        feed,
        config.authorize,
        config.channel_snapshot,
        config.max_replay,
        config.max_subscriptions,
        config.queue_size,
        config.handshake_timeout,
        hooks.too_slow,
        counts=counts,
    )
    publisher = Publisher(store, counts, config.dedupe_ttl)
    frames = ChannelFrames(store, answerer, config.max_message_size, publisher, counts=counts)
    hooks.channels = frames
    if presence is None:
        return frames, SoleTask(feed.run), None
    members, sweeper = presence
    feed.members = answerer.presence = members

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sweeper.run)
            await feed.run()

    return frames, SoleTask(run), presence


def assemble(config: NodeSettings) -> NodeParts:
    """Make the parts of a node with these settings, wired together."""
    counts, clients = Counts(), ClientSet()
    incoming_send, incoming_receive = trio.open_memory_channel[_Incoming](
        config.incoming_queue_size
    )
    limiter = AdmissionControl(
        config.admission_rate, burst=config.admission_burst, refusal_rate=config.spread.rate
    )
    admission = Admission(limiter, config.outage_retry_after)
    spreader = Spreader(config)
    watch = LogWatch(config, clients, counts, spreader)
    presence = PresenceDriver(config, admission, Presence(config.node or ""))
    drains = Drains(config, clients, counts, admission, spreader, presence)
    fanout = FanOut(
        config.log,
        watch,
        retry_interval=min(DEFAULT_LOG_RETRY_INTERVAL, config.outage_retry_after),
    )
    hooks = NodeHooks(config, counts, clients, fanout, watch, spreader, incoming_send)
    settings = ConnectionSettings(
        queue_size=config.queue_size,
        close_timeout=config.close_timeout,
        handshake_timeout=config.handshake_timeout,
        ping_interval=config.ping_interval,
        ping_timeout=config.ping_timeout,
    )
    channels = _channels(config, hooks, counts)
    resumer = Resumer(
        config.log,
        fanout,
        hooks,
        config.snapshot,
        config.max_replay,
        config.handshake_timeout,
        config.replay_to_fresh,
        channels[0] if channels else None,
    )
    acceptor = Acceptor(config, admission, watch.health, counts, clients, settings, hooks, resumer)
    return NodeParts(
        counts=counts,
        clients=clients,
        admission=admission,
        watch=watch,
        presence=presence,
        drains=drains,
        fanout=fanout,
        fanout_task=SoleTask(fanout.run),
        acceptor=acceptor,
        incoming_send=incoming_send,
        incoming_receive=incoming_receive,
        channels=channels[0] if channels else None,
        channel_task=channels[1] if channels else None,
        members=channels[2][0] if channels and channels[2] else None,
        sweeper=channels[2][1] if channels and channels[2] else None,
    )
