"""The reconnecting client: the public class and its supervisor.

:func:`open_reconnecting_websocket` opens a nursery around the application's
``async with`` block and runs the supervisor in it. The supervisor's loop
(:meth:`ReconnectingWebSocket._supervise_loop`) is a screenful::

    CONNECTING -> (RESUMING) -> OPEN -> connection lost -> BACKING_OFF -> CONNECTING ...

It decides nothing. What to do after an attempt, wait (how long, why) or
give up, is :mod:`._retry` (with the pacer of :mod:`._backoff` and the
verdicts of :mod:`._hints`); which state changes are legal is
:data:`._state.TRANSITIONS`; the position in the event stream is
:mod:`._cursor`; the handshake frames are :mod:`._protocol`; the metrics
:mod:`._metrics`. The I/O of one attempt, with its cancel scopes and its
trio-websocket workarounds, is :mod:`._attempt`: each attempt is one
:class:`~._attempt.Run` (its websocket, cancel scopes, phase, gate, lost
event and outcome). This module sequences the attempts, keeps the public
state, and closes the connection when the application leaves.

Errors from an attempt are recorded in its outcome; no exception group (and
no error but ``ReconnectFailed`` and friends) reaches the public surface.

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
import logging
import random as _random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import trio
import trio_websocket

from ._attempt import AttemptContext, AttemptOptions, Factory, HeaderPairs, Run
from ._backoff import Backoff, Pacer, RetryPolicy
from ._cursor import Cursor
from ._exceptions import (
    ClientClosedError,
    ReconnectFailed,
)
from ._hints import NORMAL_CLOSURE
from ._inbox import Inbox
from ._metrics import MetricsRecorder, ReconnectStatistics
from ._protocol import HandshakeResult, Item
from ._retry import Disconnect, GiveUp, Outcome, RetryState, Wait
from ._settings import DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE
from ._state import ConnectionState, DelaySource, Transition, check_transition
from ._transport import OpenStream, Target, open_tcp_stream, parse_url
from ._turn import Turn
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

#: The WARNING logged for a failed attempt or a lost connection that is retried
#: (the application sees no exception for it); test harnesses match on it.
RETRIED_FAILURE_MESSAGE: Final = "%s: %s; attempt %d in %.3f s (%s)"

# Wall-clock seconds since the epoch, for HTTP-date Retry-After hints (tests patch it).
_wall_clock = time.time


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
        self._close_timeout = close_timeout
        options = AttemptOptions(
            url=url,
            resume=resume,
            resume_timeout=resume_timeout,
            connect_timeout=connect_timeout,
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
        self._context = AttemptContext(
            options,
            self._inbox,
            self._cursor,
            targeted=self._targeted,
            resuming=self._resuming,
            ready=self._ready,
            closing=lambda: self._closing,
        )
        self._state = ConnectionState.CONNECTING
        # Safe to log: no query string (tokens live there), never the headers.
        self._display = Target(*parse_url(url)).display if isinstance(url, str) else "<url>"
        self._run = Run()  # the attempt in progress, or the next one
        # The number of the attempt being made, or waited for in BACKING_OFF
        # (see _retry): the one number every transition, history record and
        # log line uses.
        self._number = 1
        self._lost_at: float | None = None
        self._send_turn = Turn()  # held while waiting on the gate: call order
        self._error: ReconnectFailed | None = None
        self._closing: bool = False
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
        if not isinstance(message, (str, bytes)):  # a tuple: no union object built per call
            raise TypeError(f"message must be str or bytes, got {type(message).__name__}")
        turn = self._send_turn
        # Fast path: ready, and nobody holds or waits for the turn. It skips
        # take()'s schedule point, one extra trip through the scheduler per
        # message; the websocket send below checkpoints.
        if self._run.ready_ws is None or not turn.take_nowait():
            await turn.take()
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
        if self._ended:
            return
        self._error = error
        # Raised to the application (out of the block and every call), so
        # not logged above DEBUG: a library does not both raise and log.
        logger.debug("%s: %s", self._display, error)
        self._end(ConnectionState.FAILED, error)
        if self._body_scope is not None:
            self._body_scope.cancel()

    def _end(self, state: ConnectionState, error: Exception) -> None:
        run = self._run
        self._set_state(state, error=error)
        self._inbox.close(error)
        run.gate.set()  # wake the waiters; they see the end and raise
        run.end()

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
                with trio.move_on_after(self._close_timeout):
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
            if decision.server_directed:
                self._metrics.record_server_directed()
            self._metrics.record_wait(decision.delay, decision.source)
            self._number = self._retry.next_attempt  # the attempt this wait is for
            await self._back_off(outcome, decision)

    async def _back_off(self, outcome: Outcome, wait: Wait) -> None:
        if wait.source is DelaySource.IMMEDIATE:
            self._set_state(ConnectionState.BACKING_OFF, delay=0.0, delay_source=wait.source)
        else:
            self._log_reconnect(outcome, wait)
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

    def _log_reconnect(self, outcome: Outcome, wait: Wait) -> None:
        """One line per reconnect; the application sees none of them as an exception.

        A server-directed reconnect is routine (INFO); a failed attempt or a
        lost connection is something the application cannot otherwise see
        without a hook (WARNING).
        """
        if wait.server_directed:
            logger.info(
                "%s: the server closed with %d (a planned reconnect); attempt %d in %.3f s (%s)",
                self._display,
                outcome.close_code,
                self._number,
                wait.delay,
                wait.source.value,
            )
            return
        logger.warning(
            RETRIED_FAILURE_MESSAGE,
            self._display,
            outcome.describe(),
            self._number,
            wait.delay,
            wait.source.value,
        )

    # ----------------------------------------------------------------- attempt

    async def _attempt(self, run: Run) -> Outcome:
        """One attempt (:meth:`Run.attempt`); then the next attempt's run takes its place."""
        self._number = self._retry.next_attempt
        # Started before the transition: reconnect_now() from on_transition cancels it.
        run.start(Outcome(self._number, trio.current_time()))
        if self._state is not ConnectionState.CONNECTING:  # the first one starts there
            self._set_state(ConnectionState.CONNECTING)
        try:
            return await run.attempt(self._context)
        finally:
            if not self._ended:
                self._run = run.next()  # before run.end(): its waiters look for the next
            run.end()

    def _targeted(self, target: Target) -> None:
        self._display = target.display

    def _resuming(self) -> None:
        self._set_state(ConnectionState.RESUMING)

    def _ready(self, result: HandshakeResult | None) -> None:
        now = trio.current_time()
        lost_for = None if self._lost_at is None else now - self._lost_at
        self._lost_at = None
        self._metrics.record_ready(lost_for, result)
        how = (
            "no resume" if result is None else f"{result.outcome.value}, {result.replayed} replayed"
        )
        logger.info("%s: ready (%s)", self._display, how)
        self._set_state(ConnectionState.OPEN)


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
