"""The reconnecting client: one supervisor task that owns the connection.

The supervisor is the only place that imports trio-websocket on the client
side. It runs in a nursery that :func:`open_reconnecting_websocket` opens
around the application's ``async with`` block, and loops::

    CONNECTING -> (RESUMING) -> OPEN -> connection lost -> BACKING_OFF -> CONNECTING ...

Everything that decides is elsewhere and pure: the wait before each attempt
(:mod:`._backoff`), what a close or a refusal means (:mod:`._hints`), the
handshake frames (:mod:`._protocol`), the metrics (:mod:`._metrics`). This
module only does the I/O and the timing, with cancel scopes.

Timing, and the trio-websocket sharp edges it works around (shared TRIO_NOTES):

* ``connect_timeout`` covers opening the stream (TCP + TLS) and the websocket
  handshake. trio-websocket's own timeout does not bound a stalled handshake
  (its nursery waits on the reader task), so the deadline is a cancel scope
  placed OUTSIDE the nursery that holds the reader task, and is replaced by
  ``resume_timeout`` once the websocket is open, and lifted at ``ready``.
* A server that accepts TCP and closes before answering the handshake would
  leave ``wrap_client_stream`` waiting until that deadline; a small wrapper
  notices the reader task ending and fails the attempt at once.
* The supervisor reads the connection all the time in its own task and hands
  items to a buffer of ``max_queue``; trio-websocket stops answering pongs
  while its own queue is full, so a ping that times out while the buffer was
  full at any point counts as a slow consumer, not a dead server.
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

import collections
import contextlib
import inspect
import logging
import math
import random as _random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias, TypeVar, cast

import attrs
import trio
import trio_websocket

from ._backoff import Backoff, Pacer, RetryPolicy
from ._exceptions import (
    AttemptError,
    ClientClosedError,
    ConnectTimeout,
    FatalCloseError,
    HandshakeRejectedError,
    PingTimeout,
    ReconnectFailed,
    ResumeProtocolError,
    ResumeTimeout,
)
from ._hints import (
    RetryAdvice,
    Verdict,
    classify_close,
    classify_rejection,
    is_planned_close,
)
from ._inbox import Inbox
from ._metrics import MetricsRecorder, ReconnectStatistics
from ._protocol import (
    Gap,
    HandshakeOutcome,
    HandshakeResult,
    Item,
    RecentIds,
    ResumeHandshake,
    ServerEvent,
    Snapshot,
    parse_live,
)
from ._state import Attempt, ConnectionState, DelaySource, Transition
from ._transport import OpenStream, RecordingStream, Target, open_tcp_stream, parse_url
from ._validators import check_positive

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_REPLAY",
    "DEFAULT_MAX_SERVER_DELAY",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_RESUME_TIMEOUT",
    "DEFAULT_STABLE_AFTER",
    "MAX_HISTORY",
    "Disconnect",
    "ReconnectingWebSocket",
    "open_reconnecting_websocket",
]

logger = logging.getLogger("trio_reconnect")
# A library's loggers get a NullHandler only (the logging HOWTO): an
# application that configures no logging then sees no stderr lines from
# Python's last-resort handler; one line of logging.basicConfig shows them.
logger.addHandler(logging.NullHandler())

#: Consecutive failed attempts before the client gives up (``None``: never).
DEFAULT_MAX_ATTEMPTS: Final = 20
#: Seconds a connection must stay ready before the backoff forgets the streak.
DEFAULT_STABLE_AFTER: Final = 10.0
#: Seconds for TCP + TLS + the websocket handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Seconds from the websocket opening to the server's ``ready``.
DEFAULT_RESUME_TIMEOUT: Final = 10.0
#: Seconds the closing handshake may take when the application leaves.
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
#: Seconds between pings on an open connection (``None``: no pings).
DEFAULT_PING_INTERVAL: Final = 20.0
#: Seconds to wait for a pong before the connection is declared dead.
DEFAULT_PING_TIMEOUT: Final = 20.0
#: The clamp for the server's retry hints, seconds.
DEFAULT_MAX_SERVER_DELAY: Final = 300.0
#: Items buffered for the application before the reader waits for it.
DEFAULT_MAX_QUEUE: Final = 64
#: Largest message accepted, in bytes or characters (larger: close 1009).
DEFAULT_MAX_MESSAGE_SIZE: Final = 2**20
#: How many recent event ids are remembered to drop duplicates.
DEFAULT_DEDUPE_WINDOW: Final = 1024
#: Most events one handshake may replay before the attempt fails (the events
#: already received are kept, so the next attempt resumes after them).
DEFAULT_MAX_REPLAY: Final = 10_000

#: Most attempts kept in the history of a failure streak (the oldest are
#: dropped), so that ``max_attempts=None`` against a server that refuses
#: forever does not grow memory.
MAX_HISTORY: Final = 100

#: The WARNING logged for a failed attempt or a lost connection that is retried
#: (the application sees no exception for it); test harnesses match on it.
RETRIED_FAILURE_MESSAGE: Final = "%s: %s; attempt %d in %.3f s (%s)"

# Wall-clock seconds since the epoch, for HTTP-date Retry-After hints (tests patch it).
_wall_clock = time.time

# trio-websocket's own queue between its reader and ours; ours is the real buffer.
_WS_QUEUE_SIZE: Final = 16

T = TypeVar("T")
#: A value, or a sync or async callable returning one, called before every attempt.
Factory: TypeAlias = T | Callable[[], T | Awaitable[T]]
HeaderPairs: TypeAlias = Mapping[str, str] | Sequence[tuple[str | bytes, str | bytes]] | None


@attrs.frozen
class Disconnect:
    """What ``should_reconnect`` is asked about: a close or a refused handshake.

    Attributes:
        close_code: The close code, for a closed connection.
        close_reason: The close reason, for a closed connection.
        status_code: The HTTP status, for a refused handshake.
        headers: The refusal's response headers.
        default: What the default rule (docs/protocol.md, section 1) says:
            ``True`` to reconnect.
    """

    close_code: int | None
    close_reason: str | None
    status_code: int | None
    headers: tuple[tuple[bytes, bytes], ...]
    default: bool


@attrs.define(eq=False)
class _Outcome:
    """What one attempt came to (filled in as it goes)."""

    started_at: float
    ready_at: float | None = None
    close_code: int | None = None
    close_reason: str | None = None
    status_code: int | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes | None = None
    error: BaseException | None = None
    #: Whether the close code is the server's (it sent the close frame).
    server_closed: bool = False


@attrs.frozen
class _Open:
    """The ready connection, and an event set once it is gone."""

    ws: trio_websocket.WebSocketConnection
    lost: trio.Event


class _ReaderSpawner:
    """Stands in for the nursery given to ``wrap_client_stream``.

    It starts trio-websocket's reader task in the real nursery, and cancels
    ``handshake_scope`` if that task ends before the handshake is over (the
    server closed the TCP connection without answering).
    """

    def __init__(self, nursery: trio.Nursery, handshake_scope: trio.CancelScope) -> None:
        self._nursery = nursery
        self._scope = handshake_scope
        self.reader_ended = False
        #: Set once the opening handshake succeeded (the websocket is open).
        self.opened = False
        #: What the reader raised before the websocket was open: kept here, not
        #: raised into the nursery, so that the recorded refusal is read first.
        self.error: Exception | None = None

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> None:
        async def watched() -> None:
            try:
                await fn()
            except Exception as exc:
                if self.opened:
                    raise
                self.error = exc
            finally:
                self.reader_ended = True
                self._scope.cancel()

        self._nursery.start_soon(watched)


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
    documents the options.
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
        max_replay: int = DEFAULT_MAX_REPLAY,
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
        self._backoff: RetryPolicy = backoff if backoff is not None else Backoff()
        self._server_hints = bool(server_hints)
        self._max_attempts = max_attempts
        self._give_up_after = give_up_after
        self._stable_after = stable_after
        self._resume = resume
        self._resume_timeout = resume_timeout
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._max_message_size = max_message_size
        self._max_replay = max_replay
        self._headers = headers
        self._ssl_context = ssl_context
        self._should_reconnect = should_reconnect
        self._open_stream: OpenStream = open_stream or open_tcp_stream
        self._on_transition = on_transition
        self._pacer = Pacer(
            self._backoff, random or _random.Random(), max_server_delay=max_server_delay
        )
        self._metrics = MetricsRecorder()
        self._recent = RecentIds(dedupe_window)
        if last_event_id is not None:
            # The application's persisted id counts as delivered: a server
            # that replays from it (off by one) must not deliver it again.
            self._recent.add(last_event_id)
        self._inbox: Inbox[Item] = Inbox(max_queue)
        self._last_event_id = last_event_id
        self._state = ConnectionState.CONNECTING
        # Safe to log: no query string (tokens live there), never the headers.
        self._display = Target(*parse_url(url)).display if isinstance(url, str) else "<url>"
        # The gate: a fresh Event for every connection; set at its ``ready``
        # (and, to wake the waiters, when the client ends).
        self._gate = trio.Event()
        self._open: _Open | None = None
        self._send_lock = trio.StrictFIFOLock()
        self._error: ReconnectFailed | None = None
        self._closing = False
        self._failures = 0
        # The number of the attempt being made, or waited for in BACKING_OFF:
        # 1 + the failed attempts before it in the current streak. The one
        # number every transition, history record and log line uses.
        self._number = 1
        self._history: collections.deque[Attempt] = collections.deque(maxlen=MAX_HISTORY)
        self._streak_started: float | None = None
        self._lost_at: float | None = None
        self._reconnect_requested = False
        self._attempt_scope: trio.CancelScope | None = None
        self._supervisor_scope: trio.CancelScope | None = None
        # The websocket of the current attempt once it is open (resuming or ready).
        self._websocket: trio_websocket.WebSocketConnection | None = None
        self._backoff_scope: trio.CancelScope | None = None
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
        return self._last_event_id

    def statistics(self) -> ReconnectStatistics:
        """A frozen snapshot of this client's reconnect metrics.

        A reconnect (and its handshake outcome and replayed events) is
        counted when the connection's ``ready`` arrives. The events a
        handshake replays are delivered before that ``ready``, so a snapshot
        taken while the application handles them still shows the previous
        connection; after :meth:`wait_ready` returns it shows the new one. A
        server-directed close is counted when the close arrives.
        """
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
        if not isinstance(message, str | bytes):
            raise TypeError(f"message must be str or bytes, got {type(message).__name__}")
        lock = self._send_lock
        try:
            if self._open is None:
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
                opened = self._open
                if opened is None:
                    self._raise_if_ended()
                    await self._gate.wait()
                    continue
                try:
                    await opened.ws.send_message(message)
                except trio_websocket.ConnectionClosed:
                    # Not handed over in full: wait for the supervisor to
                    # notice the loss, then try the next connection.
                    await opened.lost.wait()
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
        while self._open is None:
            self._raise_if_ended()
            await self._gate.wait()
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
        self._reconnect_requested = True
        if self._backoff_scope is not None:
            self._backoff_scope.cancel()
        elif self._attempt_scope is not None:
            self._attempt_scope.cancel()

    # ----------------------------------------------------------------- helpers

    def _raise_if_ended(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing:
            raise ClientClosedError("the reconnecting websocket is closed")

    def _set_state(self, state: ConnectionState, **details: Any) -> None:
        previous, self._state = self._state, state
        if previous is state:  # the first attempt: CONNECTING is the initial state
            return
        transition = Transition(
            state=state,
            previous=previous,
            time=trio.current_time(),
            attempt=self._number,
            **details,
        )
        logger.debug("%s: %s -> %s %s", self._display, previous.value, state.value, details)
        if self._on_transition is not None:
            try:
                self._on_transition(transition)
            except Exception:
                logger.exception("on_transition hook raised; ignored")

    def _fail(self, error: ReconnectFailed) -> None:
        if self._error is not None or self._closing:
            return
        self._error = error
        # Raised to the application (out of the block and every call), so
        # not logged above DEBUG: a library does not both raise and log.
        logger.debug("%s: %s", self._display, error)
        self._end(ConnectionState.FAILED, error)
        if self._body_scope is not None:
            self._body_scope.cancel()

    def _end(self, state: ConnectionState, error: Exception) -> None:
        opened, self._open = self._open, None
        self._set_state(state, error=error)
        self._inbox.close(error)
        self._gate.set()  # wake the waiters; they see the end and raise
        if opened is not None:
            opened.lost.set()

    async def _shutdown(self) -> None:
        """Leave: close the open websocket with 1000, stop the supervisor.

        The supervisor is shielded from cancellation coming from outside the
        block (see :meth:`_supervise`), so trio-websocket's reader is still
        running here and reads the server's close reply: a cancelled block
        takes one round trip to leave, not ``close_timeout``.
        """
        if self._error is None and not self._closing:
            self._closing = True
            ws = self._websocket  # open, ready or still resuming
            self._end(ConnectionState.CLOSED, ClientClosedError("the client was closed"))
            if ws is not None:
                with trio.move_on_after(self._close_timeout):
                    await ws.aclose(1000)
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
                if not self._closing and self._error is None:
                    await self._supervise_loop()
        except Exception as exc:  # a bug here must not take the application down
            logger.exception("reconnect supervisor crashed")
            failure = ReconnectFailed("internal error in the reconnect supervisor", self._history)
            failure.__cause__ = exc
            self._fail(failure)

    async def _supervise_loop(self) -> None:
        while True:
            outcome = await self._attempt()
            if self._closing or self._error is not None:
                return
            now = trio.current_time()
            was_open = outcome.ready_at is not None
            if was_open:
                self._lost_at = now
            if self._reconnect_requested:
                self._reconnect_requested = False
                self._number = self._failures + 1
                self._set_state(
                    ConnectionState.BACKING_OFF, delay=0.0, delay_source=DelaySource.IMMEDIATE
                )
                continue
            stable = was_open and now - cast(float, outcome.ready_at) >= self._stable_after
            advice = self._advise(outcome)
            # A ready connection that the server closed on purpose, with a
            # planned code and a hint (a restart, a drain): not a failure.
            server_directed = (
                was_open
                and outcome.server_closed
                and is_planned_close(outcome.close_code, outcome.close_reason)
                and advice.verdict is Verdict.RETRY
            )
            if server_directed:
                self._metrics.record_server_directed()
            if stable:
                self._pacer.reset()
            if stable or server_directed:
                # The failure streak ends. The pacer (the backoff step and the
                # anti-hammer count) resets only after a stable connection.
                self._failures = 0
                self._history.clear()
                self._streak_started = None
            else:
                self._failures += 1
                self._metrics.record_failure()
                if self._streak_started is None:
                    self._streak_started = outcome.started_at
            if advice.verdict is Verdict.FATAL:
                self._history.append(self._record(outcome, now, None, None))
                self._fail(self._fatal_error(outcome))
                return
            hint = advice.hint if self._server_hints else None
            # Short-lived connections count toward the anti-hammer rule, planned or not.
            delay, source = self._pacer.next_delay(failed=not stable, hint=hint)
            if not (stable or server_directed):
                self._history.append(self._record(outcome, now, delay, source))
            if self._max_attempts is not None and self._failures >= self._max_attempts:
                self._fail(
                    ReconnectFailed(
                        f"gave up after {self._failures} failed attempts", self._history
                    )
                )
                return
            if (
                self._give_up_after is not None
                and self._streak_started is not None
                and now + delay - self._streak_started > self._give_up_after
            ):
                self._fail(
                    ReconnectFailed(
                        f"gave up: no stable connection within {self._give_up_after} s",
                        self._history,
                    )
                )
                return
            self._number = self._failures + 1  # the attempt this wait is for
            self._log_reconnect(outcome, delay, source, server_directed=server_directed)
            self._set_state(
                ConnectionState.BACKING_OFF,
                delay=delay,
                delay_source=source,
                close_code=outcome.close_code,
                close_reason=outcome.close_reason,
                status_code=outcome.status_code,
                error=outcome.error,
            )
            with trio.CancelScope(deadline=trio.current_time() + delay) as scope:
                self._backoff_scope = scope
                await trio.sleep_forever()
            self._backoff_scope = None
            self._reconnect_requested = False

    def _record(
        self, outcome: _Outcome, now: float, delay: float | None, source: DelaySource | None
    ) -> Attempt:
        return Attempt(
            number=self._number,
            started_at=outcome.started_at,
            ended_at=now,
            reached_ready=outcome.ready_at is not None,
            close_code=outcome.close_code,
            close_reason=outcome.close_reason,
            status_code=outcome.status_code,
            error=outcome.error,
            delay=delay,
            delay_source=source,
        )

    def _log_reconnect(
        self, outcome: _Outcome, delay: float, source: DelaySource, *, server_directed: bool
    ) -> None:
        """One line per reconnect; the application sees none of them as an exception.

        A server-directed reconnect is routine (INFO); a failed attempt or a
        lost connection is something the application cannot otherwise see
        without a hook (WARNING).
        """
        if server_directed:
            logger.info(
                "%s: the server closed with %d (a planned reconnect); attempt %d in %.3f s (%s)",
                self._display,
                outcome.close_code,
                self._number,
                delay,
                source.value,
            )
            return
        if outcome.status_code is not None:
            cause = f"handshake refused with HTTP {outcome.status_code}"
        elif outcome.close_code is not None:
            cause = f"connection closed with code {outcome.close_code}"
        else:
            cause = f"attempt failed: {outcome.error!r}"
        logger.warning(
            RETRIED_FAILURE_MESSAGE,
            self._display,
            cause,
            self._number,
            delay,
            source.value,
        )

    def _advise(self, outcome: _Outcome) -> RetryAdvice:
        if outcome.status_code is not None:
            advice = classify_rejection(outcome.status_code, outcome.headers, _wall_clock())
        elif outcome.close_code is not None:
            # Only a close the server sent is read for a verdict; one that the
            # client's websocket layer made (see _closed_by_server) is retried
            # with backoff, like a drop.
            advice = (
                classify_close(outcome.close_code, outcome.close_reason)
                if outcome.server_closed
                else RetryAdvice(Verdict.RETRY)
            )
        else:
            return RetryAdvice(Verdict.RETRY)
        if self._should_reconnect is None:
            return advice
        question = Disconnect(
            close_code=outcome.close_code if outcome.status_code is None else None,
            close_reason=outcome.close_reason if outcome.status_code is None else None,
            status_code=outcome.status_code,
            headers=outcome.headers,
            default=advice.verdict is Verdict.RETRY,
        )
        try:
            retry = bool(self._should_reconnect(question))
        except Exception:
            logger.exception("should_reconnect raised; the default rule applies")
            return advice
        if retry == (advice.verdict is Verdict.RETRY):
            return advice
        return RetryAdvice(Verdict.RETRY) if retry else RetryAdvice(Verdict.FATAL)

    def _fatal_error(self, outcome: _Outcome) -> ReconnectFailed:
        if outcome.status_code is not None:
            return HandshakeRejectedError(
                outcome.status_code, outcome.headers, outcome.body, self._history
            )
        return FatalCloseError(cast(int, outcome.close_code), outcome.close_reason, self._history)

    # ----------------------------------------------------------------- attempt

    async def _attempt(self) -> _Outcome:
        outcome = _Outcome(started_at=trio.current_time())
        self._reconnect_requested = False  # a request made just now is served by this attempt
        self._number = self._failures + 1
        self._set_state(ConnectionState.CONNECTING)
        try:
            with trio.CancelScope() as self._attempt_scope:
                target = Target(
                    *parse_url(await _resolve(self._url)),
                    ssl_context=await _resolve(self._ssl_context),
                )
                self._display = target.display
                headers = _header_pairs(await _resolve(self._headers))
                await self._connect_and_run(target, headers, outcome)
        except Exception as exc:
            cause = _main_cause(exc)
            if isinstance(cause, trio_websocket.ConnectionRejected):
                outcome.status_code = cause.status_code
                outcome.headers = tuple(cause.headers or ())
                outcome.body = cause.body
            if outcome.error is None:
                outcome.error = cause
        finally:
            self._attempt_scope = None
            self._connection_lost()
        return outcome

    def _connection_lost(self) -> None:
        self._websocket = None
        opened, self._open = self._open, None
        if opened is not None:
            self._gate = trio.Event()  # fresh for the next connection
            opened.lost.set()

    async def _connect_and_run(
        self, target: Target, headers: list[tuple[bytes, bytes]], outcome: _Outcome
    ) -> None:
        deadline = trio.current_time() + self._connect_timeout
        stream: trio.abc.Stream | None = None
        with trio.CancelScope(deadline=deadline):
            stream = await self._open_stream(target)
        if stream is None:
            raise ConnectTimeout(
                f"no connection to {target.display} within {self._connect_timeout} s"
            )
        try:
            with trio.CancelScope(deadline=deadline) as phase:
                async with trio.open_nursery() as nursery:
                    await self._run_connection(nursery, phase, stream, target, headers, outcome)
                    nursery.cancel_scope.cancel()
            if phase.cancelled_caught:
                if self._state is ConnectionState.RESUMING:
                    raise ResumeTimeout(f"no ready within {self._resume_timeout} s")
                raise ConnectTimeout(
                    f"websocket handshake with {target.display} took over {self._connect_timeout} s"
                )
        finally:
            await trio.aclose_forcefully(stream)

    async def _run_connection(
        self,
        nursery: trio.Nursery,
        phase: trio.CancelScope,
        stream: trio.abc.Stream,
        target: Target,
        headers: list[tuple[bytes, bytes]],
        outcome: _Outcome,
    ) -> None:
        handshake_scope = trio.CancelScope()
        spawner = _ReaderSpawner(nursery, handshake_scope)
        ws: trio_websocket.WebSocketConnection | None = None
        recording = RecordingStream(stream)  # for refusals that end at close
        with handshake_scope:
            ws = await trio_websocket.wrap_client_stream(
                cast(trio.Nursery, spawner),
                cast(trio.SocketStream, recording),
                target.host_header,
                target.resource,
                extra_headers=headers,
                message_queue_size=_WS_QUEUE_SIZE,
                max_message_size=self._max_message_size,
            )
        if ws is None:
            if isinstance(spawner.error, trio_websocket.ConnectionRejected):
                raise spawner.error  # a refusal trio-websocket read in full
            # A refusal whose body ended at close, or one the reader choked on
            # after its body (more bytes than Content-Length with
            # ``Connection: close``): read it from the recorded bytes.
            refusal = recording.refusal() if spawner.reader_ended else None
            if refusal is not None:
                # A refusal whose body ended at close: trio-websocket's reader
                # missed its end (see _transport); the same verdict as the others.
                raise trio_websocket.ConnectionRejected(
                    refusal.status_code, refusal.headers, refusal.body
                )
            if spawner.error is not None:
                raise spawner.error
            if spawner.reader_ended:  # closed by the server before it answered
                outcome.close_code = 1006
                raise ConnectionError(
                    f"{target.display} closed the connection during the opening handshake"
                )
            return  # the phase deadline expired; the caller reports it
        if spawner.error is not None:  # it failed right after the upgrade
            raise spawner.error
        spawner.opened = True
        recording.stop()
        self._websocket = ws
        result: HandshakeResult | None = None
        try:
            if self._resume:
                self._set_state(ConnectionState.RESUMING)
                phase.deadline = trio.current_time() + self._resume_timeout
                result = await self._handshake(ws, phase)
            phase.deadline = math.inf
            self._ready(ws, result, outcome)
            if self._ping_interval is not None:
                nursery.start_soon(self._pinger, ws, nursery.cancel_scope, outcome)
            await self._read_loop(ws)
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
        self, ws: trio_websocket.WebSocketConnection, phase: trio.CancelScope
    ) -> HandshakeResult:
        handshake = ResumeHandshake(self._last_event_id)
        await ws.send_message(handshake.frame())
        received = 0
        while handshake.result is None:
            item = handshake.receive(await ws.get_message())
            if isinstance(item, ServerEvent):
                received += 1
                if received > self._max_replay:
                    raise ResumeProtocolError(
                        f"the server replayed more than max_replay={self._max_replay} events"
                    )
                if not self._recent.add(item.id):
                    continue  # a duplicate across the replay boundary
                self._last_event_id = item.id
            elif isinstance(item, Snapshot):
                self._last_event_id = item.id
                self._recent.clear()  # the server's order starts again here ...
                if item.id is not None:
                    self._recent.add(item.id)  # ... at an event the state includes
            elif isinstance(item, Gap):
                self._recent.clear()  # likewise, after the last event of the gap
                if item.ready_id is not None:
                    self._recent.add(item.ready_id)
            if item is not None:
                await self._deliver_replayed(item, phase)
        result = handshake.result
        if result.ready_id is not None or result.outcome is HandshakeOutcome.LOST:
            self._last_event_id = result.ready_id
        return result

    async def _deliver_replayed(self, item: Item, phase: trio.CancelScope) -> None:
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
        phase.deadline = math.inf
        try:
            await self._inbox.put(item)
        finally:
            phase.deadline = trio.current_time() + self._resume_timeout

    def _ready(
        self,
        ws: trio_websocket.WebSocketConnection,
        result: HandshakeResult | None,
        outcome: _Outcome,
    ) -> None:
        now = trio.current_time()
        outcome.ready_at = now
        lost_for = None if self._lost_at is None else now - self._lost_at
        self._lost_at = None
        self._metrics.record_ready(lost_for, result)
        self._open = _Open(ws, trio.Event())
        how = (
            "no resume" if result is None else f"{result.outcome.value}, {result.replayed} replayed"
        )
        logger.info("%s: ready (%s)", self._display, how)
        self._set_state(ConnectionState.OPEN)
        self._gate.set()

    async def _read_loop(self, ws: trio_websocket.WebSocketConnection) -> None:
        recent = self._recent
        inbox = self._inbox
        resume = self._resume
        while True:
            message = await ws.get_message()
            item = parse_live(message) if resume else message
            if isinstance(item, ServerEvent):
                if not recent.add(item.id):
                    continue
                self._last_event_id = item.id
            await inbox.put(item)

    async def _pinger(
        self,
        ws: trio_websocket.WebSocketConnection,
        connection_scope: trio.CancelScope,
        outcome: _Outcome,
    ) -> None:
        assert self._ping_interval is not None
        number = 0
        while True:
            await trio.sleep(self._ping_interval)
            number += 1
            stalls = self._inbox.stalls
            with trio.move_on_after(self._ping_timeout) as waited:
                try:
                    await ws.ping(number.to_bytes(8, "big"))
                except trio_websocket.ConnectionClosed:
                    return  # the reader sees the close too
            if not waited.cancelled_caught:
                continue
            if self._inbox.stalled or self._inbox.stalls != stalls:
                # trio-websocket does not read pongs while its queue is full:
                # a slow application, not a dead server.
                continue
            outcome.error = PingTimeout(f"no pong within {self._ping_timeout} s")
            outcome.close_code = 1006
            connection_scope.cancel()
            return


@contextlib.asynccontextmanager
async def open_reconnecting_websocket(
    url: Factory[str], **options: Any
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
        resume_timeout: Seconds from the websocket opening to ``ready``.
        connect_timeout: Seconds for TCP, TLS and the websocket handshake.
        close_timeout: Seconds for the closing handshake when leaving.
        ping_interval: Seconds between pings (``None``: no pings).
        ping_timeout: Seconds to wait for a pong before the link counts as dead.
        max_server_delay: The clamp for server retry hints, seconds.
        max_queue: Items buffered for the application before reading pauses.
        max_message_size: Largest message accepted (larger: close 1009).
        max_replay: Most events one handshake may replay.
        dedupe_window: How many recent event ids are kept to drop duplicates.
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
    ws = ReconnectingWebSocket(url, **options)
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        ws._nursery = nursery
        nursery.start_soon(ws._supervise)
        try:
            with trio.CancelScope() as ws._body_scope:
                yield ws
        except BaseException as exc:
            body_error = exc
        finally:
            ws._body_scope = None
            with trio.CancelScope(shield=True):
                await ws._shutdown()
    if body_error is not None:
        raise body_error
    if ws._error is not None:
        raise ws._error
