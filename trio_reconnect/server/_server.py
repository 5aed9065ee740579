"""The server companion's node: its configuration, serving, publishing, statistics.

Each rule lives in a module of its own; :mod:`trio_reconnect.server._node`
lists them, and :mod:`trio_reconnect.server._parts` wires them together.

Exactly once, on any node: a handshake registers the client's queue with the
node's one fan-out first, reads the log second, and its connection then drops
every queued event it already sent; the argument opens :mod:`._resume`.
Close codes: :mod:`._clientbase`; the log unavailable: :mod:`._outage`; channels: :mod:`._chanfeed`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from typing import Any, Final, overload

import attrs
import trio
from trio_websocket import WebSocketServer

from .._settings import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
)
from .._validators import (
    check_positive,
    non_negative_int,
    optional_positive_number,
    positive_int,
    positive_number,
)
from ._auth import Authenticator, Authorizer
from ._chananswer import ChannelSnapshotProvider
from ._channelbase import ChannelStore
from ._clientbase import CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART
from ._cluster import ClusterRegistry
from ._connection import ConnectedClient
from ._defaults import (
    DEFAULT_ANNOUNCE_INTERVAL,
    DEFAULT_ANNOUNCE_TTL,
    DEFAULT_DEDUPE_TTL,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_INCOMING_QUEUE_SIZE,
    DEFAULT_MAX_REPLAY,
    DEFAULT_MAX_SUBSCRIPTIONS,
    DEFAULT_OUTAGE_LIMIT,
    DEFAULT_OUTAGE_RETRY_AFTER,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_STOP_SIGNALS,
)
from ._drain import DrainSummary
from ._logbase import EventLog
from ._members import PresenceInfo
from ._membersplan import presence_patterns
from ._node import MessageHandler
from ._parts import NodeParts, assemble
from ._publishing import publish
from ._resume import SnapshotProvider
from ._signals import until_signal
from ._spread import SpreadPolicy
from ._stats import ServerStatistics
from ._sweeper import DEFAULT_PRESENCE_GRACE

__all__ = [
    "DrainSummary",
    "MessageHandler",
    "ReconnectServer",
    "ServerStatistics",
]

logger = logging.getLogger("trio_reconnect.server")

#: Settings that the node's parts copy when it is created: assigning one later raises.
_FIXED: Final = attrs.setters.frozen


@attrs.define(eq=False)
class ReconnectServer:
    """A websocket server node speaking the reconnect protocol (docs/reference/protocol.md).

    Every connection starts with the resume handshake: the client's first
    frame is ``{"type": "resume", "lastEventId": ...}`` and the server answers
    with a replay, a snapshot or neither, then ``ready``. After ``ready`` the
    server sends every event of the log to every client, whichever node
    appended it, and hands the clients' own messages to ``on_message`` or to
    :meth:`messages`.

    How events appended during a handshake reach the client exactly once is
    set out at the top of :mod:`trio_reconnect.server._resume`; the close
    codes and what happens when the log is down, at the top of this module.

    Args:
        log: The event log: a :class:`~trio_reconnect.server.ReplayLog`, or
            anything implementing :class:`~trio_reconnect.server.EventLog`
            (several nodes may share one).
        snapshot: An async callable returning ``(event_id, data)``: the
            application's state as of event ``event_id`` (``None``: before
            any event). Used when a client cannot be replayed to, and for a
            client with no ``lastEventId``. ``None``: no snapshots.
        max_replay: Most events replayed in one handshake.
        replay_to_fresh: Whether a client with no ``lastEventId`` (and no
            ``snapshot`` to send it) is replayed the held history, up to
            ``max_replay`` events (the default), or starts at the newest
            event, as a feed's subscribers expect (``False``; a standalone
            ``serve`` does this).
        spread: How the returns of clients dropped at once are spread.
        admission_rate: Opening handshakes admitted per second; the excess is
            refused with HTTP 503 and a spreading ``Retry-After``. ``None``:
            no limit.
        admission_burst: Handshakes admitted at once after a quiet spell;
            ``None``: one second's worth.
        handshake_timeout: Seconds a client has for the HTTP upgrade, and
            then again for its resume frame; also how long ``snapshot`` may
            take (past it, the client is told its missed events are lost).
        close_timeout: Seconds to wait for a client to answer a close frame.
        queue_size: Frames queued per client. A client whose queue is full
            when an event arrives is closed with 1013.
        max_message_size: Largest message accepted from a client; a larger
            one closes it with 1009.
        incoming_queue_size: ``(client, message)`` pairs buffered for
            :meth:`messages` when there is no ``on_message``; when full, the
            clients' reads wait.
        on_message: An async callable ``(client, message)`` called for each
            message a ready client sends, in order per client. If it raises,
            that client is closed with 1011; the server goes on.
        ping_interval: Seconds between pings of each ready client; ``None``
            sends none. A ping is answered by the client's websocket layer,
            but only while this server reads the client's messages (so an
            ``on_message`` that blocks, or a full :meth:`messages` buffer,
            delays the answer).
        ping_timeout: Seconds a client has to answer a ping; past it, it is
            dropped as half-open (counted in ``statistics().half_open``).
        outage_limit: Seconds the log may stay unavailable before every
            client is closed with 1013 and a spread hint; ``None``: never.
        outage_retry_after: Least ``Retry-After`` of a handshake refused
            while the log is unavailable.
        registry: Where the nodes of a cluster announce themselves; with it,
            a drain spreads its clients over the live peers' admission rates
            (:func:`~trio_reconnect.server.plan_cluster_drain`). ``None``:
            one node on its own.
        node: This node's name in the registry (required with ``registry``).
        announce_interval: Seconds between announcements.
        announce_ttl: Seconds an announcement counts as alive.
        rng: The randomness for the spread; seed it for reproducible plans.
        channels: The channel store (PROTOCOL.md section 4), such as a
            :class:`~trio_reconnect.server.MemoryChannelStore`; ``None``:
            version 1 only. docs/howto/channels-server.md has the rest.
        authenticate: ``(request) -> principal`` at each upgrade, sync or
            async; raise :class:`~trio_reconnect.server.Refuse` to refuse it.
        authorize: ``(principal, channel, action) -> bool``, sync or async,
            on every subscribe and publish; ``None``: all allowed.
        max_subscriptions: Subscriptions per connection (past it: ``limit``).
        channel_snapshot: ``(channel) -> (id, data) | None``, sync or async.
        dedupe_ttl: Seconds a client's applied ``publish`` is remembered: a
            re-send within it gets the first ``ack``'s id, not a second event.
        presence: Globs (``fnmatch``) of the channels that carry presence
            (PROTOCOL.md 4.4); ``()``: none. docs/howto/presence.md.
        presence_grace: Seconds a member whose connection dropped stays a member.
        presence_info: ``(principal) -> dict``, sync or async: a member's
            ``info``; ``None``: ``{}``.
    """

    log: EventLog = attrs.field(on_setattr=_FIXED)
    snapshot: SnapshotProvider | None = attrs.field(on_setattr=_FIXED, default=None, kw_only=True)
    max_replay: int = attrs.field(
        on_setattr=_FIXED, default=DEFAULT_MAX_REPLAY, kw_only=True, validator=non_negative_int
    )
    replay_to_fresh: bool = attrs.field(on_setattr=_FIXED, default=True, kw_only=True)
    spread: SpreadPolicy = attrs.field(factory=SpreadPolicy, kw_only=True)
    admission_rate: float | None = attrs.field(
        default=None, kw_only=True, validator=optional_positive_number
    )
    admission_burst: float | None = attrs.field(default=None, kw_only=True)
    handshake_timeout: float = attrs.field(
        on_setattr=_FIXED,
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        kw_only=True,
        validator=positive_number,
    )
    close_timeout: float = attrs.field(
        on_setattr=_FIXED, default=DEFAULT_CLOSE_TIMEOUT, kw_only=True, validator=positive_number
    )
    queue_size: int = attrs.field(
        on_setattr=_FIXED, default=DEFAULT_QUEUE_SIZE, kw_only=True, validator=positive_int
    )
    max_message_size: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_SIZE, kw_only=True, validator=positive_int
    )
    incoming_queue_size: int = attrs.field(
        default=DEFAULT_INCOMING_QUEUE_SIZE, kw_only=True, validator=non_negative_int
    )
    on_message: MessageHandler | None = attrs.field(default=None, kw_only=True)
    ping_interval: float | None = attrs.field(
        on_setattr=_FIXED,
        default=DEFAULT_PING_INTERVAL,
        kw_only=True,
        validator=optional_positive_number,
    )
    ping_timeout: float = attrs.field(
        on_setattr=_FIXED, default=DEFAULT_PING_TIMEOUT, kw_only=True, validator=positive_number
    )
    outage_limit: float | None = attrs.field(
        default=DEFAULT_OUTAGE_LIMIT, kw_only=True, validator=optional_positive_number
    )
    outage_retry_after: float = attrs.field(
        on_setattr=_FIXED,
        default=DEFAULT_OUTAGE_RETRY_AFTER,
        kw_only=True,
        validator=positive_number,
    )
    registry: ClusterRegistry | None = attrs.field(default=None, kw_only=True)
    node: str | None = attrs.field(default=None, kw_only=True)
    announce_interval: float = attrs.field(
        default=DEFAULT_ANNOUNCE_INTERVAL, kw_only=True, validator=positive_number
    )
    announce_ttl: float = attrs.field(
        default=DEFAULT_ANNOUNCE_TTL, kw_only=True, validator=positive_number
    )
    rng: random.Random = attrs.field(factory=random.Random, kw_only=True, repr=False)
    channels: ChannelStore | None = attrs.field(on_setattr=_FIXED, default=None, kw_only=True)
    authenticate: Authenticator | None = attrs.field(default=None, kw_only=True)
    authorize: Authorizer | None = attrs.field(on_setattr=_FIXED, default=None, kw_only=True)
    max_subscriptions: int = attrs.field(
        on_setattr=_FIXED, default=DEFAULT_MAX_SUBSCRIPTIONS, kw_only=True, validator=positive_int
    )
    channel_snapshot: ChannelSnapshotProvider | None = attrs.field(
        on_setattr=_FIXED, default=None, kw_only=True
    )
    dedupe_ttl: float = attrs.field(
        on_setattr=_FIXED, default=DEFAULT_DEDUPE_TTL, kw_only=True, validator=positive_number
    )
    presence: tuple[str, ...] = attrs.field(
        on_setattr=_FIXED, default=(), kw_only=True, converter=presence_patterns
    )
    presence_grace: float = attrs.field(
        on_setattr=_FIXED, default=DEFAULT_PRESENCE_GRACE, kw_only=True, validator=positive_number
    )
    presence_info: PresenceInfo | None = attrs.field(on_setattr=_FIXED, default=None, kw_only=True)

    _parts: NodeParts = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.registry is not None and not self.node:
            raise ValueError("a node name is required with a registry")
        self._parts = assemble(self)

    # -- serving -----------------------------------------------------------

    async def serve(
        self,
        host: str | bytes | None,
        port: int,
        *,
        ssl_context: Any = None,
        task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve over TCP (and TLS with ``ssl_context``) until cancelled.

        Start it with ``listener = await nursery.start(server.serve, host, port)``;
        ``listener.port`` is the bound port (useful with port 0).

        Args:
            host: The interface to bind (``None``: all).
            port: The port to bind, 0 for one the kernel picks.
            ssl_context: An :class:`ssl.SSLContext` to serve ``wss://``.
            task_status: Part of the trio start protocol.
        """
        listeners: Sequence[trio.SocketListener | trio.SSLListener[trio.SocketStream]]
        if ssl_context is None:
            listeners = await trio.open_tcp_listeners(port, host=host)
        else:
            listeners = await trio.open_ssl_over_tcp_listeners(
                port, ssl_context, host=host, https_compatible=True
            )
        await self.serve_listeners(listeners, task_status=task_status)

    async def serve_listeners(
        self,
        listeners: Sequence[trio.abc.Listener[Any]],
        *,
        task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve every stream the ``listeners`` accept, until cancelled.

        Any :class:`trio.abc.Listener` works, an in-memory one included. This
        also runs the node's fan-out and, with a ``registry``, its
        announcements.

        Args:
            listeners: The listeners to accept connections from.
            task_status: Part of the trio start protocol; started with a
                trio-websocket ``WebSocketServer`` describing the listeners
                (its ``port`` and ``listeners`` properties work; the
                connections themselves are run by :meth:`serve_stream`).
        """
        description = WebSocketServer(
            self._parts.acceptor.handle_request,
            listeners,  # type: ignore[arg-type]  # any Listener serves; .port needs a socket
            max_message_size=self.max_message_size,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._parts.fanout_task.volunteer)
            if self._parts.channel_task is not None:
                nursery.start_soon(self._parts.channel_task.volunteer)
            if self.registry is not None:
                await nursery.start(self._parts.presence.run)
            await nursery.start(
                trio.serve_listeners, self._parts.acceptor.serve_stream, list(listeners)
            )
            logger.info("serving on %s", ", ".join(str(x) for x in description.listeners))
            task_status.started(description)
            await trio.sleep_forever()

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one already-open stream as one websocket connection.

        Returns when the connection is over; never raises (except
        cancellation). The stream is closed on the way out. While any
        connection is served this way, one of them also runs the node's
        fan-out (so a server needs no task of its own to deliver events).
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._parts.fanout_task.volunteer)
            if self._parts.channel_task is not None:
                nursery.start_soon(self._parts.channel_task.volunteer)
            await self._parts.acceptor.serve_stream(stream)
            nursery.cancel_scope.cancel()

    async def serve_until_signal(
        self,
        host: str | bytes | None,
        port: int,
        *,
        ssl_context: Any = None,
        signals: Iterable[int] = DEFAULT_STOP_SIGNALS,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    ) -> DrainSummary:
        """Serve until one of ``signals`` arrives, then stop gracefully (:meth:`shutdown`).

        Meant for a process's main task: SIGTERM from systemd or Kubernetes
        (give it a grace period longer than ``drain_timeout``) and Ctrl-C
        both drain, with no traceback. A second signal during the drain cuts
        the wait short.

        Args:
            host: The interface to bind (``None``: all).
            port: The port to bind, 0 for one the kernel picks.
            ssl_context: An :class:`ssl.SSLContext` to serve ``wss://``.
            signals: The signals that stop the node.
            drain_timeout: Seconds to wait for the drained clients to go.
            task_status: Part of the trio start protocol; started with the
                listener description once the port is bound and the signal
                handlers are in place.

        Returns:
            What the stop drained, with the signal that started it.
        """
        return await until_signal(
            lambda task_status: self.serve(
                host, port, ssl_context=ssl_context, task_status=task_status
            ),
            lambda: self.shutdown(drain_timeout=drain_timeout),
            self._parts.drains.cut_short,
            signals,
            task_status,
        )

    # -- the application's side ---------------------------------------------

    @property
    def clients(self) -> tuple[ConnectedClient, ...]:
        """The connected clients (handshaking or ready), oldest first."""
        return tuple(self._parts.clients)

    def messages(self) -> trio.MemoryReceiveChannel[tuple[ConnectedClient, str | bytes]]:
        """The ``(client, message)`` pairs sent by ready clients, in arrival order.

        Only used when there is no ``on_message``. Iterate it with
        ``async for client, message in server.messages():``.
        """
        return self._parts.incoming_receive

    @overload
    async def publish(self, data: Any, /) -> str: ...

    @overload
    async def publish(self, channel: str, data: Any, /) -> str: ...

    async def publish(self, *args: Any) -> str:
        """Append an event to the log, ``publish(data)``, or to a channel, ``(channel, data)``.

        The node's fan-out (for a channel: the channel feed of every node)
        reads the event back and queues it to every ready client (subscriber)
        without waiting; a client whose queue is full is closed with 1013.

        Args:
            channel: The channel (a name of 1 to 256 bytes of UTF-8).
            data: The event's payload; anything :func:`json.dumps` accepts.
                The event is what it encodes to now: changing ``data``
                afterwards changes no event.

        Returns:
            The new event's id.

        Raises:
            TypeError: if ``data`` is not JSON-serialisable (nothing is logged).
            ValueError: if ``data`` holds NaN or an infinity, which JSON
                cannot carry (nothing is logged).
            LogUnavailableError: if the log could not be reached. The event
                may or may not be stored; it is never appended twice.
            RuntimeError: a channel's event on a server without ``channels``.
        """
        return await publish(self._parts, self.log, args)

    async def restart(self, *, refuse_for: float = 0.0) -> DrainSummary:
        """Close every client with 1012 and a spread ``retryAfter``.

        Same as ``drain(code=1012, reason="restarting", refuse_for=refuse_for)``.
        """
        return await self.drain(
            code=CLOSE_SERVICE_RESTART, reason="restarting", refuse_for=refuse_for
        )

    async def drain(
        self,
        *,
        code: int = CLOSE_GOING_AWAY,
        reason: str = "going away",
        refuse_for: float = 0.0,
    ) -> DrainSummary:
        """Close every client with a spread retry hint, and wait until they are gone.

        The N clients get ``retryAfter`` values planned by
        :func:`~trio_reconnect.server.plan_spread` (in whole, distinct
        milliseconds), shifted by ``refuse_for`` so that none comes back
        while new handshakes are being refused. With a ``registry``, the
        window is planned over the live, non-draining peers by
        :func:`~trio_reconnect.server.plan_cluster_drain` (and starts where
        another node's drain ends), and the node announces ``draining`` with
        the window's end before it closes a client.

        Args:
            code: The close code; one of 1001, 1011, 1012, 1013, 1014 (the
                codes whose reason a client reads for a hint).
            reason: A word or two for the close reason's ``reason`` key.
            refuse_for: Seconds from now during which every new handshake is
                refused with 503 and a ``Retry-After`` that points past the
                refusal.

        Returns:
            What was drained.

        Raises:
            ValueError: for another code, a negative ``refuse_for`` or a
                reason that would not fit in 123 bytes.
        """
        return await self._parts.drains.drain(code, reason, refuse_for=refuse_for, wait=None)

    async def shutdown(
        self,
        *,
        code: int = CLOSE_SERVICE_RESTART,
        reason: str = "restarting",
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    ) -> DrainSummary:
        """Stop gracefully: refuse new handshakes for good, drain, wait (bounded).

        From now on every new handshake is refused with 503 and a
        ``Retry-After`` past ``drain_timeout`` (the latest this node exits).
        Every client is closed with ``code`` and a spread hint (over the
        cluster, with a ``registry``), and the node waits up to ``drain_timeout`` seconds
        for them to go; the ones still there are dropped. With a registry the
        node then leaves it: it withdraws, or, while its drain's window is
        still open, leaves its draining status until the window ends (its
        clients are still arriving at the peers; a drain elsewhere must not
        stack on them). The node keeps refusing until it is cancelled.

        Returns:
            What was drained.
        """
        check_positive("drain_timeout", drain_timeout)
        self._parts.admission.stop(trio.current_time(), drain_timeout)
        summary = await self._parts.drains.drain(code, reason, refuse_for=0.0, wait=drain_timeout)
        await self._parts.presence.leave()
        if self._parts.sweeper is not None:  # its members leave after the grace, if not back
            await self._parts.sweeper.retire()
        return summary

    def statistics(self) -> ServerStatistics:
        """A frozen snapshot of the server's counters."""
        clients = self._parts.clients
        return self._parts.counts.snapshot(clients=len(clients), ready_clients=clients.ready())
