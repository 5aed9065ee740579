"""The supervisor: it sequences the attempts and keeps the public state.

The client (:mod:`._client`) runs :meth:`Supervisor.supervise` in a nursery
around the application's ``async with`` block. Its loop
(:meth:`Supervisor._loop`) is a screenful::

    CONNECTING -> (RESUMING) -> OPEN -> connection lost -> BACKING_OFF -> CONNECTING ...

It decides nothing. What to do after an attempt, wait (how long, why) or
give up, is :mod:`._retry` (with the pacer of :mod:`._backoff` and the
verdicts of :mod:`._hints`); which state changes are legal is
:data:`._state.TRANSITIONS`; the position in the event stream is
:mod:`._cursor`; the handshake frames are :mod:`._protocol`; the metrics
:mod:`._metrics`. The I/O of one attempt, with its cancel scopes and its
trio-websocket workarounds, is :mod:`._attempt`: each attempt is one
:class:`~._attempt.Run` (its websocket, cancel scopes, phase, gate, lost
event and outcome).

Errors from an attempt are recorded in its outcome; no exception group (and
no error but ``ReconnectFailed`` and friends) reaches the public surface.
"""

from __future__ import annotations

import contextlib
import logging
import random as _random
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import trio

from ._attempt import AttemptContext, Run
from ._backoff import Backoff, Pacer
from ._cursor import Cursor
from ._exceptions import ClientClosedError, ReconnectFailed, leaves
from ._handshake import NOT_A_RESUME_SERVER, steps_for
from ._hints import NORMAL_CLOSURE
from ._inbox import Inbox
from ._metrics import MetricsRecorder
from ._options import ClientOptions
from ._outbox import Outbox
from ._protocol import HandshakeResult, Item
from ._publishing import Publisher
from ._retry import GiveUp, Outcome, RetryState, Wait
from ._state import ConnectionState, DelaySource, Transition, check_transition
from ._subscriptions import Channels
from ._transport import Target, parse_url
from ._wire import new_client_id

__all__ = ["FOREIGN_SERVER_ATTEMPTS", "RETRIED_FAILURE_MESSAGE", "Supervisor", "logger"]

logger = logging.getLogger("trio_reconnect")
# A library's loggers get a NullHandler only (the logging HOWTO): an
# application that configures no logging then sees no stderr lines from
# Python's last-resort handler; one line of logging.basicConfig shows them.
logger.addHandler(logging.NullHandler())

#: The WARNING logged for a failed attempt or a lost connection that is retried
#: (the application sees no exception for it); test harnesses match on it.
RETRIED_FAILURE_MESSAGE: Final = "%s: %s; attempt %d in %.3f s (%s)"

#: Attempts in a row that meet a server without the resume protocol before
#: the client says so, once, at WARNING.
FOREIGN_SERVER_ATTEMPTS: Final = 3


# Wall-clock seconds since the epoch, for HTTP-date Retry-After hints (tests patch it).
_wall_clock = time.time


