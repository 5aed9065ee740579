"""The server companion's trio driver: resume handshakes, live events, restarts.

This is the one server module that imports trio and trio-websocket. The rules
it follows live in the pure modules: frames in :mod:`trio_reconnect._protocol`,
close reasons in :mod:`trio_reconnect._hints`, the log in
:mod:`trio_reconnect.server._log` and the spreading in
:mod:`trio_reconnect.server._spread`.

Live events during a handshake
------------------------------

A client must see every event after its ``lastEventId`` exactly once, also
the events published while its handshake is running. The rule:

1. The server reads the log (``newest``, and the events to replay) and
   registers the client's outgoing queue for live events in one synchronous
   step, with no checkpoint in between. :meth:`ReconnectServer.publish` is
   synchronous between its checkpoints too, so every event is either in what
   was read from the log or in the queue, never both, never neither.
2. The handshake frames (replayed events or a snapshot, then ``ready``) are
   sent directly; the queue is not drained until ``ready`` has been sent.
3. A snapshot is produced by an async callable, so events may be published
   while it runs. Its id tells what it covers: if that id is among the queued
   events, the queued events up to and including it are dropped (the snapshot
   has them). If it is older than the point of registration, the events in
   between are sent from the log after the snapshot frame. If the log cannot
   place it at all, ``ready`` says ``lost: true``.
4. ``ready.id`` is the last event the client has when ``ready`` is sent; the
   queued events that follow are newer.

Close codes
-----------

======  ==============================================================  ==========
code    when                                                            client
======  ==============================================================  ==========
1002    the first frame is text but not a resume frame                  gives up
1003    the first frame is binary                                       gives up
1009    a frame is over ``max_message_size`` (sent by trio-websocket)   gives up
1011    ``on_message`` raised; the reason carries a retry hint          reconnects
1012    :meth:`ReconnectServer.restart`, with a spread hint             reconnects
1001    :meth:`ReconnectServer.drain` (default code), spread hint       reconnects
1013    too slow (queue full) or no resume frame in time; retry hint    reconnects
======  ==============================================================  ==========

A slow client and a silent one get 1013 rather than 1008 because a retry can
help both: the slow client resumes from its ``lastEventId`` and a stalled
network may recover, while 1008 would make a trio_reconnect client give up
for good. A wrong first frame, in contrast, means the peer does not speak the
protocol, and retrying cannot change that.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import trio
import trio_websocket
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    Endpoint,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
)
from wsproto.utilities import LocalProtocolError

from .._exceptions import ResumeProtocolError
from .._hints import HINTED_CLOSE_CODES, MAX_CLOSE_REASON_BYTES, format_close_reason
from .._protocol import (
    HandshakeOutcome,
    encode_event,
    encode_ready,
    encode_snapshot,
    parse_resume,
)
from .._validators import (
    non_negative_int,
    optional_positive_number,
    positive_int,
    positive_number,
)
from ._log import EventLog, LoggedEvent
from ._spread import AdmissionControl, SpreadPolicy, distinct_milliseconds, plan_spread

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_INCOMING_QUEUE_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_REPLAY",
    "DEFAULT_QUEUE_SIZE",
    "ClientState",
    "ClientStatistics",
    "ConnectedClient",
    "MessageHandler",
    "ReconnectServer",
    "ServerStatistics",
    "SnapshotProvider",
]

logger = logging.getLogger("trio_reconnect.server")

#: Most events replayed in one handshake; beyond it, a snapshot or ``lost``.
DEFAULT_MAX_REPLAY: Final = 1_000
#: Seconds a client has for the HTTP upgrade, and again for its resume frame.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
#: Seconds the server waits for a client to answer its close frame.
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
#: Frames (live events and :meth:`ConnectedClient.send` messages) queued per client.
DEFAULT_QUEUE_SIZE: Final = 1_024
#: Largest message accepted from a client, as measured by ``len()``
#: (trio-websocket's default); a larger one is closed with 1009.
DEFAULT_MAX_MESSAGE_SIZE: Final = 2**20
#: ``(client, message)`` pairs buffered for :meth:`ReconnectServer.messages`.
DEFAULT_INCOMING_QUEUE_SIZE: Final = 256

#: The first frame was text, but not a resume frame.
CLOSE_PROTOCOL_ERROR: Final = 1002
#: The first frame was binary.
CLOSE_UNSUPPORTED_DATA: Final = 1003
#: The application's ``on_message`` raised.
CLOSE_INTERNAL_ERROR: Final = 1011
#: Too slow to keep up with the live events, or no resume frame in time.
CLOSE_TRY_AGAIN_LATER: Final = 1013
_CLOSE_SERVICE_RESTART: Final = 1012
_CLOSE_GOING_AWAY: Final = 1001
_CLOSE_NORMAL: Final = 1000

#: An application's snapshot: ``(id of the newest event it includes, data)``.
SnapshotProvider = Callable[[], Awaitable[tuple[str | None, Any]]]
#: An application's handler for each message a ready client sends.
MessageHandler = Callable[["ConnectedClient", str | bytes], Awaitable[None]]

#: A queued frame: ``(event id, text)`` for an event, ``(None, message)`` otherwise.
_Frame = tuple[str | None, str | bytes]


class ClientState(enum.Enum):
    """Where a connected client is in its lifetime."""

    #: Accepted; waiting for or answering its resume frame.
    HANDSHAKING = "handshaking"
    #: ``ready`` was sent; live events and messages flow.
    READY = "ready"
    #: The server or the client started closing the connection.
    CLOSING = "closing"
    #: Gone.
    CLOSED = "closed"


@attrs.frozen
class ClientStatistics:
    """A snapshot of one client's connection.

    Attributes:
        id: The server-assigned client number (1, 2, ...).
        remote: The peer's address, as trio-websocket reports it.
        path: The requested resource path.
        state: Where the client is in its lifetime.
        connected_at: ``trio.current_time()`` when it was accepted.
        last_event_id: The ``lastEventId`` of its resume frame.
        outcome: How its handshake ended (``None`` until ``ready``).
        replayed: Events sent to it from the log during the handshake.
        queued: Frames waiting in its outgoing queue.
        events_sent: Live events sent to it after ``ready``.
        messages_sent: Application messages sent to it after ``ready``.
        messages_received: Messages it sent after ``ready``.
        close_code: The code the connection was closed with, if known.
        close_reason: The reason it was closed with, if any.
    """

    id: int
    remote: str
    path: str
    state: ClientState
    connected_at: float
    last_event_id: str | None
    outcome: HandshakeOutcome | None
    replayed: int
    queued: int
    events_sent: int
    messages_sent: int
    messages_received: int
    close_code: int | None
    close_reason: str | None


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
        events_published: Events published.
        events_replayed: Events sent from the log during handshakes.
        restarts: Calls of :meth:`~ReconnectServer.restart` and
            :meth:`~ReconnectServer.drain`.
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


class _Outbox:
    """A client's bounded outgoing queue.

    A deque rather than a memory channel, because the handshake must look at
    (and drop) the queued events that a snapshot covers.
    """

    __slots__ = ("_closed", "_items", "_readable", "_size", "_writable")

    def __init__(self, size: int) -> None:
        self._items: collections.deque[_Frame] = collections.deque()
        self._size = size
        self._closed = False
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, frame: _Frame) -> bool:
        """Queue ``frame``; ``False`` if the queue is full. Closed: dropped."""
        if self._closed:
            return True
        if len(self._items) >= self._size:
            return False
        self._items.append(frame)
        self._readable.unpark()
        return True

    async def put(self, frame: _Frame) -> bool:
        """Queue ``frame``, waiting for room; ``False`` if the queue is closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._items) >= self._size and not self._closed:
            await self._writable.park()
        if self._closed:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return False
        self._items.append(frame)
        self._readable.unpark()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return True

    async def get(self) -> _Frame:
        """The oldest frame, waiting for one.

        Raises:
            trio.EndOfChannel: once the queue is closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            await self._readable.park()
        if self._closed:
            raise trio.EndOfChannel
        frame = self._items.popleft()
        self._writable.unpark()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return frame

    def close(self) -> None:
        """Drop everything queued and wake every waiter."""
        self._closed = True
        self._items.clear()
        self._readable.unpark_all()
        self._writable.unpark_all()

    def event_ids(self) -> set[str]:
        """The ids of the queued events."""
        return {event_id for event_id, _ in self._items if event_id is not None}

    def drop_through(self, event_id: str) -> bool:
        """Drop queued events up to and including ``event_id``, keep other messages.

        Returns:
            Whether ``event_id`` was queued (nothing is dropped if not).
        """
        position = next(
            (i for i, (queued, _) in enumerate(self._items) if queued == event_id), None
        )
        if position is None:
            return False
        kept = [frame for frame in list(self._items)[:position] if frame[0] is None]
        for _ in range(position + 1):
            self._items.popleft()
        self._items.extendleft(reversed(kept))
        self._writable.unpark_all()
        return True


@attrs.define(eq=False)
class ConnectedClient:
    """One client connection on a :class:`ReconnectServer`.

    Created by the server; compare clients by identity. Read
    :meth:`statistics` for a consistent snapshot of its counters.

    Attributes:
        id: The server-assigned client number (1, 2, ...).
        remote: The peer's address, as trio-websocket reports it.
        path: The requested resource path.
        connected_at: ``trio.current_time()`` when it was accepted.
        state: Where the client is in its lifetime.
        last_event_id: The ``lastEventId`` of its resume frame.
        outcome: How its handshake ended (``None`` until ``ready``).
    """

    id: int
    remote: str
    path: str
    connected_at: float
    _server: ReconnectServer = attrs.field(repr=False)
    _ws: WebSocketConnection = attrs.field(repr=False)
    _outbox: _Outbox = attrs.field(repr=False)
    state: ClientState = ClientState.HANDSHAKING
    last_event_id: str | None = None
    outcome: HandshakeOutcome | None = None
    _replayed: int = 0
    _events_sent: int = 0
    _messages_sent: int = 0
    _messages_received: int = 0
    _close_code: int | None = None
    _close_reason: str | None = None
    _close_requested: bool = False
    _sending: bool = False
    _interrupted: bool = False
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, repr=False)
    _done: trio.Event = attrs.field(factory=trio.Event, repr=False)

    async def send(self, message: str | bytes) -> None:
        """Send an application message to this client.

        The message is queued behind the live events already queued, and goes
        out after ``ready``. Waits while the client's queue is full (unlike
        :meth:`ReconnectServer.publish`, which never waits for one client).

        Raises:
            trio_websocket.ConnectionClosed: if the client is closing or closed.
            TypeError: if ``message`` is neither ``str`` nor ``bytes``.
        """
        if not isinstance(message, str | bytes):
            raise TypeError(f"message must be str or bytes, got {type(message).__name__}")
        if not await self._outbox.put((None, message)):
            raise ConnectionClosed(self._closed_reason())

    async def aclose(self, code: int = _CLOSE_NORMAL, reason: str | None = None) -> None:
        """Close the connection and wait until it is closed.

        Args:
            code: The close code.
            reason: The close reason, at most 123 bytes of UTF-8.

        Raises:
            ValueError: if ``reason`` is too long.
        """
        if reason is not None and len(reason.encode("utf-8")) > MAX_CLOSE_REASON_BYTES:
            raise ValueError(f"close reason is over {MAX_CLOSE_REASON_BYTES} bytes")
        self._server._close_client(self, code, reason)
        await self._done.wait()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self._done.wait()

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of this client."""
        return ClientStatistics(
            id=self.id,
            remote=self.remote,
            path=self.path,
            state=self.state,
            connected_at=self.connected_at,
            last_event_id=self.last_event_id,
            outcome=self.outcome,
            replayed=self._replayed,
            queued=len(self._outbox),
            events_sent=self._events_sent,
            messages_sent=self._messages_sent,
            messages_received=self._messages_received,
            close_code=self._close_code,
            close_reason=self._close_reason,
        )

    def _closed_reason(self) -> CloseReason | None:
        if self._close_code is None:
            return None
        return CloseReason(self._close_code, self._close_reason)


