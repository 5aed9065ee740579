"""The reconnecting client's public face: :class:`ReconnectingWebSocket`.

:func:`open_reconnecting_websocket` checks the options (one
:class:`~._options.ClientOptions`), opens a nursery around the application's
``async with`` block and runs the :class:`~._supervisor.Supervisor` in it,
which makes the attempts (:mod:`._attempt`) and keeps the state. This module
holds what the application calls: sends behind the gate, the inbox, and the
block's exit.

Delivery of application messages (client -> server), at most once:

* ``send_message`` waits on the gate, a ``trio.Event`` that is fresh for every
  connection and set when that connection's handshake (the resume, then
  ``on_connect``) has ended. Senders are served in call order (a FIFO lock is
  held while waiting on the gate).
* It returns once the whole frame was handed to the transport of a ready
  connection. That does not mean the server received it (there are no acks):
  a frame handed over just before a drop can be lost, and is not sent again.
* If the connection is lost before the whole frame was handed over, the frame
  is sent again, in full, on the next connection, after that connection's
  handshake (never before: nothing goes out of turn). Either way the server
  gets it at most once.
"""

from __future__ import annotations

import contextlib
import random as _random
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import trio
import trio_websocket

from ._attempt import Run
from ._backoff import RetryPolicy
from ._exceptions import ClientClosedError
from ._handshake import OnConnect
from ._inbox import Inbox
from ._metrics import ReconnectStatistics
from ._options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DEDUPE_WINDOW,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_REPLAY_RECEIVED,
    DEFAULT_MAX_SERVER_DELAY,
    DEFAULT_OUTBOX_BYTES,
    DEFAULT_RESUME_TIMEOUT,
    DEFAULT_STABLE_AFTER,
    ClientOptions,
    Factory,
    HeaderPairs,
)
from ._outbox import OutboxState
from ._protocol import Item
from ._publishing import Publisher
from ._retry import Disconnect
from ._settings import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
)
from ._state import ConnectionState, Transition
from ._subscriptions import Subscription
from ._supervisor import RETRIED_FAILURE_MESSAGE as RETRIED_FAILURE_MESSAGE
from ._supervisor import Supervisor
from ._transport import OpenStream
from ._turn import Turn

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_REPLAY_RECEIVED",
    "DEFAULT_MAX_SERVER_DELAY",
    "DEFAULT_OUTBOX_BYTES",
    "DEFAULT_RESUME_TIMEOUT",
    "DEFAULT_STABLE_AFTER",
    "ReconnectingWebSocket",
    "open_reconnecting_websocket",
]


