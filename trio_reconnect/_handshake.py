"""The steps of a connection's handshake, between the websocket opening and the gate.

A connection opens, then the protocol's resume runs (:class:`ResumeStep`,
with ``resume=True``), then the application's ``on_connect``
(:class:`OnConnectStep`), then the outbox's re-sends
(:class:`ResendStep`), then the gate opens. Each step is a small frozen
object with a :attr:`~Step.phase` and an async ``run``; the attempt
(:mod:`._attempt`) runs them in order, each under its own
``resume_timeout`` deadline. A later step (an outbox's re-sends, a channel's
subscribe) is one more object in :func:`steps_for`.

The gate must not wait for the application (which may be waiting on the
gate to send before it reads). The resume step takes one handshake's replay
(at most ``max_replay`` events) whatever ``max_queue`` says: the inbox may
hold up to ``max_queue + max_replay`` items. Only an application that left
more than that unread from earlier connections makes a handshake wait for
it (the buffer would otherwise grow by a replay per reconnect); the wait
pauses ``resume_timeout``, and after ``resume_timeout`` of it the client says
so at WARNING. ``on_connect`` is the application's own code, bounded by
``resume_timeout``.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio
import trio_websocket

from ._chandshake import ChannelHandshake
from ._channel import HandshakeOutput
from ._cursor import Cursor
from ._exceptions import ResumeProtocolError, ResumeTimeout
from ._hints import NORMAL_CLOSURE
from ._inbox import Inbox
from ._overflow import frame_size
from ._protocol import Gap, HandshakeResult, Item, ResumeHandshake, ServerEvent, Snapshot
from ._retry import Outcome
from ._tws import capable, eager_message_sends, message_queue
from ._wire import Malformed, parse_server_frame

if TYPE_CHECKING:
    from ._publishing import Publisher
    from ._subscriptions import Channels

__all__ = [
    "NOT_A_RESUME_SERVER",
    "Connection",
    "Link",
    "OnConnect",
    "OnConnectStep",
    "Phase",
    "ResendStep",
    "ResumeStep",
    "Step",
    "SubscribeStep",
    "run_steps",
    "steps_for",
]

#: What a resume that meets a server that does not speak the protocol adds to
#: its error: the two options that make the client work with any server.
logger = logging.getLogger("trio_reconnect")

NOT_A_RESUME_SERVER: Final = (
    "the server does not seem to speak the trio_reconnect resume protocol; "
    "for any other server pass resume=False (and on_connect= for its own handshake)"
)


class Phase(enum.Enum):
    """Which deadline an attempt is under."""

    #: TCP, TLS and the websocket handshake: ``connect_timeout``.
    CONNECT = "connect"
    #: The resume handshake, up to ``ready``: ``resume_timeout``.
    RESUME = "resume"
    #: The application's ``on_connect``: ``resume_timeout``.
    ON_CONNECT = "on_connect"
    #: Ready: no deadline.
    OPEN = "open"


class Connection:
    """The connection ``on_connect`` is given: valid for that connection only.

    While ``on_connect`` runs, the server's messages come to
    :meth:`get_message`, not to the application's iteration; whatever it has
    not read when it returns is delivered to the application, in order.
    Once that connection has ended (or ``on_connect`` has returned), both
    methods raise ``trio_websocket.ConnectionClosed``.
    """

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        channels: Channels | None = None,
    ) -> None:
        self._ws = ws
        self._valid = True
        self._channels = channels

    def __repr__(self) -> str:
        return f"<trio_reconnect.Connection {'open' if self._valid else 'ended'}>"

    def _check(self) -> None:
        if not self._valid:
            reason = self._ws.closed or trio_websocket.CloseReason(
                NORMAL_CLOSURE, "on_connect has returned: this connection object is no longer valid"
            )
            raise trio_websocket.ConnectionClosed(reason)

    async def send_message(self, message: str | bytes) -> None:
        """Send ``message`` on this connection now (the gate does not apply).

        Raises:
            trio_websocket.ConnectionClosed: the connection has ended.
        """
        self._check()
        await self._ws.send_message(message)

    async def get_message(self) -> str | bytes:
        """The server's next message on this connection, raw.

        Raises:
            trio_websocket.ConnectionClosed: the connection has ended.
        """
        self._check()
        while True:
            message = await self._ws.get_message()
            if self._channels is None or not _routed(self._channels, message):
                return message

    def _end(self) -> None:
        self._valid = False


#: The application's per-connection handshake (``on_connect=``).
OnConnect = Callable[[Connection], Awaitable[object]]


@attrs.define(eq=False)
class Link:
    """One connection's handshake in progress: what its steps read and fill in."""

    ws: trio_websocket.WebSocketConnection
    cursor: Cursor
    inbox: Inbox[Item]
    outcome: Outcome
    max_replay: int
    #: The phase deadline (the resume step pauses it while it waits for room).
    deadline: trio.CancelScope
    #: ``resume_timeout``.
    timeout: float
    #: The resume handshake's result (``None`` without resume).
    result: HandshakeResult | None = None
    #: Frames the server sent during the resume step.
    frames: int = 0
    #: Whether the server's ``ready`` had ``channels`` (protocol version 2).
    v2: bool = False