@attrs.define(eq=False)
class ReconnectServer:
    """A websocket server speaking the reconnect protocol (docs/protocol.md).

    Every connection starts with the resume handshake: the client's first
    frame is ``{"type": "resume", "lastEventId": ...}`` and the server answers
    with a replay, a snapshot or neither, then ``ready``. After ``ready`` the
    server sends each published event to every client, and hands the
    clients' own messages to ``on_message`` or to :meth:`messages`.

    How events published during a handshake reach the client exactly once,
    and which close codes the server uses, is set out in the comment at the
    top of this module.

    Args:
        log: The event log (a :class:`~trio_reconnect.server.ReplayLog`, or
            anything implementing :class:`~trio_reconnect.server.EventLog`).
        snapshot: An async callable returning ``(event_id, data)``: the
            application's state as of event ``event_id`` (``None``: before
            any event). Used when a client cannot be replayed to, and for a
            client with no ``lastEventId``. ``None``: no snapshots.
        max_replay: Most events replayed in one handshake.
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
            when an event is published is closed with 1013.
        max_message_size: Largest message accepted from a client; a larger
            one closes it with 1009.
        incoming_queue_size: ``(client, message)`` pairs buffered for
            :meth:`messages` when there is no ``on_message``; when full, the
            clients' reads wait.
        on_message: An async callable ``(client, message)`` called for each
            message a ready client sends, in order per client. If it raises,
            that client is closed with 1011; the server goes on.
        rng: The randomness for the spread; seed it for reproducible plans.
    """

    log: EventLog
    snapshot: SnapshotProvider | None = attrs.field(default=None, kw_only=True)
    max_replay: int = attrs.field(
        default=DEFAULT_MAX_REPLAY, kw_only=True, validator=non_negative_int
    )
    spread: SpreadPolicy = attrs.field(factory=SpreadPolicy, kw_only=True)
    admission_rate: float | None = attrs.field(
        default=None, kw_only=True, validator=optional_positive_number
    )
    admission_burst: float | None = attrs.field(default=None, kw_only=True)
    handshake_timeout: float = attrs.field(
        default=DEFAULT_HANDSHAKE_TIMEOUT, kw_only=True, validator=positive_number
    )
    close_timeout: float = attrs.field(
        default=DEFAULT_CLOSE_TIMEOUT, kw_only=True, validator=positive_number
    )
    queue_size: int = attrs.field(default=DEFAULT_QUEUE_SIZE, kw_only=True, validator=positive_int)
    max_message_size: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_SIZE, kw_only=True, validator=positive_int
    )
    incoming_queue_size: int = attrs.field(
        default=DEFAULT_INCOMING_QUEUE_SIZE, kw_only=True, validator=non_negative_int
    )
    on_message: MessageHandler | None = attrs.field(default=None, kw_only=True)
    rng: random.Random = attrs.field(factory=random.Random, kw_only=True, repr=False)

    _admission: AdmissionControl = attrs.field(init=False, repr=False)
    _refuse_until: float = attrs.field(init=False, default=-math.inf, repr=False)
    #: Every accepted client, in order of arrival.
    _clients: dict[ConnectedClient, None] = attrs.field(init=False, factory=dict, repr=False)
    #: The clients whose queue receives live events.
    _live: dict[ConnectedClient, None] = attrs.field(init=False, factory=dict, repr=False)
    _incoming_send: trio.MemorySendChannel[tuple[ConnectedClient, str | bytes]] = attrs.field(
        init=False, repr=False
    )
    _incoming_receive: trio.MemoryReceiveChannel[tuple[ConnectedClient, str | bytes]] = attrs.field(
        init=False, repr=False
    )
    _next_client_id: int = attrs.field(init=False, default=1, repr=False)
    _outcomes: collections.Counter[HandshakeOutcome] = attrs.field(
        init=False, factory=collections.Counter, repr=False
    )
    _refused: int = attrs.field(init=False, default=0, repr=False)
    _protocol_errors: int = attrs.field(init=False, default=0, repr=False)
    _slow_clients: int = attrs.field(init=False, default=0, repr=False)
    _handler_errors: int = attrs.field(init=False, default=0, repr=False)
    _events_published: int = attrs.field(init=False, default=0, repr=False)
    _events_replayed: int = attrs.field(init=False, default=0, repr=False)
    _restarts: int = attrs.field(init=False, default=0, repr=False)

    def __attrs_post_init__(self) -> None:
        self._admission = AdmissionControl(
            self.admission_rate, burst=self.admission_burst, refusal_rate=self.spread.rate
        )
        self._incoming_send, self._incoming_receive = trio.open_memory_channel[
            tuple[ConnectedClient, str | bytes]
        ](self.incoming_queue_size)

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

        Any :class:`trio.abc.Listener` works, an in-memory one included.

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
            await nursery.start(trio.serve_listeners, self.serve_stream, list(listeners))
            logger.info("serving on %s", ", ".join(str(x) for x in description.listeners))
            task_status.started(description)
            await trio.sleep_forever()

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one already-open stream as one websocket connection.

        Returns when the connection is over; never raises (except
        cancellation). The stream is closed on the way out.
        """
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
        """Append an event to the log and send it to every ready client.

        The event is queued to every client without waiting; a client whose
        queue is full is closed with 1013 and a retry hint (it will resume
        from its ``lastEventId``).

        Args:
            data: The event's payload; anything :func:`json.dumps` accepts.

        Returns:
            The new event's id.

        Raises:
            TypeError: if ``data`` is not JSON-serialisable (nothing is logged).
            ValueError: if ``data`` holds NaN or an infinity, which JSON
                cannot carry (nothing is logged).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        json.dumps(data, allow_nan=False)  # fail before the event enters the log
        event_id = self.log.append(data)
        self._events_published += 1
        frame: _Frame = (event_id, encode_event(event_id, data))
        for client in list(self._live):
            if not client._outbox.put_nowait(frame):
                self._slow_clients += 1
                logger.warning(
                    "client %d is too slow (%d frames queued); closing it",
                    client.id,
                    len(client._outbox),
                )
                self._close_client(client, CLOSE_TRY_AGAIN_LATER, self._hint_reason("too slow"))
        await trio.lowlevel.cancel_shielded_checkpoint()
        return event_id

    async def restart(self, *, refuse_for: float = 0.0) -> None:
        """Close every client with 1012 and a spread ``retryAfter``.

        Same as ``drain(code=1012, reason="restarting", refuse_for=refuse_for)``.
        """
        await self.drain(code=_CLOSE_SERVICE_RESTART, reason="restarting", refuse_for=refuse_for)

    async def drain(
        self,
        *,
        code: int = _CLOSE_GOING_AWAY,
        reason: str = "going away",
        refuse_for: float = 0.0,
    ) -> None:
        """Close every client with a spread retry hint, and wait until they are gone.

        The N clients get ``retryAfter`` values planned by
        :func:`~trio_reconnect.server.plan_spread` (in whole, distinct
        milliseconds), shifted by ``refuse_for`` so that none comes back
        while new handshakes are being refused.

        Args:
            code: The close code; one of 1001, 1011, 1012, 1013, 1014 (the
                codes whose reason a client reads for a hint).
            reason: A word or two for the close reason's ``reason`` key.
            refuse_for: Seconds from now during which every new handshake is
                refused with 503 and a ``Retry-After`` that points past the
                refusal.

        Raises:
            ValueError: for another code, a negative ``refuse_for`` or a
                reason that would not fit in 123 bytes.
        """
        if code not in HINTED_CLOSE_CODES:
            raise ValueError(f"code must be one of {sorted(HINTED_CLOSE_CODES)}, got {code!r}")
        if not (math.isfinite(refuse_for) and refuse_for >= 0):
            raise ValueError(f"refuse_for must be a non-negative number, got {refuse_for!r}")
        targets = [c for c in self._clients if not c._close_requested]
        delays = distinct_milliseconds(plan_spread(len(targets), self.spread, self.rng))
        # Build every reason first, so that a reason too long for 123 bytes
        # fails before any client is closed.
        reasons = [format_close_reason(refuse_for + d, reason) for d in delays]
        # ... and also with no client connected, so that the error does not
        # depend on how many clients happen to be there.
        format_close_reason(refuse_for + self.spread.base + self.spread.window(1), reason)
        if refuse_for > 0:
            self._refuse_until = max(self._refuse_until, trio.current_time() + refuse_for)
        self._restarts += 1
        logger.info("closing %d clients with %d (%s)", len(targets), code, reason)
        for client, text in zip(targets, reasons, strict=True):
            self._close_client(client, code, text)
        for client in targets:
            await client._done.wait()
        await trio.lowlevel.checkpoint()

    def statistics(self) -> ServerStatistics:
        """A frozen snapshot of the server's counters."""
        return ServerStatistics(
            clients=len(self._clients),
            ready_clients=sum(1 for c in self._clients if c.state is ClientState.READY),
            fresh=self._outcomes[HandshakeOutcome.FRESH],
            replayed=self._outcomes[HandshakeOutcome.REPLAYED],
            snapshots=self._outcomes[HandshakeOutcome.SNAPSHOT],
            lost=self._outcomes[HandshakeOutcome.LOST],
            refused=self._refused,
            protocol_errors=self._protocol_errors,
            slow_clients=self._slow_clients,
            handler_errors=self._handler_errors,
            events_published=self._events_published,
            events_replayed=self._events_replayed,
            restarts=self._restarts,
        )

    # -- one connection ----------------------------------------------------

    def _hint_reason(self, reason: str) -> str:
        """A close reason with a one-client spread hint (base plus up to min_window)."""
        return format_close_reason(plan_spread(1, self.spread, self.rng)[0], reason)

    def _admission_decision(self, now: float) -> int | None:
        if now < self._refuse_until:
            return self._admission.refuse(now, self._refuse_until)
        return self._admission.admit(now)

    async def _handle_request(self, request: WebSocketRequest) -> None:
        retry_after = self._admission_decision(trio.current_time())
        if retry_after is not None:
            self._refused += 1
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
            self,
            ws,
            _Outbox(self.queue_size),
        )
        self._next_client_id += 1
        self._clients[client] = None
        logger.debug("client %d connected from %s", client.id, client.remote)
        await self._serve_client(client)

    def _close_client(self, client: ConnectedClient, code: int | None, reason: str | None) -> None:
        """Start closing ``client`` (synchronously). ``code=None``: already closed by the peer."""
        if client._close_requested:
            return
        client._close_requested = True
        client._close_code = code
        client._close_reason = reason
        if client.state is not ClientState.CLOSED:
            client.state = ClientState.CLOSING
        self._live.pop(client, None)
        client._outbox.close()
        if client._sending:
            # Cancelling a send midway would leave half a frame on the wire,
            # and the close frame after it would be garbage to the client.
            # Let the send finish, within close_timeout.
            client._scope.deadline = min(
                client._scope.deadline, trio.current_time() + self.close_timeout
            )
        else:
            client._scope.cancel()

    async def _send_frame(self, client: ConnectedClient, message: str | bytes) -> None:
        """Send one frame; a close requested meanwhile takes effect after it."""
        if not client._close_requested:
            client._sending = True
            try:
                await client._ws.send_message(message)
            except trio.Cancelled:
                client._interrupted = True  # half a frame may have gone out
                raise
            finally:
                client._sending = False
        if client._close_requested:
            client._scope.cancel()
            await trio.lowlevel.checkpoint()

    async def _serve_client(self, client: ConnectedClient) -> None:
        ws = client._ws
        try:
            with client._scope:
                if await self._handshake(client):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._write_loop, client)
                        await self._read_loop(client)
                        nursery.cancel_scope.cancel()
        except ConnectionClosed as exc:
            self._peer_closed(client, exc)
        except Exception:
            logger.exception("client %d failed", client.id)
            self._close_client(client, CLOSE_INTERNAL_ERROR, self._hint_reason("internal error"))
        finally:
            try:
                if not client._close_requested:
                    self._close_client(client, _CLOSE_NORMAL, None)
                if client._close_code is not None and not client._interrupted:
                    with trio.move_on_after(self.close_timeout):
                        await ws.aclose(client._close_code, client._close_reason)
            finally:
                client.state = ClientState.CLOSED
                self._live.pop(client, None)
                self._clients.pop(client, None)
                client._done.set()
                logger.debug("client %d closed (%s)", client.id, client._close_code)

    def _peer_closed(self, client: ConnectedClient, exc: ConnectionClosed) -> None:
        if client._close_requested:
            return
        self._close_client(client, None, None)
        if exc.reason is not None:
            client._close_code = exc.reason.code
            client._close_reason = exc.reason.reason

    async def _refuse_resume(self, client: ConnectedClient, code: int, reason: str) -> bool:
        self._protocol_errors += 1
        logger.info("client %d: %s; closing with %d", client.id, reason, code)
        self._close_client(client, code, reason)
        await trio.lowlevel.checkpoint()
        return False

    async def _handshake(self, client: ConnectedClient) -> bool:
        """Run the resume handshake; ``True`` once ``ready`` was sent."""
        ws = client._ws
        first: str | bytes | None = None
        with trio.move_on_after(self.handshake_timeout):
            first = await ws.get_message()
        if first is None:
            return await self._refuse_resume(
                client, CLOSE_TRY_AGAIN_LATER, self._hint_reason("no resume frame")
            )
        if isinstance(first, bytes):
            return await self._refuse_resume(
                client, CLOSE_UNSUPPORTED_DATA, "expected a text resume frame"
            )
        try:
            last = parse_resume(first)
        except ResumeProtocolError:
            return await self._refuse_resume(
                client, CLOSE_PROTOCOL_ERROR, "expected a resume frame"
            )
        client.last_event_id = last

        # One synchronous step: read the log, register for live events.
        log = self.log
        newest = log.newest
        events: Sequence[LoggedEvent] | None = None
        if last is not None or self.snapshot is None:
            count = log.count_after(last)
            if count is not None and count <= self.max_replay:
                events = log.after(last)
        self._live[client] = None
        # From here on, every published event is queued for this client.

        lost = False
        ready_id = newest
        if events is not None:
            outcome = (
                HandshakeOutcome.FRESH if last is None and not events else HandshakeOutcome.REPLAYED
            )
            await self._send_replay(client, events)
        elif self.snapshot is not None:
            snapshot = await self._take_snapshot(client)
            if snapshot is None:
                outcome, lost = HandshakeOutcome.LOST, True
            else:
                snapshot_id, frame = snapshot
                tail, lost = self._reconcile(client, snapshot_id, newest)
                outcome = HandshakeOutcome.LOST if lost else HandshakeOutcome.SNAPSHOT
                if not lost:
                    # A snapshot the log cannot place is not sent: ``lost``
                    # means neither a replay nor a snapshot (docs/protocol.md).
                    ready_id = tail[-1].id if tail else snapshot_id
                    await self._send_frame(client, frame)
                    await self._send_replay(client, tail)
        else:
            outcome, lost = HandshakeOutcome.LOST, True

        await self._send_frame(client, encode_ready(ready_id, lost=lost))
        client.outcome = outcome
        client.state = ClientState.READY
        self._outcomes[outcome] += 1
        logger.debug(
            "client %d ready: %s (lastEventId %r, ready id %r)",
            client.id,
            outcome.value,
            last,
            ready_id,
        )
        return True

    async def _send_replay(self, client: ConnectedClient, events: Sequence[LoggedEvent]) -> None:
        for event in events:
            await self._send_frame(client, encode_event(event.id, event.data))
            client._replayed += 1
            self._events_replayed += 1

    async def _take_snapshot(self, client: ConnectedClient) -> tuple[str | None, str] | None:
        """The application's snapshot as ``(id, frame)``, or ``None`` if it failed."""
        assert self.snapshot is not None
        try:
            with trio.move_on_after(self.handshake_timeout) as deadline:
                snapshot_id, data = await self.snapshot()
            if deadline.cancelled_caught:
                logger.warning(
                    "no snapshot for client %d within %s s; reporting lost events",
                    client.id,
                    self.handshake_timeout,
                )
                return None
            if snapshot_id is not None and not isinstance(snapshot_id, str):
                raise TypeError(f"snapshot id must be a str or None, got {snapshot_id!r}")
            return snapshot_id, encode_snapshot(snapshot_id, data)
        except Exception:
            logger.exception("snapshot for client %d failed; reporting lost events", client.id)
            return None

    def _reconcile(
        self, client: ConnectedClient, snapshot_id: str | None, newest: str | None
    ) -> tuple[list[LoggedEvent], bool]:
        """Fit a snapshot taken at ``snapshot_id`` to the client's queue (synchronous).

        Returns:
            The events to send after the snapshot frame, and whether events
            were lost.
        """
        if snapshot_id == newest:
            return [], False  # taken at the point of registration
        if snapshot_id is not None and client._outbox.drop_through(snapshot_id):
            return [], False  # it covers some queued events; they are dropped
        tail = self.log.after(snapshot_id)
        if tail is not None:
            queued = client._outbox.event_ids()
            missing = [event for event in tail if event.id not in queued]
            if len(missing) <= self.max_replay:
                return missing, False  # older than registration: fill the gap
        logger.warning(
            "snapshot id %r is unknown to the log; client %d is told events were lost",
            snapshot_id,
            client.id,
        )
        return [], True

    async def _write_loop(self, client: ConnectedClient) -> None:
        outbox = client._outbox
        try:
            while True:
                try:
                    event_id, message = await outbox.get()
                except trio.EndOfChannel:
                    return
                await self._send_frame(client, message)
                if event_id is None:
                    client._messages_sent += 1
                else:
                    client._events_sent += 1
        except ConnectionClosed as exc:
            self._peer_closed(client, exc)

    async def _read_loop(self, client: ConnectedClient) -> None:
        ws = client._ws
        try:
            while True:
                message = await ws.get_message()
                client._messages_received += 1
                if self.on_message is None:
                    try:
                        await self._incoming_send.send((client, message))
                    except trio.BrokenResourceError:
                        logger.debug("messages() was closed; dropping a message")
                    continue
                try:
                    await self.on_message(client, message)
                except Exception:
                    self._handler_errors += 1
                    logger.exception("on_message failed for client %d; closing it", client.id)
                    self._close_client(
                        client, CLOSE_INTERNAL_ERROR, self._hint_reason("internal error")
                    )
                    return
        except ConnectionClosed as exc:
            self._peer_closed(client, exc)