class ReconnectingWebSocket:
    """A websocket that reconnects: what :func:`open_reconnecting_websocket` yields.

    Do not create one directly; use :func:`open_reconnecting_websocket`, which
    documents the options (this class takes the same ones).
    """

    def __init__(
        self,
        url: Factory[str],
        *,
        backoff: RetryPolicy | None = None,
        server_hints: bool = True,
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        give_up_after: float | None = None,
        stable_after: float = DEFAULT_STABLE_AFTER,
        resume: bool = True,
        last_event_id: str | None = None,
        resume_timeout: float = DEFAULT_RESUME_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        max_server_delay: float = DEFAULT_MAX_SERVER_DELAY,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_replay: int = DEFAULT_MAX_REPLAY_RECEIVED,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        headers: Factory[HeaderPairs] = None,
        ssl_context: Factory[ssl.SSLContext | None] = None,
        should_reconnect: Callable[[Disconnect], bool] | None = None,
        random: _random.Random | None = None,
        open_stream: OpenStream | None = None,
        on_transition: Callable[[Transition], None] | None = None,
        on_connect: OnConnect | None = None,
        subprotocols: Sequence[str] = (),
        client_id: str | None = None,
        outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
        outbox: OutboxState | None = None,
    ) -> None:
        self._setup(ClientOptions.of(locals()))

    @classmethod
    def _from_options(cls, options: ClientOptions) -> ReconnectingWebSocket:
        self = cls.__new__(cls)
        self._setup(options)
        return self

    def _setup(self, options: ClientOptions) -> None:
        self._sup = Supervisor(options)
        self._inbox: Inbox[Item] = self._sup.inbox
        self._send_turn = Turn()  # held while waiting on the gate: call order

    @property
    def _run(self) -> Run:
        return self._sup.run

    def __repr__(self) -> str:
        return f"<ReconnectingWebSocket {self._sup.display} {self._sup.state.value}>"

    # ------------------------------------------------------------------ public

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._sup.state

    @property
    def client_id(self) -> str:
        """The ``clientId`` sent in every resume frame (PROTOCOL.md 4.1)."""
        return self._sup.client_id

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, *, last_event_id: str | None = None, history: int | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribe to ``channel`` for the duration of an ``async with`` block.

        Entering waits until the server answers ``subscribed`` (on the
        current connection, or on the next ready one). The subscription then
        re-establishes itself at every reconnect (in the resume frame, before
        the gate opens), and ``async for item in sub`` yields the channel's
        items once each, in order. Leaving sends ``unsubscribe`` (when
        connected; bounded by ``close_timeout``). See docs/howto/channels.md.

        Args:
            channel: The channel's name (1 to 256 bytes of UTF-8, no control
                characters).
            last_event_id: Resume the channel from this id (for example
                persisted by a previous run); ``None``: from now.
            history: With no ``last_event_id``: ask for the channel's newest
                ``history`` events first (capped by the server).

        Raises:
            SubscriptionRefused: the server refused (``.code``: ``forbidden``,
                ``invalid``, ``limit``, ``unavailable``; ``unsupported`` for a
                version 1 server).
            ValueError: a bad channel name or ``history``, or the channel is
                already subscribed by this client.
            RuntimeError: the client was opened with ``resume=False``
                (channels need the resume protocol).
            ReconnectFailed: the client gave up.
            ClientClosedError: the client was closed.
        """
        channels = self._sup.channels
        if channels is None:
            raise RuntimeError(
                "channels need the resume protocol: this client was opened with resume=False"
            )
        self._sup.raise_if_ended()
        sub = channels.add(channel, last_event_id, history)
        try:
            await sub._wait_settled()
        except BaseException:
            with trio.CancelScope(shield=True):
                await channels.leave(sub, self._sup.options.close_timeout)
            raise
        try:
            yield sub
        finally:
            await channels.leave(sub, self._sup.options.close_timeout)

    async def publish(self, channel: str, data: Any) -> str:
        """Append ``data`` to ``channel``'s log exactly once; the new event's id.

        The publish enters the outbox (waiting, in call order, while the
        outbox holds ``outbox_bytes`` of publishes without an answer) and is
        sent at once when connected; after a drop it is sent again, same
        msgId, same order, right after the next ``ready`` and ``on_connect``,
        before anything else the application sends; after ``unavailable`` it
        is sent again after its backoff. Returns at the ``ack``. Cancelled,
        a publish never sent is withdrawn; one sent stays in the outbox and is
        sent again until answered (docs/howto/publish.md).

        Raises:
            PublishRefused: a final ``nack`` (``.code``: ``forbidden``,
                ``invalid``, ``too_large``), or ``unsupported``: the server
                speaks protocol version 1.
            ValueError: a bad channel name, ``data`` that is not JSON, or a
                publish larger than ``outbox_bytes``.
            RuntimeError: the client was opened with ``resume=False``.
            ReconnectFailed: the client gave up (it stays in :meth:`outbox_state`).
            ClientClosedError: the client was closed.
        """
        return await self._publisher().publish(channel, data)

    async def wait_acked(self) -> None:
        """Wait until every publish in the outbox has its answer (for example before leaving).

        Raises:
            ReconnectFailed: the client gave up.
            ClientClosedError: the client was closed.
        """
        await self._publisher().wait_empty()

    def outbox_state(self) -> OutboxState:
        """What to persist to publish exactly once across a restart of this process.

        The ``clientId``, the msgId counter and every publish without an
        answer, oldest first; give it back as ``outbox=``. Valid after the end too.
        """
        return self._publisher().outbox.saved(self.client_id)

    def _publisher(self) -> Publisher:
        publisher = self._sup.publisher
        if publisher is None:
            raise RuntimeError(
                "publishing needs the resume protocol: this client was opened with resume=False"
            )
        return publisher

    @property
    def last_event_id(self) -> str | None:
        """The id of the newest event received (what the next ``resume`` sends)."""
        return self._sup.cursor.last_event_id

    def statistics(self) -> ReconnectStatistics:
        """A frozen snapshot of this client's reconnect metrics.

        A reconnect (and its handshake outcome and replayed events) is
        counted when the connection's ``ready`` arrives. The events a
        handshake replays are delivered before that ``ready``, so a snapshot
        taken while the application handles them still shows the previous
        connection; after :meth:`wait_ready` returns it shows the new one. A
        server-directed close is counted when the close arrives.
        """
        return self._sup.metrics.statistics()

    async def send_message(self, message: str | bytes) -> None:
        """Send a message once a connection is ready: at most once across a drop.

        Waits on the gate until the current connection's handshake (the
        resume, then ``on_connect``) has ended. Returns once the whole frame
        was handed to the transport; that is not delivery: a frame handed
        over just before the connection drops may never reach the server,
        and it is not sent again. A frame that was *not* handed over in full
        when the connection was lost is sent on the next connection once
        its handshake has ended (never before it), and this call returns
        then. So each message reaches the server at most once; for
        exactly-once use :meth:`publish`. Concurrent callers are served in
        call order.

        Raises:
            ReconnectFailed: the client gave up (or a subclass: fatal close or refusal).
            ClientClosedError: the client was closed.
            TypeError: ``message`` is neither ``str`` nor ``bytes``.
        """
        if not isinstance(message, (str, bytes)):  # a tuple: no union object built per call
            raise TypeError(f"message must be str or bytes, got {type(message).__name__}")
        turn = self._send_turn
        # Fast path: ready, and nobody holds or waits for the turn. It skips
        # take()'s schedule point, one extra trip through the scheduler per
        # message; the websocket send below checkpoints.
        if self._sup.run.ready_ws is None or not turn.take_nowait():
            await turn.take()
        try:
            while True:
                run = self._sup.run
                ws = run.ready_ws
                if ws is None:
                    self._sup.raise_if_ended()
                    await run.gate.wait()
                    continue
                try:
                    await ws.send_message(message)
                except trio_websocket.ConnectionClosed:
                    # Not handed over in full: wait for the supervisor to
                    # notice the loss, then try the next connection.
                    await run.lost.wait()
                else:
                    return
        finally:
            turn.give_back()

    async def get_message(self) -> Item:
        """The next item, in order across reconnects.

        Returns:
            A :class:`ServerEvent`, :class:`Snapshot` or :class:`Gap` (with
            ``resume=True``), or the raw ``str``/``bytes`` of any other frame.

        Raises:
            ReconnectFailed: the client gave up.
            ClientClosedError: the client was closed.
        """
        return await self._inbox.get()

    def __aiter__(self) -> ReconnectingWebSocket:
        return self

    async def __anext__(self) -> Item:
        """The next item; the iteration ends when the client is closed.

        Raises:
            ReconnectFailed: the client gave up.
        """
        try:
            return await self._inbox.get()
        except ClientClosedError:
            raise StopAsyncIteration from None

    async def wait_ready(self) -> None:
        """Wait until a connection is ready (sends would flow now).

        Raises:
            ReconnectFailed: the client gave up.
            ClientClosedError: the client was closed.
        """
        while (run := self._sup.run).ready_ws is None:
            self._sup.raise_if_ended()
            await run.gate.wait()
        await trio.lowlevel.checkpoint()

    def reconnect_now(self) -> None:
        """Drop the current connection, or cut the current backoff short.

        For example on a network change. The next attempt starts at once; it
        does not count as a failure.

        Raises:
            ReconnectFailed: the client had already given up.
            ClientClosedError: the client was closed.
        """
        self._sup.raise_if_ended()
        self._sup.run.reconnect()


@contextlib.asynccontextmanager
async def open_reconnecting_websocket(
    url: Factory[str],
    *,
    backoff: RetryPolicy | None = None,
    server_hints: bool = True,
    max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
    give_up_after: float | None = None,
    stable_after: float = DEFAULT_STABLE_AFTER,
    resume: bool = True,
    last_event_id: str | None = None,
    resume_timeout: float = DEFAULT_RESUME_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float = DEFAULT_PING_TIMEOUT,
    max_server_delay: float = DEFAULT_MAX_SERVER_DELAY,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_replay: int = DEFAULT_MAX_REPLAY_RECEIVED,
    dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
    headers: Factory[HeaderPairs] = None,
    ssl_context: Factory[ssl.SSLContext | None] = None,
    should_reconnect: Callable[[Disconnect], bool] | None = None,
    random: _random.Random | None = None,
    open_stream: OpenStream | None = None,
    on_transition: Callable[[Transition], None] | None = None,
    on_connect: OnConnect | None = None,
    subprotocols: Sequence[str] = (),
    client_id: str | None = None,
    outbox_bytes: int = DEFAULT_OUTBOX_BYTES,
    outbox: OutboxState | None = None,
) -> AsyncIterator[ReconnectingWebSocket]:
    """Open a websocket that reconnects, for the duration of an ``async with`` block.

    Returns at once; the first connection is made in the background (sends
    wait for it). Leaving the block closes the live connection with code 1000
    (bounded by ``close_timeout``) and stops every task.

    Args:
        url: ``ws://`` or ``wss://`` URL, or a sync or async callable returning
            one, called before every attempt.
        backoff: The :class:`Backoff` policy (default: 1 s doubling to 30 s,
            full jitter), or any :class:`RetryPolicy`.
        server_hints: Follow the server's retry hints (``retryAfter`` in a
            close reason, ``Retry-After`` on a refusal); default ``True``.
            With ``False`` only the backoff times the retries.
        max_attempts: Consecutive failed attempts before giving up
            (:data:`DEFAULT_MAX_ATTEMPTS`; ``None``: never).
        give_up_after: Seconds without a stable connection before giving up
            (default ``None``: no limit).
        stable_after: Seconds a connection must stay ready before the backoff
            forgets the failure streak (:data:`DEFAULT_STABLE_AFTER`).
        resume: Speak the resume handshake of docs/reference/protocol.md (default
            ``True``). With ``False`` the gate opens when the websocket opens
            and every item is a raw message.
        last_event_id: The id to resume from on the first connection (for
            example persisted by a previous run).
        resume_timeout: Seconds from the websocket opening to ``ready``
            (:data:`DEFAULT_RESUME_TIMEOUT`).
        connect_timeout: Seconds for TCP, TLS and the websocket handshake
            (:data:`DEFAULT_CONNECT_TIMEOUT`).
        close_timeout: Seconds for the closing handshake when leaving
            (:data:`DEFAULT_CLOSE_TIMEOUT`).
        ping_interval: Seconds between pings (:data:`DEFAULT_PING_INTERVAL`;
            ``None``: no pings).
        ping_timeout: Seconds to wait for a pong before the link counts as dead
            (:data:`DEFAULT_PING_TIMEOUT`).
        max_server_delay: The clamp for server retry hints, seconds
            (:data:`DEFAULT_MAX_SERVER_DELAY`).
        max_queue: Items buffered for the application before reading pauses
            (:data:`DEFAULT_MAX_QUEUE`); while a publish waits for its ``ack``,
            up to ``outbox_bytes`` bytes of frames if that is more, so that
            the ``ack`` is read (docs/howto/publish.md). Each channel subscription has its own
            bound of as many live events: past it that channel (only) drops
            its live events and asks for them again once its reader has
            caught up (docs/howto/channels.md).
        max_message_size: Largest message accepted (larger: close 1009;
            :data:`DEFAULT_MAX_MESSAGE_SIZE`).
        max_replay: Most events one handshake may replay before the attempt
            fails (:data:`DEFAULT_MAX_REPLAY_RECEIVED`).
        dedupe_window: How many recent event ids are kept to drop duplicates
            (:data:`DEFAULT_DEDUPE_WINDOW`).
        headers: Extra request headers (mapping or pairs), or a sync or async
            callable returning them, called before every attempt (token refresh).
        ssl_context: The TLS context for ``wss://``, or a callable returning
            one before every attempt (certificate rotation).
        should_reconnect: Called with a :class:`Disconnect` for every close and
            refused handshake; return ``True`` to reconnect, ``False`` to fail.
        random: A ``random.Random`` for the jitter (seed it in tests).
        open_stream: An async callable taking a :class:`Target` and returning
            a ``trio.abc.Stream`` (default: TCP, plus TLS for ``wss://``).
        on_transition: Called with a :class:`Transition` on every state change.
        on_connect: An async callable run on every connection after the
            websocket opens (with ``resume=True``: after ``ready``) and before
            the gate opens: the application's own handshake (authenticate,
            subscribe). It is given a :class:`Connection` with
            ``send_message`` and ``get_message``; while it runs, the server's
            messages go to it, and what it leaves unread is delivered to the
            application in order. If it raises, the attempt fails and is
            retried with backoff (the error is in the attempt history and is
            passed to ``should_reconnect`` as :attr:`Disconnect.error`, so
            returning ``False`` makes it fatal). Bounded by
            ``resume_timeout``; the backoff's stability clock starts when it
            returns.
        subprotocols: The websocket subprotocols to offer, in order of
            preference (``Sec-WebSocket-Protocol``; for example
            ``["graphql-transport-ws"]``); the server's choice is checked.
        client_id: The client's ``clientId`` (PROTOCOL.md 4.1), sent in every
            resume frame: at most 128 bytes of UTF-8. Default: 128 random
            bits, hex, new for each client; pass your own to keep it across
            process restarts.
        outbox_bytes: The bound of the publish outbox, in bytes of publish
            frames (:data:`DEFAULT_OUTBOX_BYTES`): a ``publish`` waits while
            the publishes without an answer fill it (docs/howto/publish.md);
            also the receive buffer's bound past ``max_queue`` while they wait.
        outbox: The :class:`OutboxState` a previous process saved (its
            ``clientId``, msgId counter and pending publishes): they are sent
            again first, with the same msgIds, for exactly-once across restarts.

    Raises:
        ReconnectFailed: out of the block, bare, when the client gave up
            (the block is cancelled); subclasses for fatal closes and refusals.
        ValueError: for an invalid option.
    """
    options = ClientOptions.of(locals())
    ws = ReconnectingWebSocket._from_options(options)
    async with ws._sup.session():
        yield ws
