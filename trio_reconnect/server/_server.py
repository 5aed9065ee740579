"""The server companion's node: accept, admission, clients, drains, statistics.

This module wires the roles together; each rule lives in its own module:

========================  ===================================================
``_logbase``              the async event-log contract and the id rules
``_log``                  :class:`ReplayLog`, the in-memory log
``_planner`` (pure)       replay / snapshot / lost, the ready id, the filter
``_resume``               the handshake: register first, read second
``_fanout``               ONE task per node reads the log's tail for all
``_connection``           one client: queue, loops, pings, close protocol
``_spread`` (pure)        spreading a mass disconnect, admission control
``_cluster`` (pure)       what nodes publish, spreading a drain over peers
``_registry``             :class:`MemoryRegistry`
========================  ===================================================

Exactly once, on any node: a handshake registers the client's queue with the
node's one fan-out first (at the fan-out's position ``X``), reads the log
second (up to its newest ``N >= X``), sends everything through some ``C >=
N``, and its connection then drops every queued event at or below ``C`` for
as long as it lives. Reading first would lose the events appended between
the read and the registration; purging the queue once at ``ready`` would
send twice what a lagging fan-out queues afterwards. The argument in full
opens :mod:`trio_reconnect.server._resume`.

Close codes
-----------

======  ==============================================================  ==========
code    when                                                            client
======  ==============================================================  ==========
1002    the first frame is text but not a resume frame                  gives up
1003    the first frame is binary                                       gives up
1009    a frame is over ``max_message_size`` (sent by trio-websocket)   gives up
1011    ``on_message`` raised; the reason carries a retry hint          reconnects
1012    :meth:`~ReconnectServer.restart`, :meth:`~ReconnectServer.shutdown`,
        a discontinuity in the log; spread hint                         reconnects
1001    :meth:`ReconnectServer.drain` (default code), spread hint       reconnects
1013    too slow (queue full), no resume frame in time, a handshake's
        log read not done in time ("busy"), or the log is
        unavailable (past ``outage_limit``); retry hint                 reconnects
======  ==============================================================  ==========

A slow client and a silent one get 1013 rather than 1008 because a retry can
help both: the slow client resumes from its ``lastEventId`` and a stalled
network may recover, while 1008 would make a trio_reconnect client give up
for good. A wrong first frame, in contrast, means the peer does not speak the
protocol, and retrying cannot change that. A client that does not answer a
ping within ``ping_timeout`` is dropped without a close frame (nobody would
read it).

When the log is unavailable (PROTOCOL.md section 3.4)
----------------------------------------------------

Every :class:`~trio_reconnect.server.LogUnavailableError` (from the fan-out's
tail, a handshake's read, or :meth:`~ReconnectServer.publish`) marks the log
down until the fan-out's next successful read. While it is down the node
keeps its open connections, refuses new opening handshakes with 503 and a
spread ``Retry-After`` of at least ``outage_retry_after`` seconds, and
``publish`` raises (the append is never retried: it may have been stored).
When the outage outlasts ``outage_limit`` the node closes its clients with
1013 and spread hints, once per outage; they resume when the log is back and
are told exactly what they missed.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import random
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import attrs
import trio
import trio_websocket
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketRequest,
    WebSocketServer,
)
from wsproto.utilities import LocalProtocolError

from .._hints import HINTED_CLOSE_CODES, format_close_reason
from .._protocol import HandshakeOutcome
from .._settings import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
)
from .._validators import (
    non_negative_int,
    optional_positive_number,
    positive_int,
    positive_number,
)
from ._cluster import ClusterRegistry, NodeStatus, plan_cluster_drain
from ._connection import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_SERVICE_RESTART,
    CLOSE_TRY_AGAIN_LATER,
    ClientState,
    ConnectedClient,
    ConnectionSettings,
)
from ._fanout import DEFAULT_LOG_RETRY_INTERVAL, FanOut, SoleTask, Subscriber
from ._logbase import EventLog, LogDiscontinuityError, LogUnavailableError
from ._resume import Resumer, SnapshotProvider
from ._spread import AdmissionControl, SpreadPolicy, distinct_milliseconds, plan_spread

__all__ = [
    "DEFAULT_ANNOUNCE_INTERVAL",
    "DEFAULT_ANNOUNCE_TTL",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_INCOMING_QUEUE_SIZE",
    "DEFAULT_MAX_REPLAY",
    "DEFAULT_OUTAGE_LIMIT",
    "DEFAULT_OUTAGE_RETRY_AFTER",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_STOP_SIGNALS",
    "DrainSummary",
    "MessageHandler",
    "ReconnectServer",
    "ServerStatistics",
]

logger = logging.getLogger("trio_reconnect.server")

#: Most events replayed in one handshake; beyond it, a snapshot or ``lost``.
DEFAULT_MAX_REPLAY: Final = 1_000
#: Seconds a client has for the HTTP upgrade, and again for its resume frame.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
#: Frames (live events and :meth:`ConnectedClient.send` messages) queued per client.
DEFAULT_QUEUE_SIZE: Final = 1_024
#: ``(client, message)`` pairs buffered for :meth:`ReconnectServer.messages`.
DEFAULT_INCOMING_QUEUE_SIZE: Final = 256
#: Seconds :meth:`ReconnectServer.shutdown` waits for the drained clients to go.
DEFAULT_DRAIN_TIMEOUT: Final = 10.0
#: Seconds the log may stay unavailable before the node closes its clients.
DEFAULT_OUTAGE_LIMIT: Final = 30.0
#: Least ``Retry-After`` (seconds) of a handshake refused while the log is down.
DEFAULT_OUTAGE_RETRY_AFTER: Final = 5.0
#: Seconds between a node's announcements in its cluster registry.
DEFAULT_ANNOUNCE_INTERVAL: Final = 1.0
#: Seconds an announcement counts as alive (a few missed announcements).
DEFAULT_ANNOUNCE_TTL: Final = 5.0
#: The signals :meth:`ReconnectServer.serve_until_signal` drains on.
DEFAULT_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)

#: Settings that the node's parts copy when it is created: assigning one later raises.
_FIXED: Final = attrs.setters.frozen

#: An application's handler for each message a ready client sends.
MessageHandler = Callable[[ConnectedClient, str | bytes], Awaitable[None]]


@attrs.frozen
class ServerStatistics:
    """A snapshot of a :class:`ReconnectServer`.

    Attributes:
        clients: Clients connected now (handshaking or ready).
        ready_clients: Of those, the ones past ``ready``.
        fresh: Handshakes that ended fresh (no ``lastEventId``, empty log).
        replayed: Handshakes that replayed the missed events (possibly none).
        snapshots: Handshakes that sent a snapshot.
        lost: Handshakes that ended with ``lost: true``.
        refused: Opening handshakes refused with HTTP 503.
        protocol_errors: Clients closed for a bad or missing resume frame.
        slow_clients: Clients closed because their queue was full.
        handler_errors: Clients closed because ``on_message`` raised.
        events_published: Events published by this node.
        events_replayed: Events sent from the log during handshakes.
        restarts: Calls of :meth:`~ReconnectServer.restart`,
            :meth:`~ReconnectServer.drain` and :meth:`~ReconnectServer.shutdown`.
        half_open: Clients dropped because they did not answer a ping.
        log_errors: Log calls that failed because the log was unavailable.
        log_discontinuities: Times the fan-out found the log no longer
            holding what its clients were to get (each closes every client).
        busy: Clients closed with 1013 because a log read of their handshake
            did not end within ``handshake_timeout`` (the node was too busy,
            the log did not fail; it is not a log error).
    """

    clients: int
    ready_clients: int
    fresh: int
    replayed: int
    snapshots: int
    lost: int
    refused: int
    protocol_errors: int
    slow_clients: int
    handler_errors: int
    events_published: int
    events_replayed: int
    restarts: int
    half_open: int = 0
    log_errors: int = 0
    log_discontinuities: int = 0
    busy: int = 0


@attrs.frozen
class DrainSummary:
    """What a drain (or a graceful stop) did.

    Attributes:
        drained: Clients closed with a spread hint.
        aborted: Of those, the ones still connected when the wait ran out
            (dropped without waiting further).
        window: Seconds the hints were spread over (after the ``base``).
        survivors: The peer nodes the clients were spread over (empty
            without a registry, or with no live peer).
        seconds: How long the drain took.
        signal: The signal that started a graceful stop, if one did.
    """

    drained: int
    aborted: int
    window: float
    survivors: tuple[str, ...] = ()
    seconds: float = 0.0
    signal: int | None = None

    def describe(self) -> str:
        """One line for a log: what was drained, how, and how long it took."""
        cause = f"{signal.Signals(self.signal).name}: " if self.signal is not None else ""
        peers = f" over {len(self.survivors)} peer nodes" if self.survivors else ""
        return (
            f"{cause}drained {self.drained} clients with spread hints over "
            f"{self.window:.2f} s{peers} in {self.seconds:.2f} s"
            f" ({self.aborted} did not leave in time)"
        )


@attrs.define(eq=False)
class ReconnectServer:
    """A websocket server node speaking the reconnect protocol (docs/protocol.md).

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

    _admission: AdmissionControl = attrs.field(init=False, repr=False)
    _settings: ConnectionSettings = attrs.field(init=False, repr=False)
    _hooks: _NodeHooks = attrs.field(init=False, repr=False)
    _fanout: FanOut = attrs.field(init=False, repr=False)
    _fanout_task: SoleTask = attrs.field(init=False, repr=False)
    _resumer: Resumer = attrs.field(init=False, repr=False)
    _refuse_until: float = attrs.field(init=False, default=-math.inf, repr=False)
    _stopping: bool = attrs.field(init=False, default=False, repr=False)
    #: On the registry's clock: when the window of this node's last drain ends.
    _drain_ends: float | None = attrs.field(init=False, default=None, repr=False)
    #: The open drain window of the process this one replaced under its name.
    _inherited_ends: float | None = attrs.field(init=False, default=None, repr=False)
    #: Whether a stop has left the registry (no more announcements).
    _left: bool = attrs.field(init=False, default=False, repr=False)
    #: ``trio.current_time()`` when the log went down (``None``: it is up).
    _log_down_since: float | None = attrs.field(init=False, default=None, repr=False)
    _outage_closed: bool = attrs.field(init=False, default=False, repr=False)
    #: The waits of drains in progress (a second stop signal ends them).
    _drain_waits: set[trio.CancelScope] = attrs.field(init=False, factory=set, repr=False)
    #: Every accepted client, in order of arrival.
    _clients: dict[ConnectedClient, None] = attrs.field(init=False, factory=dict, repr=False)
    _incoming_send: trio.MemorySendChannel[tuple[ConnectedClient, str | bytes]] = attrs.field(
        init=False, repr=False
    )
    _incoming_receive: trio.MemoryReceiveChannel[tuple[ConnectedClient, str | bytes]] = attrs.field(
        init=False, repr=False
    )
    _next_client_id: int = attrs.field(init=False, default=1, repr=False)
    _counts: collections.Counter[str] = attrs.field(
        init=False, factory=collections.Counter, repr=False
    )
    _outcomes: collections.Counter[HandshakeOutcome] = attrs.field(
        init=False, factory=collections.Counter, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.registry is not None and not self.node:
            raise ValueError("a node name is required with a registry")
        self._admission = AdmissionControl(
            self.admission_rate, burst=self.admission_burst, refusal_rate=self.spread.rate
        )
        self._incoming_send, self._incoming_receive = trio.open_memory_channel[
            tuple[ConnectedClient, str | bytes]
        ](self.incoming_queue_size)
        self._settings = ConnectionSettings(
            queue_size=self.queue_size,
            close_timeout=self.close_timeout,
            handshake_timeout=self.handshake_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        self._hooks = _NodeHooks(self)
        self._fanout = FanOut(
            self.log,
            self._hooks,
            retry_interval=min(DEFAULT_LOG_RETRY_INTERVAL, self.outage_retry_after),
        )
        self._fanout_task = SoleTask(self._fanout.run)
        self._resumer = Resumer(
            self.log,
            self._fanout,
            self._hooks,
            self.snapshot,
            self.max_replay,
            self.handshake_timeout,
            self.replay_to_fresh,
        )

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
            self._handle_request,
            listeners,  # type: ignore[arg-type]  # any Listener serves; .port needs a socket
            max_message_size=self.max_message_size,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fanout_task.volunteer)
            if self.registry is not None:
                await nursery.start(self._announce_loop)
            await nursery.start(trio.serve_listeners, self._serve_stream, list(listeners))
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
            nursery.start_soon(self._fanout_task.volunteer)
            await self._serve_stream(stream)
            nursery.cancel_scope.cancel()

    async def _serve_stream(self, stream: trio.abc.Stream) -> None:
        try:
            async with trio.open_nursery() as nursery:
                request: WebSocketRequest | None = None
                with trio.move_on_after(self.handshake_timeout):
                    request = await trio_websocket.wrap_server_stream(
                        nursery, stream, max_message_size=self.max_message_size
                    )
                if request is None:
                    logger.debug("no websocket upgrade request within the handshake timeout")
                else:
                    await self._handle_request(request)
                nursery.cancel_scope.cancel()
        except* LocalProtocolError as group:
            # trio-websocket answers a ping that arrives after our close frame
            # with a pong that wsproto refuses (trio-websocket issue #184). The
            # connection was closing anyway; a restart must not fill the logs.
            logger.debug("a frame arrived after our close frame", exc_info=group)
        except* Exception as group:
            logger.error("connection failed", exc_info=group)
        finally:
            await trio.aclose_forcefully(stream)

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
        with trio.open_signal_receiver(*signals) as received:
            async with trio.open_nursery() as nursery:
                description = await nursery.start(
                    lambda task_status: self.serve(
                        host, port, ssl_context=ssl_context, task_status=task_status
                    )
                )
                task_status.started(description)
                first = None
                async for signum in received:
                    first = signum
                    break
                logger.info("%s: draining", signal.Signals(first).name if first else "signal")
                nursery.start_soon(self._cut_short, received)
                summary = await self.shutdown(drain_timeout=drain_timeout)
                nursery.cancel_scope.cancel()
        return attrs.evolve(summary, signal=first)

    async def _cut_short(self, received: Any) -> None:
        async for _ in received:
            logger.warning("second signal: not waiting for the drained clients")
            for scope in self._drain_waits:
                scope.cancel()

    # -- the application's side ---------------------------------------------

    @property
    def clients(self) -> tuple[ConnectedClient, ...]:
        """The connected clients (handshaking or ready), oldest first."""
        return tuple(self._clients)

    def messages(self) -> trio.MemoryReceiveChannel[tuple[ConnectedClient, str | bytes]]:
        """The ``(client, message)`` pairs sent by ready clients, in arrival order.

        Only used when there is no ``on_message``. Iterate it with
        ``async for client, message in server.messages():``.
        """
        return self._incoming_receive

    async def publish(self, data: Any) -> str:
        """Append an event to the log; every node's clients get it from there.

        The node's fan-out reads the event back from the log's tail and
        queues it to every ready client without waiting; a client whose
        queue is full is closed with 1013 and a retry hint (it will resume
        from its ``lastEventId``).

        Args:
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
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        # Fail before the event enters the log; and store a copy, as a store
        # would: the fan-out encodes the event later, so an in-memory log
        # holding the caller's object would send what it was mutated into.
        data = json.loads(json.dumps(data, allow_nan=False))
        try:
            event_id = await self.log.append(data)
        except LogUnavailableError as error:
            self._log_unavailable(error)
            raise
        self._log_available()  # an append that succeeded proves the store is back
        self._counts["events_published"] += 1
        return event_id

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
        return await self._drain(code, reason, refuse_for=refuse_for, wait=None)

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
        if not (math.isfinite(drain_timeout) and drain_timeout > 0):
            raise ValueError(f"drain_timeout must be a positive number, got {drain_timeout!r}")
        self._stopping = True
        self._refuse_until = max(self._refuse_until, trio.current_time() + drain_timeout)
        summary = await self._drain(code, reason, refuse_for=0.0, wait=drain_timeout)
        if self.registry is not None:
            await self._leave_registry(self.registry)
        return summary

    def statistics(self) -> ServerStatistics:
        """A frozen snapshot of the server's counters."""
        counts = self._counts
        return ServerStatistics(
            clients=len(self._clients),
            ready_clients=sum(1 for c in self._clients if c.state is ClientState.READY),
            fresh=self._outcomes[HandshakeOutcome.FRESH],
            replayed=self._outcomes[HandshakeOutcome.REPLAYED],
            snapshots=self._outcomes[HandshakeOutcome.SNAPSHOT],
            lost=self._outcomes[HandshakeOutcome.LOST],
            refused=counts["refused"],
            protocol_errors=counts["protocol_errors"],
            slow_clients=counts["slow_clients"],
            handler_errors=counts["handler_errors"],
            events_published=counts["events_published"],
            events_replayed=counts["events_replayed"],
            restarts=counts["restarts"],
            half_open=counts["half_open"],
            log_errors=counts["log_errors"],
            log_discontinuities=counts["log_discontinuities"],
            busy=counts["busy"],
        )

    # -- drains ------------------------------------------------------------

    async def _drain(
        self, code: int, reason: str, *, refuse_for: float, wait: float | None
    ) -> DrainSummary:
        if code not in HINTED_CLOSE_CODES:
            raise ValueError(f"code must be one of {sorted(HINTED_CLOSE_CODES)}, got {code!r}")
        if not (math.isfinite(refuse_for) and refuse_for >= 0):
            raise ValueError(f"refuse_for must be a non-negative number, got {refuse_for!r}")
        # A reason too long for 123 bytes fails before any client is closed,
        # with no client connected too (the error must not depend on how many
        # happen to be there).
        format_close_reason(refuse_for + self.spread.base + self.spread.window(1), reason)
        started = trio.current_time()
        if refuse_for > 0:
            self._refuse_until = max(self._refuse_until, started + refuse_for)
        self._counts["restarts"] += 1
        policy, survivors = await self._drain_policy()
        targets = [c for c in self._clients if not c.closing]
        self._close_spread(targets, code, reason, policy, shift=refuse_for)
        aborted = 0
        with trio.move_on_after(math.inf if wait is None else wait) as waiting:
            self._drain_waits.add(waiting)
            try:
                for client in targets:
                    await client.wait_closed()
            finally:
                self._drain_waits.discard(waiting)
        for client in targets:
            if client.state is not ClientState.CLOSED:
                aborted += 1
                client.abort()
        for client in targets:
            await client.wait_closed()
        await trio.lowlevel.checkpoint()
        return DrainSummary(
            drained=len(targets),
            aborted=aborted,
            window=policy.window(len(targets)) if targets else 0.0,
            survivors=survivors,
            seconds=trio.current_time() - started,
        )

    async def _drain_policy(self) -> tuple[SpreadPolicy, tuple[str, ...]]:
        """The spread of a drain: over the cluster with a registry (announcing it), else local."""
        if self.registry is None:
            return self.spread, ()
        assert self.node is not None
        try:
            nodes = await self.registry.nodes()
            count = sum(1 for c in self._clients if not c.closing)
            plan = plan_cluster_drain(
                count, me=self.node, nodes=nodes, now=self.registry.now(), policy=self.spread
            )
            self._drain_ends = plan.ends
            await self.registry.announce(self._status(), ttl=self.announce_ttl)
        except Exception:
            logger.warning("cluster registry failed; spreading the drain locally", exc_info=True)
            return self.spread, ()
        return plan.spread, plan.survivors

    def _close_spread(
        self,
        targets: Sequence[ConnectedClient],
        code: int,
        reason: str,
        policy: SpreadPolicy,
        *,
        shift: float = 0.0,
    ) -> None:
        """Start closing ``targets`` with distinct spread hints (synchronously)."""
        delays = distinct_milliseconds(plan_spread(len(targets), policy, self.rng))
        reasons = [format_close_reason(shift + d, reason) for d in delays]
        logger.info("closing %d clients with %d (%s)", len(targets), code, reason)
        for client, text in zip(targets, reasons, strict=True):
            client.close(code, text)

    # -- the cluster registry ------------------------------------------------

    def _status(self) -> NodeStatus:
        assert self.node is not None
        now = self.registry.now() if self.registry is not None else 0.0
        ends = self._drain_ends
        draining = self._stopping or (ends is not None and now < ends)
        if not draining:
            inherited = self._inherited_ends
            ends = inherited if inherited is not None and now < inherited else None
        rate = self.admission_rate if self.admission_rate is not None else self.spread.rate
        return NodeStatus(self.node, rate, draining=draining, drain_ends=ends)

    async def _inherit_window(self, registry: ClusterRegistry) -> None:
        """Carry the open drain window of the process this one replaces (same name)."""
        try:
            nodes = await registry.nodes()
        except Exception:
            logger.warning("could not read the cluster registry", exc_info=True)
            return
        now = registry.now()
        for status in nodes:
            ends = status.drain_ends
            if status.node == self.node and ends is not None and ends > now:
                self._inherited_ends = ends

    async def _leave_registry(self, registry: ClusterRegistry) -> None:
        """Withdraw after a stop, or leave the draining status until the window ends."""
        assert self.node is not None
        self._left = True
        try:
            ends = self._drain_ends
            remaining = ends - registry.now() if ends is not None else 0.0
            if remaining > 0:
                await registry.announce(self._status(), ttl=remaining)
            else:
                await registry.withdraw(self.node)
        except Exception:
            logger.warning("could not withdraw node %s", self.node, exc_info=True)

    async def _announce_loop(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        assert self.registry is not None
        await self._inherit_window(self.registry)
        started = False
        while True:
            try:
                if not self._left:
                    await self.registry.announce(self._status(), ttl=self.announce_ttl)
            except Exception:
                logger.warning("could not announce node %s", self.node, exc_info=True)
            if not started:
                started = True
                task_status.started()
            await trio.sleep(self.announce_interval)

    # -- the log's health ----------------------------------------------------

    def _log_unavailable(self, error: LogUnavailableError) -> None:
        self._counts["log_errors"] += 1
        now = trio.current_time()
        if self._log_down_since is None:
            self._log_down_since = now
            logger.warning("the event log is unavailable (%s); refusing new handshakes", error)
            return
        limit = self.outage_limit
        if limit is not None and not self._outage_closed and now - self._log_down_since >= limit:
            self._outage_closed = True
            targets = [c for c in self._clients if not c.closing]
            logger.warning(
                "the event log has been unavailable for %.1f s; closing %d clients",
                now - self._log_down_since,
                len(targets),
            )
            self._close_spread(targets, CLOSE_TRY_AGAIN_LATER, "log unavailable", self.spread)

    def _log_available(self) -> None:
        if self._log_down_since is not None:
            logger.warning(
                "the event log is back after %.1f s", trio.current_time() - self._log_down_since
            )
            self._log_down_since = None
            self._outage_closed = False

    def _discontinuity(self, clients: Sequence[Subscriber], error: LogDiscontinuityError) -> None:
        self._counts["log_discontinuities"] += 1
        targets = [c for c in clients if isinstance(c, ConnectedClient) and not c.closing]
        self._close_spread(targets, CLOSE_SERVICE_RESTART, "log reset", self.spread)

    # -- one connection ----------------------------------------------------

    def _hint_reason(self, reason: str) -> str:
        """A close reason with a one-client spread hint (base plus up to min_window)."""
        return format_close_reason(plan_spread(1, self.spread, self.rng)[0], reason)

    def _admission_decision(self, now: float) -> int | None:
        if self._stopping or now < self._refuse_until:
            return self._admission.refuse(now, max(now, self._refuse_until))
        if self._log_down_since is not None:
            return self._admission.refuse(now, now + self.outage_retry_after)
        return self._admission.admit(now)

    async def _handle_request(self, request: WebSocketRequest) -> None:
        retry_after = self._admission_decision(trio.current_time())
        if retry_after is not None:
            self._counts["refused"] += 1
            logger.debug("refusing a handshake; Retry-After %d", retry_after)
            with contextlib.suppress(ConnectionClosed):
                await request.reject(
                    503, extra_headers=[(b"Retry-After", str(retry_after).encode("ascii"))]
                )
            return
        try:
            ws = await request.accept()
        except ConnectionClosed:
            return
        try:
            remote = ws.remote
        except OSError:
            # getpeername() fails once the peer has reset the connection, which
            # it may do right after the upgrade: a client gone, not a failure.
            logger.debug("a client left right after its upgrade")
            return
        client = ConnectedClient(
            self._next_client_id,
            f"{remote.address}:{remote.port}" if isinstance(remote, Endpoint) else remote,
            request.path,
            trio.current_time(),
            ws,
            self._settings,
            self._hooks,
        )
        self._next_client_id += 1
        self._clients[client] = None
        logger.debug("client %d connected from %s", client.id, client.remote)
        await client.run(self._resumer)


@attrs.define(eq=False)
class _NodeHooks:
    """The node's side of the connection, handshake and fan-out interfaces."""

    server: ReconnectServer

    # ConnectionHooks
    def hint_reason(self, reason: str) -> str:
        return self.server._hint_reason(reason)

    async def received(self, client: ConnectedClient, message: str | bytes) -> None:
        server = self.server
        if server.on_message is None:
            try:
                await server._incoming_send.send((client, message))
            except trio.BrokenResourceError:
                logger.debug("messages() was closed; dropping a message")
            return
        try:
            await server.on_message(client, message)
        except Exception:
            server._counts["handler_errors"] += 1
            logger.exception("on_message failed for client %d; closing it", client.id)
            client.close(CLOSE_INTERNAL_ERROR, server._hint_reason("internal error"))

    def too_slow(self, client: ConnectedClient) -> None:
        self.server._counts["slow_clients"] += 1
        logger.warning(
            "client %d is too slow (%d frames queued); closing it",
            client.id,
            client.statistics().queued,
        )
        client.close(CLOSE_TRY_AGAIN_LATER, self.server._hint_reason("too slow"))

    def half_open(self, client: ConnectedClient) -> None:
        self.server._counts["half_open"] += 1
        logger.info(
            "client %d did not answer a ping within %s s; dropping it",
            client.id,
            self.server.ping_timeout,
        )

    def leaving(self, client: ConnectedClient) -> None:
        self.server._fanout.unregister(client)

    def gone(self, client: ConnectedClient) -> None:
        self.server._fanout.unregister(client)
        self.server._clients.pop(client, None)
        logger.debug("client %d closed (%s)", client.id, client.statistics().close_code)

    # ResumeHooks
    def protocol_error(self) -> None:
        self.server._counts["protocol_errors"] += 1

    def log_unavailable(self, error: LogUnavailableError) -> None:
        self.server._log_unavailable(error)

    def busy(self) -> None:
        self.server._counts["busy"] += 1

    def resumed(self, outcome: HandshakeOutcome, replayed: int) -> None:
        self.server._outcomes[outcome] += 1
        self.server._counts["events_replayed"] += replayed

    # FanOutHooks
    def log_available(self) -> None:
        self.server._log_available()

    def discontinuity(self, clients: Sequence[Subscriber], error: LogDiscontinuityError) -> None:
        self.server._discontinuity(clients, error)
