"""One connection attempt: the I/O from opening the stream to losing the connection.

A :class:`Run` is one attempt and holds all of its state: its cancel scopes
(the wait before it, the attempt, the deadline of the current phase), its
phase (which says which timeout fired), its websocket, its gate, its lost
event and its :class:`~trio_reconnect._retry.Outcome`. The client
supervisor (:mod:`trio_reconnect._supervisor`) makes one per attempt and
runs it with :meth:`Run.attempt`; what the attempt needs from it is in an
:class:`AttemptContext` (the options, the inbox, the cursor, the
handshake's steps, and the calls back: the target, the handshake starting,
``ready``). The steps themselves (the resume, ``on_connect``) are
:mod:`._handshake`; the attempt runs them in order, then opens the gate.

Timing, and the trio-websocket sharp edges it works around (shared TRIO_NOTES):

* ``connect_timeout`` covers opening the stream (TCP + TLS) and the websocket
  handshake. trio-websocket's own timeout does not bound a stalled handshake
  (its nursery waits on the reader task), so the deadline is a cancel scope
  placed OUTSIDE the nursery that holds the reader task, and is replaced by
  ``resume_timeout`` for each step of the handshake once the websocket is
  open, and lifted when the gate opens.
* A server that accepts TCP and closes before answering the handshake would
  leave ``wrap_client_stream`` waiting until that deadline; a small wrapper
  (:class:`_ReaderSpawner`) notices the reader task ending and fails the
  attempt at once.
* Messages are read all the time, whether or not the application reads
  (:mod:`._delivery`: on a ready connection trio-websocket's reader puts
  them straight into the inbox). A ping that times out while the inbox was
  full at any point counts as a slow consumer, not a dead server.
* Ping payloads are unique per connection (a timed-out ping stays in flight).
* Once the websocket is open, its reader parses the server's plain text
  frames without wsproto's frame machinery, and hands wsproto every other
  frame (:mod:`._wsread`, through :func:`~._tws.fast_text_reads`).
* trio-websocket writes every frame under its own send lock, a trio lock
  that yields even when free and tracks its owner; once the websocket is
  open, a :class:`~._turn.Turn` takes its place (:func:`_replace_send_lock`),
  so that a message sent crosses the scheduler once, in the write itself.
* Errors from trio-websocket come out of the connection's nursery as
  exception groups; the attempt takes the error apart there and records the
  one that explains the failure in its outcome.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final, NoReturn, TypeVar, cast

import attrs
import trio
import trio_websocket

from ._cursor import Cursor
from ._delivery import deliver, live_acceptor
from ._directsend import send_turn_for
from ._exceptions import (
    AttemptError,
    ConnectTimeout,
    PingTimeout,
    leaves,
)
from ._handshake import Link, Phase, Step, run_steps
from ._hints import ABNORMAL_CLOSURE
from ._inbox import Inbox
from ._options import ClientOptions, Factory, HeaderPairs
from ._protocol import HandshakeResult, Item
from ._retry import Outcome
from ._settings import missed_pong_is_backpressure
from ._transport import RecordingStream, Target, parse_url
from ._tws import (
    fast_text_reads,
    peer_close_event,
    peer_started_close,
    replace_stream,
    swap_send_lock,
)

if TYPE_CHECKING:
    from ._subscriptions import Channels

__all__ = ["AttemptContext", "Phase", "Run"]  # Phase: from _handshake

# trio-websocket's own queue between its reader and the resume handshake;
# once ready, the inbox is the only buffer. A connection's queue also holds
# one message per subscription (ws_queue_size).
_WS_QUEUE_SIZE: Final = 16


def ws_queue_size(channels: Channels | None) -> int:
    """The message queue of a connection: ``_WS_QUEUE_SIZE``, plus one per subscription.

    A resume of many channels is answered by a frame per channel in one
    write: with room for them all, the reader queues the whole answer
    without waiting for the handshake to take some (each such wait is two
    passes of the scheduler). The queue stays bounded, by as many messages
    as the subscriptions' own buffers are.
    """
    return _WS_QUEUE_SIZE + (0 if channels is None else len(channels.subs))


# Bytes trio-websocket's reader asks of the stream per read (its default is
# 4 KiB): a resume's answer, one write of a frame per channel (about 10 KiB
# for 100 channels), then comes in one read, not three, and a frame is cut
# by the end of a read less often (_wsread parses whole frames itself).
# trio's own default for a socket stream.
_RECEIVE_SIZE: Final = 65536

# Whether trio-websocket's send lock is replaced by a Turn (see
# _replace_send_lock); off in tests that compare both.
_FAST_SEND_LOCK = True

# Whether the reader parses the server's plain text frames itself
# (_tws.fast_text_reads); off in tests that compare both.
_FAST_TEXT_READS = True

T = TypeVar("T")


@attrs.frozen
class AttemptContext:
    """What every attempt of one client shares, and its calls back into the client.

    Attributes:
        options: The attempt's options.
        inbox: The application's receive buffer.
        cursor: The position in the event stream (last id, dedupe window).
        targeted: Called with the target once the URL is resolved.
        steps: The handshake's steps (:func:`~._handshake.steps_for`).
        resuming: Called when the websocket is open and the handshake's steps start.
        ready: Called when they are done, with the resume handshake's result
            (``None`` without resume), before the gate opens.
        closing: Whether the application is closing the client (a close is
            then the application's, and the attempt waits to be cancelled).
    """

    options: ClientOptions
    inbox: Inbox[Item]
    cursor: Cursor
    steps: tuple[Step, ...]
    targeted: Callable[[Target], None]
    resuming: Callable[[], None]
    ready: Callable[[HandshakeResult | None], None]
    closing: Callable[[], bool]
    #: The client's subscriptions (``resume=True``).
    channels: Channels | None = None
    #: Tasks run on each ready connection (the subscribes' and publishes' pumps).
    pumps: tuple[Callable[[trio_websocket.WebSocketConnection], Awaitable[None]], ...] = ()


@attrs.define(eq=False)
class Run:
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
    phase: Phase = Phase.CONNECT
    #: The step of the handshake running (its deadline is the phase's).
    step: Step | None = None
    #: The handshake in progress, once the websocket is open.
    link: Link | None = None
    #: What the attempt came to; ``None`` until it starts.
    outcome: Outcome | None = None
    #: The websocket, once open (resuming or ready).
    ws: trio_websocket.WebSocketConnection | None = None
    #: The websocket while the connection is ready (from ``ready`` until it
    #: is lost or the client ends); what sends go to.
    ready_ws: trio_websocket.WebSocketConnection | None = None

    def next(self) -> Run:
        """The run of the next attempt: a fresh gate if this one's was set, else this one."""
        return Run() if self.gate.is_set() else Run(gate=self.gate)

    def reconnect(self) -> None:
        """``reconnect_now()``: cut the wait short, or drop the attempt (no failure)."""
        if self.outcome is None:
            self.backoff.cancel()
        else:
            self.outcome.requested = True
            self.scope.cancel()

    def end(self) -> None:
        """The attempt is over (or the client ended): sends stop, waiters wake."""
        self.ready_ws = None
        self.lost.set()

    def start(self, outcome: Outcome) -> None:
        """The wait is over: the attempt has begun (``reconnect_now()`` now drops it)."""
        self.outcome = outcome

    async def attempt(self, context: AttemptContext) -> Outcome:
        """Connect, resume, deliver until the connection is lost; fill in the outcome.

        Call :meth:`start` first. Never raises an error of the attempt: it is
        recorded in the outcome.
        """
        outcome = cast(Outcome, self.outcome)
        options = context.options
        try:
            with self.scope:
                target = Target(
                    *parse_url(await _resolve(options.url)),
                    ssl_context=await _resolve(options.ssl_context),
                )
                context.targeted(target)
                headers = _header_pairs(await _resolve(options.headers))
                await self._connect(context, target, headers)
        except Exception as exc:
            cause = _main_cause(exc)
            if isinstance(cause, trio_websocket.ConnectionRejected):
                if outcome.hint_received_at is None:
                    outcome.hint_received_at = trio.current_time()
                outcome.status_code = cause.status_code
                outcome.headers = tuple(cause.headers or ())
                outcome.body = cause.body
            if outcome.error is None:
                outcome.error = cause
        return outcome

    async def _connect(
        self, context: AttemptContext, target: Target, headers: list[tuple[bytes, bytes]]
    ) -> None:
        options = context.options
        self.deadline.deadline = trio.current_time() + options.connect_timeout
        stream: trio.abc.Stream | None = None
        with trio.CancelScope(deadline=self.deadline.deadline):
            stream = await options.open_stream(target)
        if stream is None:
            raise ConnectTimeout(
                f"no connection to {target.display} within {options.connect_timeout} s"
            )
        try:
            with self.deadline:
                async with trio.open_nursery() as nursery:
                    await self._serve(context, nursery, stream, target, headers)
                    nursery.cancel_scope.cancel()
            if self.deadline.cancelled_caught:
                if self.step is not None and self.link is not None:
                    raise self.step.timed_out(self.link, options.resume_timeout)
                raise ConnectTimeout(
                    f"websocket handshake with {target.display} took over "
                    f"{options.connect_timeout} s"
                )
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(
        self,
        context: AttemptContext,
        nursery: trio.Nursery,
        stream: trio.abc.Stream,
        target: Target,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Open the websocket on ``stream``, resume, and deliver until it closes."""
        spawner = _ReaderSpawner(nursery, trio.CancelScope())
        ws = await self._open_websocket(context, spawner, stream, target, headers)
        if ws is None:
            return  # the phase deadline expired; the caller reports it
        self.ws = ws
        outcome = cast(Outcome, self.outcome)
        closed = peer_close_event(ws)
        if closed is not None:
            nursery.start_soon(self._note_close, closed, outcome)
        try:
            await self._run_connection(context, nursery, ws, spawner.ended)
        except trio_websocket.ConnectionClosed as exc:
            if context.closing():
                # The application is closing: trio-websocket's reader must
                # live on to read the server's close reply. The client
                # cancels us when that is done.
                await trio.sleep_forever()
            reason = exc.reason
            if reason is not None:
                outcome.close_code = reason.code
                outcome.close_reason = reason.reason
                outcome.server_closed = _closed_by_server(ws)
        except Exception:
            if context.closing():  # e.g. on_connect's own error at the close: as above
                await trio.sleep_forever()
            raise

    async def _open_websocket(
        self,
        context: AttemptContext,
        spawner: _ReaderSpawner,
        stream: trio.abc.Stream,
        target: Target,
        headers: list[tuple[bytes, bytes]],
    ) -> trio_websocket.WebSocketConnection | None:
        """The websocket handshake; ``None`` if the phase deadline expired.

        Raises:
            trio_websocket.ConnectionRejected: the server refused.
            ConnectionError: the server closed before it answered.
        """
        recording = RecordingStream(stream)  # for refusals that end at close
        ws: trio_websocket.WebSocketConnection | None = None
        with spawner.handshake_scope:
            ws = await trio_websocket.wrap_client_stream(
                cast(trio.Nursery, spawner),
                cast(trio.SocketStream, recording),
                target.host_header,
                target.resource,
                subprotocols=list(context.options.subprotocols) or None,
                extra_headers=headers,
                message_queue_size=ws_queue_size(context.channels),
                receive_buffer_size=_RECEIVE_SIZE,
                max_message_size=context.options.max_message_size,
            )
        if ws is None:
            if isinstance(spawner.error, trio_websocket.ConnectionRejected):
                raise spawner.error  # a refusal trio-websocket read in full
            refusal = recording.refusal() if spawner.ended.is_set() else None
            if refusal is not None:
                # A refusal whose body ended at close, or one the reader choked
                # on after its body: trio-websocket's reader missed its end or
                # raised (see _transport); the same verdict as the others.
                raise trio_websocket.ConnectionRejected(
                    refusal.status_code, refusal.headers, refusal.body
                )
            if spawner.error is not None:
                raise spawner.error
            if spawner.ended.is_set():  # closed by the server before it answered
                cast(Outcome, self.outcome).close_code = ABNORMAL_CLOSURE
                raise ConnectionError(
                    f"{target.display} closed the connection during the opening handshake"
                )
            return None
        if spawner.error is not None:  # it failed right after the upgrade
            raise spawner.error
        spawner.opened = True
        recording.stop()
        # The recording is for the opening handshake only: from here on
        # trio-websocket reads and writes the stream itself, one call and one
        # copy fewer per read (a private attribute of trio-websocket 0.12,
        # like those _DirectSink takes the place of).
        replace_stream(ws, recording, stream)
        _replace_send_lock(ws)
        if _FAST_TEXT_READS:
            fast_text_reads(ws)
        return ws

    async def _run_connection(
        self,
        context: AttemptContext,
        nursery: trio.Nursery,
        ws: trio_websocket.WebSocketConnection,
        reader_ended: trio.Event,
    ) -> NoReturn:
        """Resume, open the gate, deliver until the connection closes.

        Raises:
            trio_websocket.ConnectionClosed: when it has closed.
        """
        options = context.options
        outcome = cast(Outcome, self.outcome)
        if context.closing():  # the application left while the websocket opened
            await trio.sleep_forever()
        link = self.link = Link(
            ws,
            context.cursor,
            context.inbox,
            outcome,
            options.max_replay,
            self.deadline,
            options.resume_timeout,
        )
        if context.steps:
            context.resuming()
            await run_steps(
                context.steps, link, self.deadline, options.resume_timeout, self._started
            )
        if context.closing():
            # The application left during the handshake: not ready; the
            # reader lives on to read the close reply (see _serve).
            await trio.sleep_forever()
        self.phase = Phase.OPEN
        self.deadline.deadline = math.inf
        outcome.ready_at = trio.current_time()  # the stability clock starts here
        context.ready(link.result)
        _replace_send_lock(ws)  # if a send held it when the websocket opened
        self.ready_ws = ws
        self.gate.set()
        if options.ping_interval is not None:
            nursery.start_soon(self._pinger, context, ws, nursery.cancel_scope)
        for pump in context.pumps:
            nursery.start_soon(pump, ws)
        channels = context.channels
        accept = live_acceptor(options.resume, context.cursor, channels if link.v2 else None)
        await deliver(ws, context.inbox, accept, reader_ended)

    @staticmethod
    async def _note_close(closed: trio.Event, outcome: Outcome) -> None:
        """Note when the server's close frame arrived: its hint counts from then."""
        await closed.wait()
        outcome.hint_received_at = trio.current_time()

    def _started(self, step: Step) -> None:
        self.phase = step.phase
        self.step = step

    async def _pinger(
        self,
        context: AttemptContext,
        ws: trio_websocket.WebSocketConnection,
        connection_scope: trio.CancelScope,
    ) -> None:
        interval = cast(float, context.options.ping_interval)
        timeout = context.options.ping_timeout
        inbox = context.inbox
        number = 0
        while True:
            await trio.sleep(interval)
            number += 1
            stalls = inbox.stalls
            with trio.move_on_after(timeout) as waited:
                try:
                    await ws.ping(number.to_bytes(8, "big"))
                except trio_websocket.ConnectionClosed:
                    return  # the reader sees the close too
            if not waited.cancelled_caught:
                continue
            if missed_pong_is_backpressure(
                held_now=inbox.stalled, held_since_ping=inbox.stalls != stalls
            ):
                continue  # a slow application, not a dead server
            outcome = cast(Outcome, self.outcome)
            outcome.error = PingTimeout(f"no pong within {timeout} s")
            outcome.close_code = ABNORMAL_CLOSURE
            connection_scope.cancel()
            return


class _ReaderSpawner:
    """Stands in for the nursery given to ``wrap_client_stream``.

    It starts trio-websocket's reader task in the real nursery, sets
    ``ended`` when that task ends, and cancels ``handshake_scope`` if it ends
    before the handshake is over (the server closed the TCP connection
    without answering).
    """

    def __init__(self, nursery: trio.Nursery, handshake_scope: trio.CancelScope) -> None:
        self._nursery = nursery
        self.handshake_scope = handshake_scope
        self.ended = trio.Event()
        #: Set once the opening handshake succeeded (the websocket is open).
        self.opened = False
        #: What the reader raised before the websocket was open: kept here, not
        #: raised into the nursery, so that the recorded refusal is read first
        #: (a refusal with more body than its Content-Length makes it raise).
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
                self.ended.set()
                self.handshake_scope.cancel()

        self._nursery.start_soon(watched)


def _replace_send_lock(ws: trio_websocket.WebSocketConnection) -> None:
    """Put a :class:`~._turn.Turn` in place of trio-websocket's send lock, if it is free.

    trio-websocket 0.12 takes ``_stream_lock``, a ``trio.StrictFIFOLock``,
    around every write (messages, pings, pongs, the close); a turn does the
    same job for less (see :mod:`._turn`); on a plain TCP connection it is a
    :class:`~._directsend.FlushingTurn`, through which the publisher may
    write a burst's frames at once (:mod:`._directsend`). Only a free lock is replaced: a
    task in the middle of a send gives back the lock it took, so swapping it
    under that task would let the next send write at the same time. Without
    that attribute, or while it is held, the lock stays as it is.
    """
    if _FAST_SEND_LOCK:
        swap_send_lock(ws, send_turn_for(ws))


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
    return peer_started_close(ws)


def _main_cause(exc: BaseException) -> BaseException:
    """The one error that explains a failed connection nursery."""
    found = leaves(exc)
    for kind in (trio_websocket.ConnectionRejected, AttemptError, OSError):
        for leaf in found:
            if isinstance(leaf, kind):
                return leaf
    return found[0]