class Supervisor:
    """The attempts of one client, its state, and how it ends."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        pacer = Pacer(
            options.backoff if options.backoff is not None else Backoff(),
            options.random or _random.Random(),
            max_server_delay=options.max_server_delay,
        )
        self.retry = RetryState(
            pacer,
            max_attempts=options.max_attempts,
            give_up_after=options.give_up_after,
            stable_after=options.stable_after,
            server_hints=options.server_hints,
            should_reconnect=options.should_reconnect,
        )
        self.metrics = MetricsRecorder()
        self.cursor = Cursor(options.last_event_id, options.dedupe_window)
        self.client_id = (
            options.client_id
            if options.client_id is not None
            else options.outbox.client_id
            if options.outbox is not None
            else new_client_id(_random.SystemRandom())
        )
        url = options.url
        # Safe to log: no query string (tokens live there), never the headers.
        self.display = Target(*parse_url(url)).display if isinstance(url, str) else "<url>"
        #: The acknowledged publishes (they need the resume protocol too).
        self.publisher: Publisher | None = None
        #: The subscriptions (channels need the resume protocol).
        self.channels: Channels | None = None
        if options.resume:
            self.channels = self._channels(options)
            self.publisher = self.channels.publisher
        self.inbox: Inbox[Item] = self._inbox(options.max_queue, options.outbox_bytes)
        self.context = AttemptContext(
            options,
            self.inbox,
            self.cursor,
            steps_for(
                resume=options.resume,
                on_connect=options.on_connect,
                channels=self.channels,
                publisher=self.publisher,
            ),
            targeted=self._targeted,
            resuming=self._resuming,
            ready=self._ready,
            closing=lambda: self.closing,
            channels=self.channels,
            pumps=()
            if self.channels is None or self.publisher is None
            else (self.channels.pump, self.publisher.pump),
        )
        self.state = ConnectionState.CONNECTING
        self.run = Run()  # the attempt in progress, or the next one
        # The number of the attempt being made, or waited for in BACKING_OFF
        # (see _retry): the one number every transition, history record and
        # log line uses.
        self.number = 1
        self._lost_at: float | None = None
        self._foreign = 0  # attempts in a row whose server did not speak the protocol
        self._warned_foreign = False
        self.error: ReconnectFailed | None = None
        self.closing = False
        #: The application's block; cancelled when the client fails.
        self.body_scope: trio.CancelScope | None = None
        self._scope: trio.CancelScope | None = None

    def _inbox(self, max_queue: int, outbox_bytes: int) -> Inbox[Item]:
        """The buffer; past ``max_queue`` while a publish is pending (:mod:`._overflow`)."""
        publisher = self.publisher
        if publisher is None:
            return Inbox(max_queue)
        inbox: Inbox[Item] = Inbox(
            max_queue, overflow_bytes=outbox_bytes, publishing=publisher.pending
        )
        publisher.entered = inbox.recheck
        return inbox

    def _channels(self, options: ClientOptions) -> Channels:
        """The subscriptions, with the outbox of publishes (restored from ``outbox=``)."""
        rng = options.random or _random.Random()
        outbox = (
            Outbox(options.outbox_bytes)
            if options.outbox is None
            else Outbox.from_state(options.outbox, options.outbox_bytes)
        )
        return Channels(
            self.client_id,
            options.max_queue,
            options.dedupe_window,
            options.max_replay,
            options.backoff,
            rng,
            self.display,
            Publisher(outbox, options.backoff, rng, self.display),
        )

    # ------------------------------------------------------------------ ending

    @property
    def ended(self) -> bool:
        """Whether the client failed or was closed."""
        return self.error is not None or self.closing

    def raise_if_ended(self) -> None:
        """Raise the client's end: its failure, or :class:`ClientClosedError`."""
        if self.error is not None:
            raise self.error
        if self.closing:
            raise ClientClosedError("the reconnecting websocket is closed")

    def set_state(self, state: ConnectionState, **details: Any) -> None:
        """Move to ``state`` (a legal transition) and tell ``on_transition``."""
        previous = self.state
        check_transition(previous, state)
        self.state = state
        transition = Transition(
            state=state,
            previous=previous,
            time=trio.current_time(),
            attempt=self.number,
            **details,
        )
        logger.debug("%s: %s -> %s %s", self.display, previous.value, state.value, details)
        hook = self.options.on_transition
        if hook is not None:
            try:
                hook(transition)
            except Exception:
                logger.exception("on_transition hook raised; ignored")

    def fail(self, error: ReconnectFailed) -> None:
        """The client gave up: end with ``error`` and cancel the application's block."""
        if self.ended:
            return
        self.error = error
        # Raised to the application (out of the block and every call), so
        # not logged above DEBUG: a library does not both raise and log.
        logger.debug("%s: %s", self.display, error)
        self._end(ConnectionState.FAILED, error)
        if self.body_scope is not None:
            self.body_scope.cancel()

    def _end(self, state: ConnectionState, error: Exception) -> None:
        run = self.run
        self.set_state(state, error=error)
        self.inbox.close(error)
        if self.channels is not None:
            self.channels.close(error)
        if self.publisher is not None:
            self.publisher.close(error)
        run.gate.set()  # wake the waiters; they see the end and raise
        run.end()

    async def close(self) -> None:
        """Leave: close the open websocket with 1000, then stop supervising.

        The supervisor is shielded from cancellation coming from outside the
        block (see :meth:`supervise`), so trio-websocket's reader is still
        running here and reads the server's close reply: a cancelled block
        takes one round trip to leave, not ``close_timeout``.
        """
        if not self.ended:
            self.closing = True
            ws = self.run.ws  # open, ready or still resuming
            self._end(ConnectionState.CLOSED, ClientClosedError("the client was closed"))
            if ws is not None:
                with trio.move_on_after(self.options.close_timeout):
                    await ws.aclose(NORMAL_CLOSURE)
        if self._scope is not None:
            self._scope.cancel()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """The ``async with`` block of ``open_reconnecting_websocket``.

        The supervisor runs in a nursery around the block. Leaving the block
        (normally, with an error, or cancelled) closes the client shielded;
        an error of the block wins over the client's own. A Ctrl-C that trio
        delivers inside one of the client's own tasks leaves as a bare
        ``KeyboardInterrupt`` (never wrapped in a group), so that
        ``except KeyboardInterrupt`` around ``trio.run`` works.
        """
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.supervise)
                try:
                    with trio.CancelScope() as self.body_scope:
                        yield
                except BaseException as exc:
                    body_error = exc
                finally:
                    self.body_scope = None
                    with trio.CancelScope(shield=True):
                        await self.close()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            interrupt = next((e for e in leaves(group) if isinstance(e, KeyboardInterrupt)), None)
            if interrupt is None:
                raise
            raise interrupt from None
        if body_error is not None:
            if self.error is not None and all(leaf is self.error for leaf in leaves(body_error)):
                # The client's failure, raised in the block's own tasks (a
                # reader task in a nursery): out bare, as documented.
                raise self.error
            raise body_error
        if self.error is not None:
            raise self.error

    # -------------------------------------------------------------- the loop

    async def supervise(self) -> None:
        """Make attempts until the client ends; never raises but ``Cancelled``."""
        # Shielded: a cancellation from outside the ``async with`` block
        # reaches the block's body, whose exit runs close(), which closes the
        # connection politely and then cancels this scope. Without the shield
        # the outside cancellation would kill trio-websocket's reader first,
        # and every close would wait close_timeout for a reply nobody reads.
        try:
            with trio.CancelScope(shield=True) as self._scope:
                if not self.ended:
                    await self._loop()
        except Exception as exc:  # a bug here must not take the application down
            logger.exception("reconnect supervisor crashed")
            failure = ReconnectFailed(
                "internal error in the reconnect supervisor", self.retry.history
            )
            failure.__cause__ = exc
            self.fail(failure)

    async def _loop(self) -> None:
        """Attempt, decide (pure: :meth:`RetryState.decide`), wait; until the end."""
        while True:
            run = self.run
            outcome = await self._attempt(run)
            if self.ended:
                return
            self._warn_if_foreign(outcome)
            now = trio.current_time()
            if outcome.ready_at is not None:
                self._lost_at = now
            decision = self.retry.decide(outcome, now, _wall_clock())
            if decision.failed:
                self.metrics.record_failure()
            if isinstance(decision, GiveUp):
                self.fail(decision.error)
                return
            if decision.server_directed:
                self.metrics.record_server_directed()
            self.metrics.record_wait(decision.delay, decision.source)
            self.number = self.retry.next_attempt  # the attempt this wait is for
            await self._back_off(outcome, decision)

    def _warn_if_foreign(self, outcome: Outcome) -> None:
        """Say once, at WARNING, that the server does not speak the resume protocol."""
        self._foreign = self._foreign + 1 if outcome.foreign_server else 0
        if self._foreign == FOREIGN_SERVER_ATTEMPTS and not self._warned_foreign:
            self._warned_foreign = True
            logger.warning(
                "%s: %d attempts in a row: %s", self.display, self._foreign, NOT_A_RESUME_SERVER
            )

    async def _back_off(self, outcome: Outcome, wait: Wait) -> None:
        if wait.source is DelaySource.IMMEDIATE:
            self.set_state(ConnectionState.BACKING_OFF, delay=0.0, delay_source=wait.source)
        else:
            self._log_reconnect(outcome, wait)
            self.set_state(
                ConnectionState.BACKING_OFF,
                delay=wait.delay,
                delay_source=wait.source,
                close_code=outcome.close_code,
                close_reason=outcome.close_reason,
                status_code=outcome.status_code,
                error=outcome.error,
            )
        backoff = self.run.backoff  # reconnect_now() cancels it
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
                self.display,
                outcome.close_code,
                self.number,
                wait.delay,
                wait.source.value,
            )
            return
        logger.warning(
            RETRIED_FAILURE_MESSAGE,
            self.display,
            outcome.describe(),
            self.number,
            wait.delay,
            wait.source.value,
        )

    # ----------------------------------------------------------------- attempt

    async def _attempt(self, run: Run) -> Outcome:
        """One attempt (:meth:`Run.attempt`); then the next attempt's run takes its place."""
        self.number = self.retry.next_attempt
        # Started before the transition: reconnect_now() from on_transition cancels it.
        run.start(Outcome(self.number, trio.current_time()))
        if self.state is not ConnectionState.CONNECTING:  # the first one starts there
            self.set_state(ConnectionState.CONNECTING)
        try:
            return await run.attempt(self.context)
        finally:
            if not self.ended:
                self.run = run.next()  # before run.end(): its waiters look for the next
            if self.channels is not None:
                self.channels.connection_lost()
            if self.publisher is not None:
                self.publisher.connection_lost()
            run.end()

    def _targeted(self, target: Target) -> None:
        self.display = target.display
        if self.channels is not None:
            self.channels.display = target.display
        if self.publisher is not None:
            self.publisher.display = target.display

    def _resuming(self) -> None:
        self.set_state(ConnectionState.RESUMING)

    def _ready(self, result: HandshakeResult | None) -> None:
        self._foreign = 0
        now = trio.current_time()
        lost_for = None if self._lost_at is None else now - self._lost_at
        self._lost_at = None
        self.metrics.record_ready(lost_for, result)
        how = (
            "no resume" if result is None else f"{result.outcome.value}, {result.replayed} replayed"
        )
        logger.info("%s: ready (%s)", self.display, how)
        self.set_state(ConnectionState.OPEN)
