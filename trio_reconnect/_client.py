"""The reconnecting client's driver: the one client module that does I/O.

:func:`open_reconnecting_websocket` opens a nursery around the application's
``async with`` block and runs the supervisor in it. The supervisor's loop
(:meth:`ReconnectingWebSocket._supervise_loop`) is a screenful::

    CONNECTING -> (RESUMING) -> OPEN -> connection lost -> BACKING_OFF -> CONNECTING ...

Everything that decides is elsewhere and pure: what to do after an attempt,
wait (how long, why) or give up (:mod:`._retry`, with the pacer of
:mod:`._backoff` and the verdicts of :mod:`._hints`), which state changes are
legal (:data:`._state.TRANSITIONS`), the handshake frames (:mod:`._protocol`),
the metrics (:mod:`._metrics`). This module only does the I/O and the timing,
with cancel scopes. Each attempt keeps its own state in one :class:`_Run`
(its websocket, cancel scopes, phase, gate, lost event and outcome).

Timing, and the trio-websocket sharp edges it works around (shared TRIO_NOTES):

* ``connect_timeout`` covers opening the stream (TCP + TLS) and the websocket
  handshake. trio-websocket's own timeout does not bound a stalled handshake
  (its nursery waits on the reader task), so the deadline is a cancel scope
  placed OUTSIDE the nursery that holds the reader task, and is replaced by
  ``resume_timeout`` once the websocket is open, and lifted at ``ready``.
* A server that accepts TCP and closes before answering the handshake would
  leave ``wrap_client_stream`` waiting until that deadline; a small wrapper
  notices the reader task ending and fails the attempt at once.
* Messages are read all the time, whether or not the application reads:
  trio-websocket stops answering pongs while its own queue is full, so its
  queue must not be the application's buffer. Once a connection is ready,
  trio-websocket's reader task delivers every message straight into the
  client's bounded inbox (:class:`_DirectSink` takes the place of its
  internal message channel), so that a message crosses one task switch, not
  two: trio-websocket's reader, then the application. A ping that times out
  while the inbox was full at any point counts as a slow consumer, not a
  dead server.
* Ping payloads are unique per connection (a timed-out ping stays in flight).
* Errors from trio-websocket come out of the connection's nursery as
  exception groups; the supervisor takes the error apart there and never lets
  a group (or any error but ``ReconnectFailed`` and friends) reach the public
  surface.

Delivery of application messages (client -> server):

* ``send_message`` waits on the gate, a ``trio.Event`` that is fresh for every
  connection and set when that connection's ``ready`` arrives. Senders are
  served in call order (a FIFO lock is held while waiting on the gate).
* It returns once the whole frame was handed to the transport of a ready
  connection. That does not mean the server received it (there are no acks).
* If the connection is lost before the whole frame was handed over, the frame
  is sent again, in full, on the next ready connection. A frame is never
  dropped silently: it goes out, or ``send_message`` raises (the client failed
  or was closed, or the call was cancelled).
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import logging
import math
import random as _random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, NoReturn, TypeAlias, TypeVar, cast

import attrs
import trio
import trio_websocket

from ._backoff import Backoff, Pacer, RetryPolicy
from ._cursor import Cursor
from ._exceptions import (
    AttemptError,
    ClientClosedError,
    ConnectTimeout,
    PingTimeout,
    ReconnectFailed,
    ResumeProtocolError,
    ResumeTimeout,
)
from ._hints import ABNORMAL_CLOSURE, NORMAL_CLOSURE
from ._inbox import Inbox
from ._metrics import MetricsRecorder, ReconnectStatistics
from ._protocol import HandshakeResult, Item, ResumeHandshake, ServerEvent, parse_live
from ._retry import Disconnect, GiveUp, Outcome, RetryState, Wait
from ._settings import DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE
from ._state import ConnectionState, DelaySource, Transition, check_transition
from ._transport import OpenStream, Target, open_tcp_stream, parse_url
from ._validators import check_positive

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_REPLAY_RECEIVED",
    "DEFAULT_MAX_SERVER_DELAY",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_RESUME_TIMEOUT",
    "DEFAULT_STABLE_AFTER",
    "ReconnectingWebSocket",
    "open_reconnecting_websocket",
]

logger = logging.getLogger("trio_reconnect")

#: Consecutive failed attempts before the client gives up (``None``: never).
DEFAULT_MAX_ATTEMPTS: Final = 20
#: Seconds a connection must stay ready before the backoff forgets the streak.
DEFAULT_STABLE_AFTER: Final = 10.0
#: Seconds for TCP + TLS + the websocket handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Seconds from the websocket opening to the server's ``ready``.
DEFAULT_RESUME_TIMEOUT: Final = 10.0
#: Seconds between pings on an open connection (``None``: no pings).
DEFAULT_PING_INTERVAL: Final = 20.0
#: Seconds to wait for a pong before the connection is declared dead.
DEFAULT_PING_TIMEOUT: Final = 20.0
#: The clamp for the server's retry hints, seconds.
DEFAULT_MAX_SERVER_DELAY: Final = 300.0
#: Items buffered for the application before the reader waits for it.
DEFAULT_MAX_QUEUE: Final = 64
#: How many recent event ids are remembered to drop duplicates.
DEFAULT_DEDUPE_WINDOW: Final = 1024
#: Most events the client accepts in one handshake's replay before the
#: attempt fails (the events already received are kept, so the next attempt
#: resumes after them). A guard against a runaway server, ten times the
#: server's default replay limit (``trio_reconnect.server.DEFAULT_MAX_REPLAY``,
#: a policy: how much to replay before a snapshot), hence the other name.
DEFAULT_MAX_REPLAY_RECEIVED: Final = 10_000

# Wall-clock seconds since the epoch, for HTTP-date Retry-After hints (tests patch it).
_wall_clock = time.time

# trio-websocket's own queue between its reader and the resume handshake;
# once ready, the inbox is the only buffer.
_WS_QUEUE_SIZE: Final = 16

# Whether a ready connection's messages are delivered by trio-websocket's
# reader straight into the inbox (see _DirectSink). Off (tests), or on a
# trio-websocket without those internals, the supervisor reads with get_message()
# and puts into the inbox itself: one more task switch per message.
_DIRECT_DELIVERY = True

T = TypeVar("T")
#: A value, or a sync or async callable returning one, called before every attempt.
Factory: TypeAlias = T | Callable[[], T | Awaitable[T]]
HeaderPairs: TypeAlias = Mapping[str, str] | Sequence[tuple[str | bytes, str | bytes]] | None


class _Phase(enum.Enum):
    """Which deadline an attempt is under."""

    #: TCP, TLS and the websocket handshake: ``connect_timeout``.
    CONNECT = "connect"
    #: The resume handshake, up to ``ready``: ``resume_timeout``.
    RESUME = "resume"
    #: Ready: no deadline.
    OPEN = "open"


@attrs.define(eq=False)
class _Run:
    """One attempt, from the wait before it to the loss of its connection.

    The client's current run is the attempt in progress, or, while the client
    waits, the next one: senders and ``wait_ready`` wait on its gate. A run
    is used once. A Trio event cannot be cleared, so a gate that was set (a
    connection got ready) is never used again; a gate that was not is handed
    on to the next run, with its waiters.
    """

    #: Set at ``ready`` (sends flow), or when the client ends (waiters wake and raise).
    gate: trio.Event = attrs.Factory(trio.Event)
    #: Set when the attempt is over and its connection, if any, is gone.
    lost: trio.Event = attrs.Factory(trio.Event)
    #: The wait before the attempt; ``reconnect_now()`` cuts it short.
    backoff: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: The whole attempt; ``reconnect_now()`` cancels it.
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: The deadline of the current phase (inside the connection's nursery).
    deadline: trio.CancelScope = attrs.Factory(trio.CancelScope)
    phase: _Phase = _Phase.CONNECT
    #: What the attempt came to; ``None`` until it starts.
    outcome: Outcome | None = None
    #: The websocket, once open (resuming or ready).
    ws: trio_websocket.WebSocketConnection | None = None
    #: The websocket while the connection is ready (from ``ready`` until it
    #: is lost or the client ends); what sends go to.
    ready_ws: trio_websocket.WebSocketConnection | None = None

    def reconnect(self) -> None:
        """``reconnect_now()``: cut the wait short, or drop the attempt (no failure)."""
        if self.outcome is None:
            self.backoff.cancel()
        else:
            self.outcome.requested = True
            self.scope.cancel()


@attrs.frozen
class _Options:
    """The options an attempt reads (validated by ``ReconnectingWebSocket``)."""

    resume: bool
    resume_timeout: float
    connect_timeout: float
    close_timeout: float
    ping_interval: float | None
    ping_timeout: float
    max_message_size: int
    max_replay: int
    headers: Factory[HeaderPairs]
    ssl_context: Factory[ssl.SSLContext | None]
    open_stream: OpenStream


class _ReaderSpawner:
    """Stands in for the nursery given to ``wrap_client_stream``.

    It starts trio-websocket's reader task in the real nursery, sets
    ``ended`` when that task ends, and cancels ``handshake_scope`` if it ends
    before the handshake is over (the server closed the TCP connection
    without answering).
    """

    def __init__(self, nursery: trio.Nursery, handshake_scope: trio.CancelScope) -> None:
        self._nursery = nursery
        self._scope = handshake_scope
        self.ended = trio.Event()

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None:
        async def watched() -> None:
            try:
                await fn()
            finally:
                self.ended.set()
                self._scope.cancel()

        self._nursery.start_soon(watched)


class _DirectSink:
    """Takes the place of trio-websocket's message channel on a ready connection.

    trio-websocket's reader task hands each complete message to
    ``self._send_channel.send()`` and closes it with ``aclose()`` when the
    websocket closes; ``get_message()`` reads ``self._recv_channel``, and
    ``aclose()`` and a message over ``max_message_size`` close it. Put in as
    both, this object turns the reader's ``send`` into ``accept`` and a put
    into the inbox, in the reader's own task. The inbox's backpressure and
    its stall count are unchanged: a full inbox makes the reader wait, as a
    full channel did. Once ``done`` is set (the websocket closed, or the
    reader ended), ``send`` refuses as a closed channel does, so that nothing
    arrives after the close, as before.

    This relies on two private attributes of trio-websocket 0.12
    (:func:`_can_deliver_directly` checks them, and the client falls back to
    reading with ``get_message()`` without them).
    """

    def __init__(
        self,
        accept: Callable[[str | bytes], Item | None],
        inbox: Inbox[Item],
        done: trio.Event,
    ) -> None:
        self._accept = accept
        self._inbox = inbox
        self.done = done

    async def send(self, message: str | bytes) -> None:
        if self.done.is_set():
            raise trio.BrokenResourceError("the websocket is closed")
        item = self._accept(message)
        if item is not None:
            await self._inbox.put(item)

    async def receive(self) -> str | bytes:
        raise trio.EndOfChannel  # get_message() turns it into ConnectionClosed

    async def aclose(self) -> None:
        self.done.set()


def _can_deliver_directly(ws: trio_websocket.WebSocketConnection) -> bool:
    return (
        _DIRECT_DELIVERY
        and isinstance(getattr(ws, "_send_channel", None), trio.MemorySendChannel)
        and isinstance(getattr(ws, "_recv_channel", None), trio.MemoryReceiveChannel)
    )


async def _resolve(value: Factory[T]) -> T:
    if callable(value):
        result = value()
        if inspect.isawaitable(result):
            return cast(T, await result)
        return result
    return value


def _header_pairs(headers: HeaderPairs) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [
        (
            name.encode("latin-1") if isinstance(name, str) else name,
            value.encode("latin-1") if isinstance(value, str) else value,
        )
        for name, value in pairs
    ]


def _closed_by_server(ws: trio_websocket.WebSocketConnection) -> bool:
    """Whether the server sent the close frame that ended ``ws``.

    trio-websocket reports the closes it makes itself just like the server's:
    1009 for a message over ``max_message_size``, and (from wsproto) 1002 or
    1007 for a frame that breaks RFC 6455, such as invalid UTF-8 or a close
    code wsproto does not know (1014 among them). Such a code is not the
    server's verdict. trio-websocket sets this event only when the peer
    started the close.
    """
    peer_closed = getattr(ws, "_for_testing_peer_closed_connection", None)
    return not isinstance(peer_closed, trio.Event) or peer_closed.is_set()


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _main_cause(exc: BaseException) -> BaseException:
    """The one error that explains a failed connection nursery."""
    leaves = _leaves(exc)
    for kind in (trio_websocket.ConnectionRejected, AttemptError, OSError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0]


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
    ) -> None:
        if isinstance(url, str):
            parse_url(url)  # a bad URL fails here, not on every attempt
        elif not callable(url):
            raise TypeError(f"url must be a string or a callable, got {type(url).__name__}")
        if max_attempts is not None and (isinstance(max_attempts, bool) or max_attempts < 1):
            raise ValueError(f"max_attempts must be at least 1 or None, got {max_attempts!r}")
        for name, value in (
            ("resume_timeout", resume_timeout),
            ("connect_timeout", connect_timeout),
            ("close_timeout", close_timeout),
            ("ping_timeout", ping_timeout),
            ("max_server_delay", max_server_delay),
            ("stable_after", stable_after),
        ):
            check_positive(name, value)
        for name, maybe in (("ping_interval", ping_interval), ("give_up_after", give_up_after)):
            if maybe is not None:
                check_positive(name, maybe)
        if max_replay < 1:
            raise ValueError(f"max_replay must be at least 1, got {max_replay!r}")
        self._url = url
        self._options = _Options(
            resume=resume,
            resume_timeout=resume_timeout,
            connect_timeout=connect_timeout,
            close_timeout=close_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_message_size=max_message_size,
            max_replay=max_replay,
            headers=headers,
            ssl_context=ssl_context,
            open_stream=open_stream or open_tcp_stream,
        )
        pacer = Pacer(
            backoff if backoff is not None else Backoff(),
            random or _random.Random(),
            max_server_delay=max_server_delay,
        )
        self._retry = RetryState(
            pacer,
            max_attempts=max_attempts,
            give_up_after=give_up_after,
            stable_after=stable_after,
            server_hints=bool(server_hints),
            should_reconnect=should_reconnect,
        )
        self._on_transition = on_transition
        self._metrics = MetricsRecorder()
        self._cursor = Cursor(last_event_id, dedupe_window)
        self._inbox: Inbox[Item] = Inbox(max_queue)
        self._state = ConnectionState.CONNECTING
        # Safe to log: no query string (tokens live there), never the headers.
        self._display = Target(*parse_url(url)).display if isinstance(url, str) else "<url>"
        self._run = _Run()  # the attempt in progress, or the next one
        self._lost_at: float | None = None
        self._send_lock = trio.StrictFIFOLock()
        self._error: ReconnectFailed | None = None
        self._closing = False
        self._supervisor_scope: trio.CancelScope | None = None
        self._body_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    def __repr__(self) -> str:
        return f"<ReconnectingWebSocket {self._display} {self._state.value}>"

    # ------------------------------------------------------------------ public

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._state

    @property
    def last_event_id(self) -> str | None:
        """The id of the newest event received (what the next ``resume`` sends)."""
        return self._cursor.last_event_id

    def statistics(self) -> ReconnectStatistics:
        """A frozen snapshot of this client's reconnect metrics."""
        return self._metrics.statistics()

    async def send_message(self, message: str | bytes) -> None:
        """Send a message once a connection is ready.

        Waits on the gate until the current connection's resume handshake has
        ended. If the connection is lost before the whole frame was handed to
        the transport, waits for the next ready connection and sends it there.
        Concurrent callers are served in call order.

        Raises:
            ReconnectFailed: the client gave up (or a subclass: fatal close or refusal).
            ClientClosedError: the client was closed.
            TypeError: ``message`` is neither ``str`` nor ``bytes``.
        """
        if not isinstance(message, (str, bytes)):  # a tuple: no union object built per call
            raise TypeError(f"message must be str or bytes, got {type(message).__name__}")
        lock = self._send_lock
        try:
            if self._run.ready_ws is None:
                raise trio.WouldBlock  # not ready: queue up in acquire()
            # Fast path: ready, and nobody holds or waits for the lock (a
            # waiter makes acquire_nowait fail, so call order is kept). It
            # skips acquire()'s schedule point, one extra trip through the
            # scheduler per message; the websocket send below checkpoints.
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            while True:
                run = self._run
                ws = run.ready_ws
                if ws is None:
                    self._raise_if_ended()
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
            lock.release()

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
        while (run := self._run).ready_ws is None:
            self._raise_if_ended()
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
        self._raise_if_ended()
        self._run.reconnect()

    # -------------------------------------------------------------- lifecycle

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[ReconnectingWebSocket]:
        """The ``async with`` block of :func:`open_reconnecting_websocket`.

        The supervisor runs in a nursery around the block. Leaving the block
        (normally, with an error, or cancelled) runs :meth:`_shutdown`
        shielded; an error of the block wins over the client's own.
        """
        body_error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._supervise)
            try:
                with trio.CancelScope() as self._body_scope:
                    yield self
            except BaseException as exc:
                body_error = exc
            finally:
                self._body_scope = None
                with trio.CancelScope(shield=True):
                    await self._shutdown()
        if body_error is not None:
            raise body_error
        if self._error is not None:
            raise self._error

    @property
    def _ended(self) -> bool:
        return self._error is not None or self._closing

    def _raise_if_ended(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing:
            raise ClientClosedError("the reconnecting websocket is closed")

    def _set_state(self, state: ConnectionState, **details: Any) -> None:
        previous = self._state
        check_transition(previous, state)
        self._state = state
        retry = self._retry
        transition = Transition(
            state=state,
            previous=previous,
            time=trio.current_time(),
            attempt=retry.next_attempt if state is ConnectionState.CONNECTING else retry.failures,
            **details,
        )
        logger.debug("%s: %s -> %s %s", self._display, previous.value, state.value, details)
        if self._on_transition is not None:
            try:
                self._on_transition(transition)
            except Exception:
                logger.exception("on_transition hook raised; ignored")

    def _fail(self, error: ReconnectFailed) -> None:
        if self._ended:
            return
        self._error = error
        logger.error("%s: %s", self._display, error)
        self._end(ConnectionState.FAILED, error)
        if self._body_scope is not None:
            self._body_scope.cancel()

    def _end(self, state: ConnectionState, error: Exception) -> None:
        run = self._run
        self._set_state(state, error=error)
        self._inbox.close(error)
        run.ready_ws = None
        run.gate.set()  # wake the waiters; they see the end and raise
        run.lost.set()

    async def _shutdown(self) -> None:
        """Leave: close the open websocket with 1000, stop the supervisor.

        The supervisor is shielded from cancellation coming from outside the
        block (see :meth:`_supervise`), so trio-websocket's reader is still
        running here and reads the server's close reply: a cancelled block
        takes one round trip to leave, not ``close_timeout``.
        """
        if not self._ended:
            self._closing = True
            ws = self._run.ws  # open, ready or still resuming
            self._end(ConnectionState.CLOSED, ClientClosedError("the client was closed"))
            if ws is not None:
                with trio.move_on_after(self._options.close_timeout):
                    await ws.aclose(NORMAL_CLOSURE)
        if self._supervisor_scope is not None:
            self._supervisor_scope.cancel()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # -------------------------------------------------------------- supervisor

    async def _supervise(self) -> None:
        # Shielded: a cancellation from outside the ``async with`` block
        # reaches the block's body, whose exit runs _shutdown, which closes the
        # connection politely and then cancels this scope. Without the shield
        # the outside cancellation would kill trio-websocket's reader first,
        # and every close would wait close_timeout for a reply nobody reads.
        try:
            with trio.CancelScope(shield=True) as self._supervisor_scope:
                if not self._ended:
                    await self._supervise_loop()
        except Exception as exc:  # a bug here must not take the application down
            logger.exception("reconnect supervisor crashed")
            failure = ReconnectFailed(
                "internal error in the reconnect supervisor", self._retry.history
            )
            failure.__cause__ = exc
            self._fail(failure)

    async def _supervise_loop(self) -> None:
        """Attempt, decide (pure: :meth:`RetryState.decide`), wait; until the end."""
        while True:
            run = self._run
            outcome = await self._attempt(run)
            if self._ended:
                return
            now = trio.current_time()
            if outcome.ready_at is not None:
                self._lost_at = now
            decision = self._retry.decide(outcome, now, _wall_clock())
            if decision.failed:
                self._metrics.record_failure()
            if isinstance(decision, GiveUp):
                self._fail(decision.error)
                return
            await self._back_off(outcome, decision)

    async def _back_off(self, outcome: Outcome, wait: Wait) -> None:
        if wait.source is DelaySource.IMMEDIATE:
            self._set_state(ConnectionState.BACKING_OFF, delay=0.0, delay_source=wait.source)
        else:
            logger.info(
                "%s: connection lost (%s); reconnecting in %.3f s (%s, failure %d)",
                self._display,
                outcome.describe(),
                wait.delay,
                wait.source.value,
                self._retry.failures,
            )
            self._set_state(
                ConnectionState.BACKING_OFF,
                delay=wait.delay,
                delay_source=wait.source,
                close_code=outcome.close_code,
                close_reason=outcome.close_reason,
                status_code=outcome.status_code,
                error=outcome.error,
            )
        backoff = self._run.backoff  # reconnect_now() cancels it
        backoff.deadline = trio.current_time() + wait.delay
        with backoff:
            await trio.sleep_forever()

    # ----------------------------------------------------------------- attempt

    async def _attempt(self, run: _Run) -> Outcome:
        """One attempt: connect, resume, deliver until the connection is lost."""
        run.outcome = outcome = Outcome(self._retry.next_attempt, trio.current_time())
        if self._state is not ConnectionState.CONNECTING:  # the first one starts there
            self._set_state(ConnectionState.CONNECTING)
        try:
            with run.scope:
                target = Target(
                    *parse_url(await _resolve(self._url)),
                    ssl_context=await _resolve(self._options.ssl_context),
                )
                self._display = target.display
                headers = _header_pairs(await _resolve(self._options.headers))
                await self._connect(run, target, headers)
        except Exception as exc:
            cause = _main_cause(exc)
            if isinstance(cause, trio_websocket.ConnectionRejected):
                outcome.status_code = cause.status_code
                outcome.headers = tuple(cause.headers or ())
                outcome.body = cause.body
            if outcome.error is None:
                outcome.error = cause
        finally:
            if not self._ended:
                # The next attempt's run. Its gate is fresh if this one's was
                # set (a set event cannot be cleared); otherwise the waiters
                # on this gate wait on for the next ready connection.
                self._run = _Run() if run.gate.is_set() else _Run(gate=run.gate)
            run.ready_ws = None
            run.lost.set()
        return outcome

    async def _connect(self, run: _Run, target: Target, headers: list[tuple[bytes, bytes]]) -> None:
        options = self._options
        run.deadline.deadline = trio.current_time() + options.connect_timeout
        stream: trio.abc.Stream | None = None
        with trio.CancelScope(deadline=run.deadline.deadline):
            stream = await options.open_stream(target)
        if stream is None:
            raise ConnectTimeout(
                f"no connection to {target.display} within {options.connect_timeout} s"
            )
        try:
            with run.deadline:
                async with trio.open_nursery() as nursery:
                    await self._serve(run, nursery, stream, target, headers)
                    nursery.cancel_scope.cancel()
            if run.deadline.cancelled_caught:
                if run.phase is _Phase.RESUME:
                    raise ResumeTimeout(f"no ready within {options.resume_timeout} s")
                raise ConnectTimeout(
                    f"websocket handshake with {target.display} took over "
                    f"{options.connect_timeout} s"
                )
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(
        self,
        run: _Run,
        nursery: trio.Nursery,
        stream: trio.abc.Stream,
        target: Target,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Open the websocket on ``stream``, resume, and deliver until it closes."""
        options = self._options
        outcome = cast(Outcome, run.outcome)
        handshake_scope = trio.CancelScope()
        spawner = _ReaderSpawner(nursery, handshake_scope)
        ws: trio_websocket.WebSocketConnection | None = None
        with handshake_scope:
            ws = await trio_websocket.wrap_client_stream(
                cast(trio.Nursery, spawner),
                cast(trio.SocketStream, stream),
                target.host_header,
                target.resource,
                extra_headers=headers,
                message_queue_size=_WS_QUEUE_SIZE,
                max_message_size=options.max_message_size,
            )
        if ws is None:
            if spawner.ended.is_set():  # closed by the server before it answered
                outcome.close_code = ABNORMAL_CLOSURE
                raise ConnectionError(
                    f"{target.display} closed the connection during the opening handshake"
                )
            return  # the phase deadline expired; the caller reports it
        run.ws = ws
        result: HandshakeResult | None = None
        try:
            if options.resume:
                run.phase = _Phase.RESUME
                self._set_state(ConnectionState.RESUMING)
                run.deadline.deadline = trio.current_time() + options.resume_timeout
                result = await self._handshake(run, ws)
            run.phase = _Phase.OPEN
            run.deadline.deadline = math.inf
            self._ready(run, result)
            if options.ping_interval is not None:
                nursery.start_soon(self._pinger, run, ws, nursery.cancel_scope)
            await self._deliver(ws, spawner.ended)
        except trio_websocket.ConnectionClosed as exc:
            if self._closing:
                # We are closing: trio-websocket's reader must live on to read
                # the server's close reply. _shutdown cancels us when done.
                await trio.sleep_forever()
            reason = exc.reason
            if reason is not None:
                outcome.close_code = reason.code
                outcome.close_reason = reason.reason
                outcome.server_closed = _closed_by_server(ws)

    async def _handshake(
        self, run: _Run, ws: trio_websocket.WebSocketConnection
    ) -> HandshakeResult:
        cursor = self._cursor
        handshake = ResumeHandshake(cursor.last_event_id)
        await ws.send_message(handshake.frame())
        received = 0
        max_replay = self._options.max_replay
        while handshake.result is None:
            item = handshake.receive(await ws.get_message())
            if isinstance(item, ServerEvent):
                received += 1
                if received > max_replay:
                    raise ResumeProtocolError(
                        f"the server replayed more than max_replay={max_replay} events"
                    )
            if item is not None and cursor.deliver(item):
                await self._deliver_replayed(run, item)
        cursor.ready(handshake.result)
        return handshake.result

    async def _deliver_replayed(self, run: _Run, item: Item) -> None:
        """Buffer one handshake item; wait for the application if the buffer is full.

        The wait is the application's, not the server's, so ``resume_timeout``
        is paused during it and starts again when there is room. This keeps
        the buffer at ``max_queue`` (plus the item being added) even when
        every attempt replays ``max_replay`` events to an application that is
        not reading.
        """
        if len(self._inbox) + 1 < self._inbox.max_size:
            self._inbox.put_nowait(item)
            return
        run.deadline.deadline = math.inf
        try:
            await self._inbox.put(item)
        finally:
            run.deadline.deadline = trio.current_time() + self._options.resume_timeout

    def _ready(self, run: _Run, result: HandshakeResult | None) -> None:
        now = trio.current_time()
        cast(Outcome, run.outcome).ready_at = now
        lost_for = None if self._lost_at is None else now - self._lost_at
        self._lost_at = None
        self._metrics.record_ready(lost_for, result)
        how = (
            "no resume" if result is None else f"{result.outcome.value}, {result.replayed} replayed"
        )
        logger.info("%s: ready (%s)", self._display, how)
        self._set_state(ConnectionState.OPEN)
        run.ready_ws = run.ws
        run.gate.set()

    def _accept_live(self, message: str | bytes) -> Item | None:
        """A message of a ready connection as an item, or ``None`` for a duplicate event."""
        item = parse_live(message) if self._options.resume else message
        return item if self._cursor.deliver(item) else None

    async def _deliver(
        self, ws: trio_websocket.WebSocketConnection, reader_ended: trio.Event
    ) -> NoReturn:
        """Deliver the ready connection's messages to the inbox until it closes.

        Raises:
            trio_websocket.ConnectionClosed: when it has closed.
        """
        if not _can_deliver_directly(ws):
            sink = _DirectSink(self._accept_live, self._inbox, trio.Event())
            while True:
                await sink.send(await ws.get_message())
        sink = _DirectSink(self._accept_live, self._inbox, reader_ended)
        queued = ws._recv_channel
        while True:  # what trio-websocket queued before ready goes first
            try:
                message = queued.receive_nowait()
            except trio.WouldBlock:
                break
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise trio_websocket.ConnectionClosed(ws.closed) from None
            await sink.send(message)
        # No checkpoint since the queue was found empty: nothing can slip in
        # between. From here on trio-websocket's reader delivers.
        ws._send_channel = ws._recv_channel = sink  # type: ignore[assignment]
        await reader_ended.wait()
        raise trio_websocket.ConnectionClosed(ws.closed)

    async def _pinger(
        self,
        run: _Run,
        ws: trio_websocket.WebSocketConnection,
        connection_scope: trio.CancelScope,
    ) -> None:
        interval = cast(float, self._options.ping_interval)
        timeout = self._options.ping_timeout
        number = 0
        while True:
            await trio.sleep(interval)
            number += 1
            stalls = self._inbox.stalls
            with trio.move_on_after(timeout) as waited:
                try:
                    await ws.ping(number.to_bytes(8, "big"))
                except trio_websocket.ConnectionClosed:
                    return  # the reader sees the close too
            if not waited.cancelled_caught:
                continue
            if self._inbox.stalled or self._inbox.stalls != stalls:
                # trio-websocket's reader, waiting for room in the inbox, does
                # not read pongs: a slow application, not a dead server.
                continue
            outcome = cast(Outcome, run.outcome)
            outcome.error = PingTimeout(f"no pong within {timeout} s")
            outcome.close_code = ABNORMAL_CLOSURE
            connection_scope.cancel()
            return


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
        resume: Speak the resume handshake of docs/protocol.md (default
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
            (:data:`DEFAULT_MAX_QUEUE`).
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

    Raises:
        ReconnectFailed: out of the block, bare, when the client gave up
            (the block is cancelled); subclasses for fatal closes and refusals.
        ValueError: for an invalid option.
    """
    ws = ReconnectingWebSocket(
        url,
        backoff=backoff,
        server_hints=server_hints,
        max_attempts=max_attempts,
        give_up_after=give_up_after,
        stable_after=stable_after,
        resume=resume,
        last_event_id=last_event_id,
        resume_timeout=resume_timeout,
        connect_timeout=connect_timeout,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_server_delay=max_server_delay,
        max_queue=max_queue,
        max_message_size=max_message_size,
        max_replay=max_replay,
        dedupe_window=dedupe_window,
        headers=headers,
        ssl_context=ssl_context,
        should_reconnect=should_reconnect,
        random=random,
        open_stream=open_stream,
        on_transition=on_transition,
    )
    async with ws._session():
        yield ws
