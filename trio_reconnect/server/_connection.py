"""One client connection on the server: its queue, its loops, its close protocol.

A :class:`ConnectedClient` knows nothing of the server. What it needs from
the node it gets through a small :class:`ConnectionHooks` interface: where a
message goes, how a retry hint reads, and what to do when it is too slow,
gone silent or closing. The handshake (:mod:`trio_reconnect.server._resume`)
drives it through :meth:`ConnectedClient.first_frame`,
:meth:`ConnectedClient.send_frame` and :meth:`ConnectedClient.set_ready`.

The close protocol
------------------

A close is requested synchronously (:meth:`ConnectedClient.close`) from
anywhere: the server's drain, the fan-out finding the queue full, a failed
handler, the ping loop. It closes the queue, tells the hooks (the fan-out
stops feeding it) and cancels the connection's scope, so that every loop of
the connection ends; the close frame is then sent once, on the way out.
Cancelling a send midway would leave half a frame on the wire, and the close
frame after it would be garbage to the client, so a close requested during
a send lets that send finish (within ``close_timeout``). A client found
half-open is aborted instead: no close frame, since nobody would read it.

A hinted close may carry a return time (:class:`~trio_reconnect.server._spread.ReturnAt`)
instead of a reason: its ``retryAfter`` is then worked out when the close
frame is written (after any bytes a direct write left behind), so that the
client comes back at the planned time however long the frame waited.

The persistent filter
---------------------

The fan-out feeds every event after the node's tail position into the
queue, from the moment the handshake registered the client. The handshake
then gives the client everything through some id (``covered``); every
queued event at or below it is dropped, for as long as the connection lives
(the rule: :func:`~trio_reconnect.server._verdicts.uncovered`). Such events
take no room in the queue, so a fan-out far behind the handshake does not
make a resumed client look too slow.

Batched writes
--------------

When several frames are queued, the write loop takes them all (at most
``_WRITE_BATCH``) and writes them in ONE ``send_all``
(:func:`trio_reconnect._tws.write_batch`): one pass of the scheduler per
batch instead of one per frame. :func:`_can_write_batched` probes
trio-websocket's internals once per connection; without them the loop sends
one frame at a time. A batch is one send for the close protocol: a close
requested during it takes effect after it (within ``close_timeout``), and a
batch cancelled midway counts as half a frame.

The write loop
--------------

The write loop is a task of the connection only while it has work: it is
started when a frame is queued (or a direct write left bytes behind, below)
after ``ready``, and it leaves once the queue is empty. An idle connection
then holds two tasks, as a plain trio-websocket handler does: its own (the
read loop) and trio-websocket's reader (and the ping loop, with pings).
Frames queued during the handshake start it once the handshake is over.

Direct writes
-------------

A client with nothing queued and nothing being written does not need its
write loop at all: :meth:`ConnectedClient.feed` has the fan-out write the
events to its socket in the same step (:mod:`trio_reconnect.server._direct`,
plain TCP only). The write loop then only runs for a client that is behind,
and to write what a partial direct write left (it is woken for that).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Final, Protocol

import attrs
import trio
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection

from .._hints import MAX_CLOSE_REASON_BYTES
from .._protocol import HandshakeOutcome
from .._tws import capable, send_lock, write_batch
from ._clientbase import (
    CLOSE_ABNORMAL,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    ClientState,
    ClientStatistics,
    ConnectionSettings,
)
from ._direct import DirectWriter
from ._outbox import Outbox
from ._pings import ping_loop
from ._spread import ReturnAt
from ._verdicts import may_write_directly, uncovered

__all__ = ["ConnectedClient", "ConnectionHooks"]

logger = logging.getLogger("trio_reconnect.server")


#: Most queued frames the write loop takes and writes in one ``send_all``.
_WRITE_BATCH: Final = 64

# Whether the write loop may write several queued frames at once through
# trio-websocket's internals (module comment: Batched writes). Off (tests),
# or on a trio-websocket without them, it sends one frame at a time.
_BATCHED_WRITES = True


class ConnectionHooks(Protocol):
    """What a connection needs from its node."""

    def hint_reason(self, reason: str) -> str:
        """A close reason carrying a one-client retry hint."""
        ...

    async def received(self, client: ConnectedClient, message: str | bytes) -> None:
        """Hand over a message the ready client sent (may close ``client``)."""
        ...

    def too_slow(self, client: ConnectedClient) -> None:
        """The client's queue is full; it is closed after this returns."""
        ...

    def half_open(self, client: ConnectedClient) -> None:
        """The client did not answer a ping in time; it is aborted after this returns."""
        ...

    def leaving(self, client: ConnectedClient) -> None:
        """The client started closing: feed it no more events."""
        ...

    def gone(self, client: ConnectedClient) -> None:
        """The connection is over."""
        ...


