"""Channels on the client: the subscriptions of one client, across its connections.

The pure layer decides (:mod:`._channel`: :class:`~._channel.ChannelState`,
one subscription's phase, cursor and member list; :mod:`._wire`: the frames);
this module applies it with trio. One :class:`Channels` per client holds its
:class:`Subscription` objects; the handshake (:mod:`._handshake`) asks it for
the resume frame's map and hands it each channel's answer; a ready version 2
connection hands it every channel frame (:meth:`Channels.route`, synchronous:
the connection's reader never waits for a subscription); a task per ready
connection (:meth:`Channels.pump`) sends the ``subscribe`` frames that are
due.

The rules, stated once:

* **One bound per subscription.** Each subscription buffers at most
  ``max_queue`` live events for its reader. A live event that finds the
  buffer full is dropped unread, and the subscription falls *behind*: it
  takes nothing more of its channel (its cursor stays at the last buffered
  event). Once its reader has drained the buffer to half the bound
  (:data:`RESUBSCRIBE_AT`), the client sends ``subscribe`` from that last
  buffered id, and the server replays what was dropped (or answers with a
  snapshot or a gap when its log no longer holds it: never a silent loss).
  A slow reader therefore costs its own channel a round trip, and never
  stalls the connection or another channel. The items of an answer (a
  replay, a snapshot, a gap) and presence changes are always buffered: an
  answer is bounded by the server's ``max_replay`` (and the client's
  ``max_replay``), and member changes keep :attr:`Subscription.members` true.
* **Refusals.** A final code (``forbidden``, ``invalid``, ``limit``; and
  ``unsupported``, a version 1 server) ends the subscription: entering
  ``subscribe`` raises :class:`~trio_reconnect.SubscriptionRefused`, or, at a
  later reconnect, its iteration ends with it after the items buffered
  before. ``unavailable`` answering the application's own ``subscribe`` (the
  subscription was never active) is raised to it; at a later reconnect the
  subscription stays and is asked again by a ``subscribe`` after its backoff
  (the client's backoff policy, counted per channel) or in the next resume
  frame, whichever comes first.
* **Out of order.** A ``subscribed`` (or ``snapshot``, member list,
  ``refused``) for an active subscription is the server starting it again
  (the lead's decision 2): its dedupe window stays, a ``lost`` answer is a
  :class:`~trio_reconnect.Gap`. Any other frame that breaks a channel's order
  is logged at WARNING and the subscription asks again from its last
  delivered event. A malformed frame is logged (WARNING once per connection,
  then DEBUG) and dropped. A frame for a channel the client has no
  subscription to is dropped (DEBUG).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import random as _random
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
import trio
import trio_websocket

from ._backoff import Backoff, RetryPolicy
from ._channel import (
    UNSUPPORTED_REASON,
    ChannelOutput,
    ChannelReady,
    ChannelState,
    HandshakeOutput,
    Phase,
)
from ._exceptions import ClientClosedError, ResumeProtocolError, SubscriptionRefused
from ._protocol import Gap, ServerEvent, Snapshot
from ._publishing import Publisher
from ._wire import (
    Ack,
    ChannelItem,
    Join,
    Leave,
    Malformed,
    Nack,
    Presence,
    Refused,
    RefusedCode,
    ServerFrame,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    channel_problem,
)

__all__ = ["RESUBSCRIBE_AT", "Channels", "ChannelItemType", "Subscription"]

logger = logging.getLogger("trio_reconnect")

#: What ``async for item in sub`` yields.
ChannelItemType = ServerEvent | Snapshot | Gap | Join | Leave

#: A subscription that fell behind asks again once its buffer holds at most
#: this fraction of its bound.
RESUBSCRIBE_AT: Final = 0.5

#: The WARNING for a version 1 server (once per connection).
V1_SERVER_WARNING: Final = (
    "%s: the server speaks protocol version 1 (its ready has no channels): "
    "every subscription is refused with code unsupported"
)


@attrs.define(eq=False)
class Subscription:
    """One channel the application subscribed to: what ``ws.subscribe()`` yields.

    ``async for item in sub`` yields the channel's :class:`~trio_reconnect.ServerEvent`,
    :class:`~trio_reconnect.Snapshot` and :class:`~trio_reconnect.Gap` items, each
    once and in order across reconnects, and its presence changes as
    :class:`~trio_reconnect.Join` and :class:`~trio_reconnect.Leave` items. The
    iteration ends when the application leaves the ``async with`` block or
    the client is closed, and raises :class:`~trio_reconnect.SubscriptionRefused`
    when the server refuses the subscription at a later reconnect (or ends it
    with a code), and the client's own error when the client gave up.

    Do not create one directly.
    """

    _state: ChannelState
    _hub: Channels
    _bound: int
    _buffer: collections.deque[ChannelItemType] = attrs.field(init=False, factory=collections.deque)
    _settled: trio.Event = attrs.field(init=False, factory=trio.Event)
    _active_once: bool = attrs.field(init=False, default=False)
    _end: BaseException | None = attrs.field(init=False, default=None)
    _waiter: trio.Event | None = attrs.field(init=False, default=None)
    #: Fell behind: drops its channel's frames until its reader drains the buffer.
    behind: bool = attrs.field(init=False, default=False)
    #: ``unavailable`` answers in a row (the per-channel backoff's count).
    retries: int = attrs.field(init=False, default=0)
    #: When to ask again after ``unavailable`` (``None``: at once).
    retry_at: float | None = attrs.field(init=False, default=None)
    _previous_delay: float | None = attrs.field(init=False, default=None)

    def __repr__(self) -> str:
        return f"<trio_reconnect.Subscription {self.channel!r} {self._state.phase.value}>"

    @property
    def channel(self) -> str:
        """The channel's name."""
        return self._state.channel

    @property
    def last_event_id(self) -> str | None:
        """The id of the newest item of the channel the client has taken (buffered or read).

        The id the subscription resumes from; ``None`` before the first ``subscribed``
        of a subscription made without ``last_event_id``.
        """
        return self._state.cursor.delivered

    @property
    def members(self) -> Mapping[str, dict[str, Any]]:
        """The channel's members, ``clientId`` -> info (read-only, kept true across reconnects)."""
        return self._state.members.view()

    @property
    def buffered(self) -> int:
        """Items waiting for the reader."""
        return len(self._buffer)

    async def publish(self, data: Any) -> str:
        """``await ws.publish(sub.channel, data)``: see :meth:`ReconnectingWebSocket.publish`."""
        return await self._hub.publisher.publish(self.channel, data)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ChannelItemType:
        """The next item of the channel.

        Raises:
            SubscriptionRefused: the server refused the subscription at a reconnect.
            ReconnectFailed: the client gave up.
        """
        while not self._buffer:
            if self._end is not None:
                if isinstance(self._end, ClientClosedError | StopAsyncIteration):
                    raise StopAsyncIteration
                raise self._end
            self._waiter = waiter = trio.Event()
            await waiter.wait()
        item = self._buffer.popleft()
        if self.behind and len(self._buffer) <= self._bound * RESUBSCRIBE_AT:
            self.behind = False
            self._hub.wake()
        await trio.lowlevel.checkpoint()
        return item

    # ----------------------------------------------------------- the hub's side

    def _wake_reader(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def _push(self, item: ChannelItemType) -> None:
        self._buffer.append(item)
        self._wake_reader()

    def _finish(self, end: BaseException, *, discard: bool = False) -> None:
        """The subscription is over: ``end`` is raised once the buffer is read."""
        if self._end is None:
            self._end = end
        if discard:
            self._buffer.clear()
        self._settled.set()
        self._wake_reader()

    async def _wait_settled(self) -> None:
        await self._settled.wait()
        if not self._active_once:
            assert self._end is not None
            raise self._end


@attrs.define(eq=False)
class Channels:
    """The subscriptions of one client (see the module's rules).

    Args:
        client_id: The client's ``clientId``.
        max_queue: Each subscription's bound on buffered live events.
        dedupe_window: Each subscription's dedupe window.
        max_replay: Most replayed events accepted in one channel's answer.
        backoff: The policy that paces the asks after ``unavailable``.
        random: The randomness of that policy's jitter.
        display: The server, for log lines.
    """

    client_id: str
    max_queue: int
    dedupe_window: int
    max_replay: int
    backoff: RetryPolicy | None = None
    random: _random.Random = attrs.field(factory=_random.Random)
    display: str = ""
    publisher: Publisher = attrs.field(factory=Publisher)  # gets the ack and nack frames
    subs: dict[str, Subscription] = attrs.field(init=False, factory=dict)
    #: The ready connection, once its handshake has ended (``None`` otherwise).
    ws: trio_websocket.WebSocketConnection | None = attrs.field(init=False, default=None)
    #: Whether that connection's server speaks version 2.
    v2: bool = attrs.field(init=False, default=False)
    _wake: trio.Event = attrs.field(init=False, factory=trio.Event)
    _leaving: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    _orphans: set[str] = attrs.field(init=False, factory=set)
    _warned_malformed: bool = attrs.field(init=False, default=False)
    _warned_v1: bool = attrs.field(init=False, default=False)
    _ended: BaseException | None = attrs.field(init=False, default=None)

    # ------------------------------------------------------------ application

    def add(self, channel: str, last_event_id: str | None, history: int | None) -> Subscription:
        """A new subscription (sent in the next handshake, or by the pump now).

        Raises:
            ValueError: a bad channel name or ``history``, or the channel is
                already subscribed by this client.
        """
        if self._ended is not None:
            raise self._ended
        problem = channel_problem(channel)
        if problem is not None:
            raise ValueError(problem)
        if channel in self.subs:
            raise ValueError(f"channel {channel!r} is already subscribed by this client")
        state = ChannelState(channel, self.dedupe_window, last_event_id, history, self.max_replay)
        sub = Subscription(state, self, self.max_queue)
        self.subs[channel] = sub
        self.wake()
        return sub

    async def leave(self, sub: Subscription, close_timeout: float) -> None:
        """The application left ``sub``'s block: ``unsubscribe`` (bounded), then forget it."""
        if self.subs.get(sub.channel) is sub:
            del self.subs[sub.channel]
        state = sub._state
        held = state.phase is not Phase.CLOSED
        state.unsubscribe()
        sub._finish(StopAsyncIteration(), discard=True)
        ws = self.ws
        if ws is None or not self.v2 or not held:
            return
        self._leaving[sub.channel] += 1
        with (
            trio.CancelScope(shield=True, deadline=trio.current_time() + close_timeout),
            contextlib.suppress(trio_websocket.ConnectionClosed),
        ):
            await ws.send_message(Unsubscribe(sub.channel).encode())

    # -------------------------------------------------------------- handshake

    def resume_positions(self) -> dict[str, str]:
        """The resume frame's map; each subscription in it now waits for its answer there."""
        positions: dict[str, str] = {}
        for channel, sub in self.subs.items():
            state = sub._state
            position = state.position
            if state.phase is Phase.PENDING and position is not None:
                state.resumed()
                sub.behind = False
                positions[channel] = position
        return positions

    def handshake_output(self, output: HandshakeOutput) -> None:
        """One channel output of the resume handshake (before ``ready``)."""
        if isinstance(output, ChannelReady):  # one per channel of a resume: the frequent one
            channel: str | None = output.channel
        elif isinstance(output, ServerEvent | Snapshot | Gap):
            return  # the default stream's: not for here
        else:
            channel = output.channel
        if channel is None:
            return
        sub = self.subs.get(channel)
        if sub is None:  # left during the handshake
            if isinstance(output, ChannelReady):
                self._orphans.add(channel)
            return
        self._take(sub, sub._state.apply(output))

    async def after_ready(self, ws: trio_websocket.WebSocketConnection, v2: bool) -> None:
        """The handshake's ``ready`` came: send the ``subscribe`` frames that are due."""
        self.ws = ws
        self.v2 = v2
        for channel in sorted(self._orphans):
            self._leaving[channel] += 1
            await ws.send_message(Unsubscribe(channel).encode())
        self._orphans.clear()
        await self._send_due(ws)

    # --------------------------------------------------------------- live

    def route(self, frame: ServerFrame) -> None:
        """One channel frame received after ``ready`` (never waits)."""
        if isinstance(frame, Ack | Nack):
            self.publisher.answer(frame)  # the outbox's
            return
        channel = frame.channel
        if channel is None:
            logger.warning("%s: a refused frame without a channel: %s", self.display, frame)
            return
        if isinstance(frame, Unsubscribed) and frame.code is None and self._leaving[channel]:
            self._leaving[channel] -= 1
            return
        sub = self.subs.get(channel)
        if sub is None:
            logger.debug(
                "%s: a frame of channel %r, not subscribed: dropped", self.display, channel
            )
            return
        state = sub._state
        if state.phase is Phase.ACTIVE:
            if (
                isinstance(frame, ChannelItem)
                and isinstance(frame.item, ServerEvent)
                and len(sub._buffer) >= sub._bound
            ):
                self._fall_behind(sub)
                return
            if isinstance(frame, Subscribed | Presence | Refused) or (
                isinstance(frame, ChannelItem) and isinstance(frame.item, Snapshot)
            ):
                state.restart()  # the server starts the channel again (decision 2)
        try:
            outputs = state.receive(frame)
        except ResumeProtocolError as exc:
            logger.warning("%s: %s; asking for channel %r again", self.display, exc, channel)
            state.connection_lost()
            self.wake()
            return
        self._take(sub, outputs)

    def malformed(self, frame: Malformed) -> None:
        """A malformed version 2 frame: logged and dropped."""
        if self._warned_malformed:
            logger.debug("%s: malformed frame dropped: %s", self.display, frame.reason)
            return
        self._warned_malformed = True
        logger.warning(
            "%s: malformed frame dropped (later ones at DEBUG): %s", self.display, frame.reason
        )

    def _fall_behind(self, sub: Subscription) -> None:
        unread = (self.display, sub.channel, len(sub._buffer))
        logger.info("%s: channel %r: %d items unread, live events dropped, reader behind", *unread)
        sub.behind = True
        sub._state.connection_lost()  # takes nothing more until asked again

    def _take(self, sub: Subscription, outputs: Iterable[ChannelOutput]) -> None:
        for output in outputs:
            if isinstance(output, ChannelReady):
                sub._active_once = True
                sub.retries = 0
                sub.retry_at = None
                sub._previous_delay = None
                sub._settled.set()
            elif isinstance(output, Refused):
                self._refused(sub, output)
            elif isinstance(output, Unsubscribed):
                self._forget(sub)
                if output.code is None:
                    sub._finish(StopAsyncIteration())
                else:
                    sub._finish(SubscriptionRefused(sub.channel, output.code, output.reason))
            else:
                sub._push(output)

    def _refused(self, sub: Subscription, refused: Refused) -> None:
        code = refused.code
        if code is RefusedCode.UNSUPPORTED and not self._warned_v1:
            self._warned_v1 = True
            logger.warning(V1_SERVER_WARNING, self.display)
        if code.final or not sub._active_once:
            self._forget(sub)
            sub._state.unsubscribe()  # closed (pending or closed already)
            sub._finish(SubscriptionRefused(sub.channel, code, refused.reason))
            return
        sub.retries += 1
        policy = self.backoff if self.backoff is not None else Backoff()
        delay = policy.delay(sub.retries, self.random, sub._previous_delay)
        sub._previous_delay = delay
        sub.retry_at = trio.current_time() + delay
        logger.info(
            "%s: channel %r unavailable; asking again in %.3f s", self.display, sub.channel, delay
        )
        self.wake()

    def _forget(self, sub: Subscription) -> None:
        if self.subs.get(sub.channel) is sub:
            del self.subs[sub.channel]

    # ------------------------------------------------------------------ pump

    def wake(self) -> None:
        """Something may be due: a new subscription, a drained reader."""
        self._wake.set()

    async def pump(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Send what is due on the ready connection ``ws`` until it closes."""
        try:
            while True:
                self._wake = trio.Event()
                next_at = await self._send_due(ws)
                with trio.move_on_at(next_at):
                    await self._wake.wait()
        except trio_websocket.ConnectionClosed:
            return  # the reader sees the close too

    async def _send_due(self, ws: trio_websocket.WebSocketConnection) -> float:
        """Send every due ``subscribe``; the time the next one is due (inf: none)."""
        if not self.v2:
            self._refuse_v1()
            return math.inf
        next_at = math.inf
        for sub in list(self.subs.values()):
            state = sub._state
            if (
                state.phase is not Phase.PENDING
                or sub.behind
                or self.subs.get(sub.channel) is not sub
            ):
                continue
            if sub.retry_at is not None and sub.retry_at > trio.current_time():
                next_at = min(next_at, sub.retry_at)
                continue
            sub.retry_at = None
            await ws.send_message(state.subscribe().encode())
        return next_at

    def _refuse_v1(self) -> None:
        pending = [sub for sub in self.subs.values() if sub._state.phase is Phase.PENDING]
        if not pending:
            return
        for sub in pending:
            self._refused(sub, Refused(sub.channel, RefusedCode.UNSUPPORTED, UNSUPPORTED_REASON))

    # ------------------------------------------------------------- lifecycle

    def connection_lost(self) -> None:
        """The connection dropped (or its attempt failed)."""
        self.ws = None
        self.v2 = False
        self._leaving.clear()
        self._orphans.clear()
        self._warned_malformed = False
        self._warned_v1 = False
        for sub in self.subs.values():
            sub._state.connection_lost()

    def close(self, error: BaseException) -> None:
        """The client ended: every subscription ends with ``error``."""
        self._ended = error
        self.ws = None
        for sub in list(self.subs.values()):
            sub._finish(error, discard=True)
        self.subs.clear()