class Step(Protocol):
    """One step of the handshake."""

    @property
    def phase(self) -> Phase:
        """The phase the attempt is in while this step runs."""
        ...

    def timed_out(self, link: Link, timeout: float) -> ResumeTimeout:
        """The error of the attempt whose ``timeout`` expired during this step."""
        ...

    async def run(self, link: Link) -> None:
        """Run the step on ``link``.

        Raises:
            Exception: the attempt fails with it (recorded in its outcome).
        """
        ...


@attrs.frozen
class ResumeStep:
    """The resume handshake of docs/reference/protocol.md: ``resume``, the replay, ``ready``.

    With ``channels`` (always, with ``resume=True``) it is version 2's
    (:class:`~._chandshake.ChannelHandshake`): the frame carries the
    ``clientId`` and every subscription's position, and each channel's
    answer goes to its subscription.
    """

    channels: Channels | None = None

    @property
    def phase(self) -> Phase:
        return Phase.RESUME

    def timed_out(self, link: Link, timeout: float) -> ResumeTimeout:
        if link.frames:
            return ResumeTimeout(f"no ready within {timeout} s")
        link.outcome.foreign_server = True  # not one handshake frame
        return ResumeTimeout(f"no ready within {timeout} s: {NOT_A_RESUME_SERVER}")

    async def run(self, link: Link) -> None:
        """Resume, and put what the server replays into the inbox (it never waits).

        Raises:
            ResumeProtocolError: the server broke the protocol, or replayed more
                than ``max_replay`` events.
        """
        cursor = link.cursor
        hub = self.channels
        handshake: ResumeHandshake | ChannelHandshake
        if hub is None:
            handshake = ResumeHandshake(cursor.last_event_id)
        else:
            handshake = ChannelHandshake(
                cursor.last_event_id,
                hub.client_id,
                hub.resume_positions(),
                max_replay=link.max_replay,
            )
        await link.ws.send_message(handshake.frame())
        queue = message_queue(link.ws) if capable(link.ws) else None
        with eager_message_sends(link.ws):  # the answers of a resume come in one write
            await self._receive(link, handshake, queue)

    async def _receive(
        self,
        link: Link,
        handshake: ResumeHandshake | ChannelHandshake,
        queue: trio.MemoryReceiveChannel[str | bytes] | None,
    ) -> None:
        """Read the handshake's frames up to ``ready``."""
        cursor = link.cursor
        hub = self.channels
        received = 0
        while handshake.result is None:
            message = await _next_message(link.ws, queue)
            try:
                if isinstance(handshake, ResumeHandshake):
                    item = handshake.receive(message)
                    outputs: tuple[HandshakeOutput, ...] = () if item is None else (item,)
                else:
                    outputs = handshake.receive(message)
            except ResumeProtocolError as exc:
                if link.frames:
                    raise
                link.outcome.foreign_server = True
                raise ResumeProtocolError(f"{exc}: {NOT_A_RESUME_SERVER}") from None
            link.frames += 1
            for output in outputs:
                if not isinstance(output, _DEFAULT_STREAM):
                    assert hub is not None
                    hub.handshake_output(output)
                    continue
                if isinstance(output, ServerEvent):
                    received += 1
                    if received > link.max_replay:
                        raise ResumeProtocolError(
                            f"the server replayed more than max_replay={link.max_replay} events"
                        )
                if cursor.deliver(output):
                    await _deliver_replayed(link, output, frame_size(message))
        if isinstance(handshake.result, HandshakeResult):
            result = handshake.result
        else:
            result = handshake.result.default
            link.v2 = handshake.result.v2
        cursor.ready(result)
        link.result = result


#: The default stream's handshake outputs (a tuple: cheaper to test than a union).
_DEFAULT_STREAM: Final = (ServerEvent, Snapshot, Gap)


async def _next_message(
    ws: trio_websocket.WebSocketConnection,
    queue: trio.MemoryReceiveChannel[str | bytes] | None,
) -> str | bytes:
    """The handshake's next message: one already queued without a checkpoint, else wait.

    A resume of many channels is answered by as many frames in one write;
    taking the queued ones without a pass of the scheduler each is what
    ``get_message()`` would give, in the same order (``queue`` is its
    channel; ``None``: another trio-websocket, ``get_message()`` only).
    """
    if queue is not None:
        try:
            return queue.receive_nowait()
        except trio.WouldBlock:
            pass
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio_websocket.ConnectionClosed(ws.closed) from None
    return await ws.get_message()