@attrs.define(eq=False)
class ConnectedClient:
    """One client connection on a :class:`~trio_reconnect.server.ReconnectServer`.

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
        principal: What ``authenticate`` returned for it (``None``: anonymous).
    """

    id: int
    remote: str
    path: str
    connected_at: float
    _ws: WebSocketConnection = attrs.field(repr=False)
    _settings: ConnectionSettings = attrs.field(repr=False)
    _hooks: ConnectionHooks = attrs.field(repr=False)
    state: ClientState = ClientState.HANDSHAKING
    last_event_id: str | None = None
    outcome: HandshakeOutcome | None = None
    principal: Any = None
    #: The close code the client sent first (``None``: the server closed first, or no close frame).
    peer_close_code: int | None = attrs.field(init=False, default=None)
    _outbox: Outbox = attrs.field(init=False, repr=False)
    #: Writes live events straight to the socket while the client is idle (``None``: never).
    _direct: DirectWriter | None = attrs.field(init=False, default=None, repr=False)
    #: The persistent filter: queued events at or below it are never sent.
    _covered: int | None = attrs.field(init=False, default=None, repr=False)
    _replayed: int = attrs.field(init=False, default=0, repr=False)
    _events_sent: int = attrs.field(init=False, default=0, repr=False)
    _messages_sent: int = attrs.field(init=False, default=0, repr=False)
    _messages_received: int = attrs.field(init=False, default=0, repr=False)
    _close_code: int | None = attrs.field(init=False, default=None, repr=False)
    _close_reason: str | None = attrs.field(init=False, default=None, repr=False)
    #: A hinted close's return time (its reason is written when the close frame is).
    _close_return: ReturnAt | None = attrs.field(init=False, default=None, repr=False)
    _close_requested: bool = attrs.field(init=False, default=False, repr=False)
    _sending: bool = attrs.field(init=False, default=False, repr=False)
    #: No close frame on the way out: half a frame may be on the wire, or the peer is gone.
    _interrupted: bool = attrs.field(init=False, default=False, repr=False)
    #: Whether the read loop waits on the application now, and since when it does not.
    _in_handler: bool = attrs.field(init=False, default=False, repr=False)
    _handler_left_at: float = attrs.field(init=False, default=-math.inf, repr=False)
    _scope: trio.CancelScope = attrs.field(init=False, factory=trio.CancelScope, repr=False)
    #: The wait for the peer's answer to our close frame (``abort`` ends it).
    _closing: trio.CancelScope | None = attrs.field(init=False, default=None, repr=False)
    _done: trio.Event = attrs.field(init=False, factory=trio.Event, repr=False)
    #: Where the write loop is started, from ``ready`` on (module comment: The write loop).
    _loops: trio.Nursery | None = attrs.field(init=False, default=None, repr=False)
    #: Whether the write loop runs now.
    _writing: bool = attrs.field(init=False, default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._outbox = Outbox(self._settings.queue_size, self._start_writing)
        self._direct = DirectWriter.install(self._ws, self._outbox.wake)

    # -- the application's side ---------------------------------------------

    async def send(self, message: str | bytes) -> None:
        """Send an application message to this client.

        The message is queued behind the live events already queued, and goes
        out after ``ready``. Waits while the client's queue is full (unlike
        :meth:`~trio_reconnect.server.ReconnectServer.publish`, which never
        waits for one client).

        Raises:
            trio_websocket.ConnectionClosed: if the client is closing or closed.
            TypeError: if ``message`` is neither ``str`` nor ``bytes``.
        """
        await self.send_many((message,))

    async def send_many(self, messages: Sequence[str | bytes]) -> None:
        """Send several messages in order, as :meth:`send` does, queued in one step (one write)."""
        for message in messages:
            if not isinstance(message, str | bytes):
                raise TypeError(f"message must be str or bytes, got {type(message).__name__}")
        if not await self._outbox.put_many([(None, message) for message in messages]):
            raise ConnectionClosed(self._closed_reason())

    async def aclose(self, code: int = CLOSE_NORMAL, reason: str | None = None) -> None:
        """Close the connection and wait until it is closed.

        Args:
            code: The close code.
            reason: The close reason, at most 123 bytes of UTF-8.

        Raises:
            ValueError: if ``reason`` is too long.
        """
        if reason is not None and len(reason.encode("utf-8")) > MAX_CLOSE_REASON_BYTES:
            raise ValueError(f"close reason is over {MAX_CLOSE_REASON_BYTES} bytes")
        self.close(code, reason)
        await self._done.wait()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self._done.wait()

    def statistics(self) -> ClientStatistics:
        """A frozen snapshot of this client."""
        direct = self._direct
        return ClientStatistics(
            id=self.id,
            remote=self.remote,
            path=self.path,
            state=self.state,
            connected_at=self.connected_at,
            last_event_id=self.last_event_id,
            outcome=self.outcome,
            replayed=self._replayed,
            queued=len(self._outbox) + (direct.events_left if direct is not None else 0),
            events_sent=self._events_sent + (direct.events_written if direct is not None else 0),
            messages_sent=self._messages_sent,
            messages_received=self._messages_received,
            close_code=self._close_code,
            close_reason=self._reason(),
        )

    # -- for the node: feeding and closing ----------------------------------

    @property
    def closing(self) -> bool:
        """Whether a close was requested (or the peer closed)."""
        return self._close_requested

    def feed(self, frames: Sequence[tuple[int | None, str]]) -> None:
        """Queue live events (from the fan-out, in log order), without waiting.

        A client whose queue cannot take them all is too slow: the hooks are
        told, and it is closed. A client with nothing queued or being written
        gets them written to its socket at once (:mod:`trio_reconnect.server._direct`).
        """
        if self._close_requested:
            return
        # A fan-out behind the handshake: what it covered takes no room.
        frames = uncovered(frames, self._covered)
        if not frames:
            return
        direct = self._direct
        if (
            direct is not None
            and may_write_directly(
                ready=self.state is ClientState.READY,
                closing=self._close_requested,
                sending=self._sending,
                queue_idle=self._outbox.idle(),
            )
            and direct.write([frames[0][1]] if len(frames) == 1 else [t for _, t in frames])
        ):
            return
        if not self._outbox.put_many_nowait(frames):
            self._hooks.too_slow(self)

    def close(self, code: int | None, reason: str | ReturnAt | None) -> None:
        """Start closing (synchronously). ``code=None``: already closed by the peer.

        ``reason`` may be a return time: the close reason then says how long
        is left until it when the close frame is written.
        """
        if self._close_requested:
            return
        self._close_requested = True
        self._close_code = code
        if isinstance(reason, ReturnAt):
            self._close_return = reason
        else:
            self._close_reason = reason
        if self.state is not ClientState.CLOSED:
            self.state = ClientState.CLOSING
        self._hooks.leaving(self)
        self._outbox.close()
        if self._sending:
            # Let the send in progress finish (module comment), within close_timeout.
            self._scope.deadline = min(
                self._scope.deadline, trio.current_time() + self._settings.close_timeout
            )
        else:
            self._scope.cancel()

    def abort(self) -> None:
        """Drop the connection now: no close frame, or no more waiting for the answer to one."""
        self.close(CLOSE_ABNORMAL, None)
        self._interrupted = True
        self._scope.cancel()
        if self._closing is not None:
            self._closing.cancel()

    # -- for the handshake ---------------------------------------------------

    async def first_frame(self) -> str | bytes | None:
        """The client's first frame, or ``None`` if none came within the handshake timeout."""
        with trio.move_on_after(self._settings.handshake_timeout):
            return await self._ws.get_message()
        return None

    async def send_frame(self, message: str | bytes | list[str]) -> None:
        """Send one frame, or a non-empty list in one write; a close requested meanwhile waits.

        A list is a handshake's answer, written once: its frames stay out of
        the fan-out's frame cache (:func:`~trio_reconnect._tws.encode_messages`).
        """
        if isinstance(message, list) and not _can_write_batched(self._ws):
            for frame in message:
                await self.send_frame(frame)
            return
        first = message[0] if isinstance(message, list) else message
        batch = message if isinstance(message, list) else None
        if await self._write(first, batch, cache=False):
            await self._after_write()

    async def _write(
        self, message: str | bytes, batch: Sequence[str | bytes] | None, *, cache: bool = True
    ) -> bool:
        """Send ``message``, or the frames of ``batch`` in one write; ``False`` if closing."""
        if self._close_requested:
            return False
        self._sending = True
        try:
            if batch is None:
                await self._ws.send_message(message)
            else:
                await write_batch(self._ws, batch, cache=cache)
        except trio.Cancelled:
            self._interrupted = True  # half a frame may have gone out
            raise
        finally:
            self._sending = False
        return True

    async def _flush(self) -> None:
        """Write what a direct write left behind (the send lock does it), as a send."""
        if self._close_requested:
            return
        self._sending = True
        try:
            async with send_lock(self._ws):
                pass
        finally:
            self._sending = False
        await self._after_write()

    async def _after_write(self) -> None:
        """A close requested during a write takes effect now."""
        if self._close_requested:
            self._scope.cancel()
            await trio.lowlevel.checkpoint()

    async def send_replayed(self, frame: str) -> None:
        """Send one event from the log during the handshake."""
        await self.send_frame(frame)
        self._replayed += 1

    def set_ready(self, outcome: HandshakeOutcome, covered: int | None) -> None:
        """``ready`` was sent: from now on, queued events at or below ``covered`` are dropped."""
        self._covered = covered
        if covered is not None:
            self._outbox.drop_events_through(covered)
        self.outcome = outcome
        if not self._close_requested:
            self.state = ClientState.READY

    # -- the connection's lifetime ------------------------------------------

    async def run(self, handshake: _Handshake) -> None:
        """Run the handshake, then the read, write and ping loops; close on the way out."""
        ws = self._ws
        try:
            with self._scope:
                if await handshake(self):
                    async with trio.open_nursery() as nursery:
                        self._loops = nursery
                        try:
                            self._start_writing()  # what was queued meanwhile
                            if self._settings.ping_interval is not None:
                                nursery.start_soon(self._ping_loop, self._settings.ping_interval)
                            await self._read_loop()
                            nursery.cancel_scope.cancel()
                        finally:
                            self._loops = None
        except ConnectionClosed as exc:
            self._peer_closed(exc)
        except Exception:
            logger.exception("client %d failed", self.id)
            self.close(CLOSE_INTERNAL_ERROR, self._hooks.hint_reason("internal error"))
        finally:
            try:
                if not self._close_requested:
                    self.close(CLOSE_NORMAL, None)
                if self._close_code is not None and not self._interrupted:
                    with trio.move_on_after(self._settings.close_timeout) as self._closing:
                        await self._send_close(ws, self._close_code)
            finally:
                self.state = ClientState.CLOSED
                self._hooks.gone(self)
                self._done.set()

    async def _send_close(self, ws: WebSocketConnection, code: int) -> None:
        """Send the close frame, with a return time's reason worked out now (the module comment)."""
        if self._close_return is not None:
            async with send_lock(ws):  # what a direct write left goes first
                pass
            self._close_reason = self._close_return.close_reason(trio.current_time())
        await ws.aclose(code, self._close_reason)

    def _reason(self) -> str | None:
        """The close reason sent, or the one a return time not yet sent would have now."""
        pending = self._close_return
        unsent = self._close_reason is None and self.state is not ClientState.CLOSED
        if pending is not None and unsent:
            return pending.close_reason(trio.current_time())
        return self._close_reason

    def _peer_closed(self, exc: ConnectionClosed) -> None:
        if self._close_requested:
            return
        self.peer_close_code = None if exc.reason is None else exc.reason.code
        self.close(None, None)
        if exc.reason is not None:
            self._close_code = exc.reason.code
            self._close_reason = exc.reason.reason

    def _closed_reason(self) -> CloseReason | None:
        return None if self._close_code is None else CloseReason(self._close_code, self._reason())

    def _start_writing(self) -> None:
        """Start the write loop if it has work and is not running (module comment)."""
        if self._loops is not None and not self._writing and self._outbox.wanted():
            self._writing = True
            self._loops.start_soon(self._write_loop)

    async def _write_loop(self) -> None:
        outbox = self._outbox
        limit = _WRITE_BATCH if _can_write_batched(self._ws) else 1
        try:
            # It leaves once there is nothing to take, in the same step as it
            # looks (no checkpoint between): a frame queued later starts it again.
            while outbox.wanted():
                try:
                    taken = await outbox.get_many(limit)
                except trio.EndOfChannel:
                    return
                if not taken:
                    # Woken by a direct write that left bytes behind: taking
                    # the send lock writes them.
                    await self._flush()
                    continue
                frames = uncovered(taken, self._covered)  # the handshake sent these
                if not frames:
                    outbox.written()
                    continue
                if len(frames) == 1:
                    written = await self._write(frames[0][1], None)
                else:
                    written = await self._write(frames[0][1], [m for _, m in frames])
                outbox.written()
                if written:
                    events = sum(1 for seq, _ in frames if seq is not None)
                    self._events_sent += events
                    self._messages_sent += len(frames) - events
                await self._after_write()
        except ConnectionClosed as exc:
            self._peer_closed(exc)
        finally:
            self._writing = False

    async def _read_loop(self) -> None:
        ws = self._ws
        try:
            while not self._close_requested:
                message = await ws.get_message()
                self._messages_received += 1
                self._in_handler = True
                try:
                    await self._hooks.received(self, message)
                finally:
                    self._in_handler = False
                    self._handler_left_at = trio.current_time()
        except ConnectionClosed as exc:
            self._peer_closed(exc)

    async def _ping_loop(self, interval: float) -> None:
        await ping_loop(
            self._ws,
            interval,
            self._settings.ping_timeout,
            lambda: (self._in_handler, self._handler_left_at),
            self._half_open,
        )

    def _half_open(self) -> None:
        self._hooks.half_open(self)
        self.abort()


def _can_write_batched(ws: WebSocketConnection) -> bool:
    """Whether the write loop may write ``ws``'s queued frames in one ``send_all``."""
    return _BATCHED_WRITES and capable(ws)


class _Handshake(Protocol):
    async def __call__(self, client: ConnectedClient, /) -> bool: ...