async def _deliver_replayed(link: Link, item: Item, size: int) -> None:
    """Buffer one replayed item: at once, unless the application left too much unread.

    The inbox takes ``max_replay`` items beyond ``max_queue`` without waiting.
    Past that the wait is the application's, not the server's, so
    ``resume_timeout`` is paused during it, and a wait longer than
    ``resume_timeout`` is logged once at WARNING.
    """
    inbox = link.inbox
    if len(inbox) + 1 < inbox.max_size + link.max_replay:
        inbox.put_nowait(item, size)
        return
    inbox.put_nowait(item, size)
    link.deadline.deadline = math.inf
    try:
        with trio.move_on_after(link.timeout) as waited:
            await inbox.wait_for_room()
        if waited.cancelled_caught:
            logger.warning(
                "the resume handshake has waited %.1f s for the application to read "
                "(%d items buffered, more than max_queue + max_replay); the gate "
                "stays shut until it does",
                link.timeout,
                len(inbox),
            )
            await inbox.wait_for_room()
    finally:
        link.deadline.deadline = trio.current_time() + link.timeout


@attrs.frozen
class SubscribeStep:
    """Right after ``ready``: the ``subscribe`` frames of the subscriptions not in the resume.

    Those made while the client was offline, and those held after
    ``unavailable`` whose backoff is over (PROTOCOL.md 4.2). The gate opens
    once they are sent, not answered. On a version 1 server every
    subscription is refused ``unsupported`` here.
    """

    channels: Channels

    @property
    def phase(self) -> Phase:
        return Phase.RESUME

    def timed_out(self, link: Link, timeout: float) -> ResumeTimeout:
        return ResumeTimeout(f"the subscribe frames were not sent within {timeout} s")

    async def run(self, link: Link) -> None:
        await self.channels.after_ready(link.ws, link.v2)


def _routed(channels: Channels, message: str | bytes) -> bool:
    """Whether ``message`` is a channel frame (handed to ``channels``) on a v2 connection."""
    if not channels.v2:
        return False
    frame = parse_server_frame(message)
    if isinstance(frame, Malformed):
        channels.malformed(frame)
        return True
    if isinstance(frame, str | bytes | ServerEvent):
        return False
    channels.route(frame)
    return True


@attrs.frozen
class OnConnectStep:
    """The application's ``on_connect``, given this connection."""

    hook: OnConnect
    channels: Channels | None = None

    @property
    def phase(self) -> Phase:
        return Phase.ON_CONNECT

    def timed_out(self, link: Link, timeout: float) -> ResumeTimeout:
        return ResumeTimeout(f"on_connect did not return within {timeout} s (resume_timeout)")

    async def run(self, link: Link) -> None:
        """Await the hook; what it raises fails the attempt and goes to ``should_reconnect``."""
        connection = Connection(link.ws, self.channels)
        try:
            await self.hook(connection)
        except trio_websocket.ConnectionClosed:
            raise  # the connection's close explains the failure
        except Exception:
            link.outcome.on_connect_failed = True
            raise
        finally:
            connection._end()


@attrs.frozen
class ResendStep:
    """After ``on_connect``: the outbox's (re-)sends, before the gate opens (PROTOCOL.md 4.5).

    Every publish without an answer, same msgIds and order; on a version 1
    server they fail with ``unsupported`` here.
    """

    publisher: Publisher

    @property
    def phase(self) -> Phase:
        return Phase.ON_CONNECT

    def timed_out(self, link: Link, timeout: float) -> ResumeTimeout:
        return ResumeTimeout(f"the pending publishes were not sent within {timeout} s")

    async def run(self, link: Link) -> None:
        await self.publisher.after_ready(link.ws, link.v2)


def steps_for(
    *,
    resume: bool,
    on_connect: OnConnect | None,
    channels: Channels | None = None,
    publisher: Publisher | None = None,
) -> tuple[Step, ...]:
    """The handshake's steps, in order, for a client's options.

    With ``channels`` (``resume=True``): the version 2 resume, then the
    subscribes of the subscriptions it did not carry, then ``on_connect``
    (whose reads skip the channels' frames), then, with ``publisher``, the
    outbox's re-sends.
    """
    steps: list[Step] = []
    if resume:
        steps.append(ResumeStep(channels))
        if channels is not None:
            steps.append(SubscribeStep(channels))
    if on_connect is not None:
        steps.append(OnConnectStep(on_connect, channels if resume else None))
    if resume and publisher is not None:
        steps.append(ResendStep(publisher))
    return tuple(steps)


async def run_steps(
    steps: tuple[Step, ...],
    link: Link,
    deadline: trio.CancelScope,
    seconds: float,
    started: Callable[[Step], None],
) -> None:
    """Run ``steps`` in order, each with ``seconds`` (``resume_timeout``) on ``deadline``."""
    for step in steps:
        started(step)
        deadline.deadline = trio.current_time() + seconds
        await step.run(link)
