"""The node's fan-out: ONE task reads the log's tail and feeds every client's queue.

Every event reaches a node's clients through this one path, whichever node
appended it: a local :meth:`~trio_reconnect.server.ReconnectServer.publish`
only appends to the log, and the fan-out picks the event up from the tail
like any other node's. So several nodes on one shared log deliver the same
stream in the same order (PROTOCOL.md section 3.1).

The fan-out stands at a *position*: the id of the last event it fed (``None``
for an empty log). A client is registered at that position and from then on
gets every event after it, in log order. Why the handshake registers first
and reads the log second, and why its clients keep a persistent filter, is
the subject of :mod:`trio_reconnect.server._resume`.

The position is taken from the log's newest id when the fan-out first runs
(a node does not replay the history to nobody). When the log raises
:class:`~trio_reconnect.server.LogDiscontinuityError` (the position fell out
of the log's retention, or the store lost its data), no client can be fed
what it missed: the fan-out moves to the log's newest id and hands the
clients registered so far to its hooks, in the same synchronous step, so
that a client registered afterwards stands at the new position and every
client registered before is closed (to resume, and be told what it missed).
:class:`~trio_reconnect.server.LogUnavailableError` is reported to the hooks
and the read is retried after ``retry_interval``: the position does not move,
so nothing is skipped when the store comes back. Any other exception from the
log is logged with its traceback and handled the same way: a backend's bug
must not stop the deliveries of a whole node.

:class:`SoleTask` runs the loop in whichever of its volunteers comes first
and hands it to another when that one is cancelled, so a server used only
through ``serve_stream`` (no long-lived task of its own) still has exactly
one fan-out while it has connections. Handing over is lossless: the
position only moves after a tail read returned, and cancelling a tail read
is safe (the EventLog contract).

Feeding in steps
----------------

One tail read returns up to ``batch`` events, and the node may hold
thousands of clients: feeding every one of them in one task step would hold
the whole node (its accept loop, every handshake) for that long, and the
returns of a reconnect storm would bunch behind it (issue 20: 10-25 ms per
feed with 300 clients). So the fan-out makes at most ``step`` deliveries
(one event to one client) per task step, and lets the node's other tasks
run in between, while keeping the register-first rule exact:

* The events are fed in slices of at most ``step``. In ONE synchronous step
  the position moves to the slice's last id and the clients registered so
  far are listed: they stand at or before the old position, so they are the
  ones to get the slice. A client registered later, while the list is being
  fed, stands at the new position and gets the next slices: nothing twice,
  nothing missed.
* The list is fed ``step // len(slice)`` clients at a time (at least one),
  with a checkpoint between. A client unregistered meanwhile is skipped (and
  one registered again is fed from its new registration only).
* Once the position has moved, the slice is fed to the whole list whatever
  happens: that part is shielded from cancellation. Between slices it is
  not: the position stands at the last slice fed, so a fan-out cancelled
  there (handed over) reads the rest again from it.

A discontinuity is still handled in one step: it is raised by a tail read,
which only starts once the last slice was fed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import attrs
import trio

from .._protocol import encode_event
from .._validators import positive_int
from ._logbase import (
    EventLog,
    LogDiscontinuityError,
    LoggedEvent,
    LogUnavailableError,
    parse_event_id,
)

__all__ = [
    "DEFAULT_FANOUT_BATCH",
    "DEFAULT_FEED_STEP",
    "DEFAULT_LOG_RETRY_INTERVAL",
    "DEFAULT_TAIL_BLOCK",
    "FanOut",
    "FanOutHooks",
    "SoleTask",
    "Subscriber",
    "encode_logged_event",
]

logger = logging.getLogger("trio_reconnect.server")

#: Most events one tail read returns.
DEFAULT_FANOUT_BATCH: Final = 512
#: Most deliveries (one event to one client) the fan-out makes in one task step
#: (module comment): about 1 ms of CPU with the direct writes of
#: :mod:`trio_reconnect.server._direct` (15-18 us each, measured on 2 busy cores).
DEFAULT_FEED_STEP: Final = 64
#: Seconds one tail read blocks for new events before it is asked again.
DEFAULT_TAIL_BLOCK: Final = 1.0
#: Seconds between attempts to read the log while it is unavailable.
DEFAULT_LOG_RETRY_INTERVAL: Final = 1.0


def encode_logged_event(event: LoggedEvent) -> str:
    """The ``event`` frame of a logged event, also when its data is not JSON.

    :meth:`~trio_reconnect.server.ReconnectServer.publish` refuses such
    data, but anything else that appends to the log (another node, another
    program writing the shared store, a direct ``log.append``) may not. Such
    an event must not crash every node that reads it: it is sent with
    ``data: null`` and logged as an error, so its id still arrives in order.
    """
    try:
        return encode_event(event.id, event.data)
    except (TypeError, ValueError) as error:
        logger.error(
            "event %s holds data that is not JSON (%s); sending it as null", event.id, error
        )
        return encode_event(event.id, None)


class Subscriber(Protocol):
    """What the fan-out feeds: a client's queue."""

    def feed(self, frames: Sequence[tuple[int, str]]) -> None:
        """Queue ``(sequence number, event frame)`` pairs, in log order, without waiting."""
        ...


class FanOutHooks(Protocol):
    """What the fan-out tells its node."""

    def log_unavailable(self, error: LogUnavailableError) -> None:
        """A read failed because the store is unreachable (called on every failed read)."""
        ...

    def log_available(self) -> None:
        """A read succeeded."""
        ...

    def discontinuity(self, clients: Sequence[Subscriber], error: LogDiscontinuityError) -> None:
        """The log no longer holds what ``clients`` were to get; they must be closed."""
        ...


@attrs.define(eq=False)
class FanOut:
    """One node's reader of the log's tail, feeding every registered client.

    Args:
        log: The event log.
        hooks: Where failures are reported.
        batch: Most events read at once.
        step: Most deliveries (one event to one client) in one task step.
        block: Seconds one tail read blocks.
        retry_interval: Seconds between reads while the log is unavailable.
    """

    log: EventLog
    hooks: FanOutHooks
    batch: int = attrs.field(default=DEFAULT_FANOUT_BATCH, kw_only=True, validator=positive_int)
    step: int = attrs.field(default=DEFAULT_FEED_STEP, kw_only=True, validator=positive_int)
    block: float = attrs.field(default=DEFAULT_TAIL_BLOCK, kw_only=True)
    retry_interval: float = attrs.field(default=DEFAULT_LOG_RETRY_INTERVAL, kw_only=True)
    _position: str | None = attrs.field(init=False, default=None)
    _positioned: trio.Event = attrs.field(init=False, factory=trio.Event)
    #: Each registered subscriber, with the number of its registration.
    _subscribers: dict[Subscriber, int] = attrs.field(init=False, factory=dict)
    _registrations: int = attrs.field(init=False, default=0)
    _delivered: int = attrs.field(init=False, default=0)

    @property
    def position(self) -> str | None:
        """The id of the last event fed (``None``: none, or not yet positioned)."""
        return self._position

    @property
    def delivered(self) -> int:
        """Events read from the tail so far."""
        return self._delivered

    def __len__(self) -> int:
        return len(self._subscribers)

    async def register(self, subscriber: Subscriber) -> str | None:
        """Register ``subscriber`` at the current position, and return it.

        Waits until the fan-out has its first position. From the moment this
        returns, the subscriber is fed every event after the returned id.
        """
        await self._positioned.wait()
        # No checkpoint between here and the return: the position read is the
        # position registered at.
        self._registrations += 1
        self._subscribers[subscriber] = self._registrations
        return self._position

    def unregister(self, subscriber: Subscriber) -> None:
        """Feed ``subscriber`` no more (idempotent)."""
        self._subscribers.pop(subscriber, None)

    async def run(self) -> None:
        """Read the tail and feed the subscribers, until cancelled."""
        failing = False
        while True:
            try:
                if not self._positioned.is_set():
                    self._position = await self.log.newest()
                    self._positioned.set()
                    self.hooks.log_available()
                # While the log is failing, probe it without blocking, so that
                # the node hears at once that it is back.
                block = 0.0 if failing else self.block
                events = await self.log.tail(self._position, limit=self.batch, block=block)
                self._check_follows(events)
            except LogUnavailableError as error:
                failing = True
                self.hooks.log_unavailable(error)
                await trio.sleep(self.retry_interval)
                continue
            except LogDiscontinuityError as error:
                self._discontinuity(error)
                continue
            except Exception as error:  # a backend's bug must not stop every delivery
                failing = True
                logger.exception("reading the log failed; treating the log as unavailable")
                self.hooks.log_unavailable(LogUnavailableError(f"{type(error).__name__}: {error}"))
                await trio.sleep(self.retry_interval)
                continue
            failing = False
            self.hooks.log_available()
            if events:
                await self._feed(events)

    def _discontinuity(self, error: LogDiscontinuityError) -> None:
        # One synchronous step: every client registered so far is handed
        # over, and a client registered from now on stands at the new position.
        victims = list(self._subscribers)
        self._subscribers.clear()
        self._position = error.newest
        logger.warning("%s; closing %d clients", error, len(victims))
        self.hooks.log_available()
        self.hooks.discontinuity(victims, error)

    def _check_follows(self, events: Sequence[LoggedEvent]) -> None:
        """A backend that skips ids has a discontinuity it did not report."""
        expected = parse_event_id(self._position) if self._position is not None else None
        for event in events:
            seq = parse_event_id(event.id)
            if seq is None or (expected is not None and seq != expected + 1):
                raise LogDiscontinuityError(self._position, None, events[-1].id)
            expected = seq

    async def _feed(self, events: Sequence[LoggedEvent]) -> None:
        """Feed ``events`` to every subscriber, in steps (module comment)."""
        for start in range(0, len(events), self.step):
            if start:
                # Cancellable: the position stands at the last slice fed.
                await trio.lowlevel.checkpoint()
            part = events[start : start + self.step]
            frames = [(int(event.id), encode_logged_event(event)) for event in part]
            # One synchronous step: the position moves, and the clients
            # registered at or before the old one are the slice's.
            self._position = part[-1].id
            self._delivered += len(part)
            targets = list(self._subscribers.items())
            with trio.CancelScope(shield=True):
                await self._feed_targets(targets, frames)

    async def _feed_targets(
        self, targets: Sequence[tuple[Subscriber, int]], frames: Sequence[tuple[int, str]]
    ) -> None:
        """Feed ``frames`` to ``targets`` still registered, ``step`` deliveries per task step."""
        per_step = max(1, self.step // len(frames))
        for n, (subscriber, registration) in enumerate(targets):
            if n and not n % per_step:
                await trio.lowlevel.checkpoint()
            if self._subscribers.get(subscriber) == registration:
                subscriber.feed(frames)


@attrs.define(eq=False)
class SoleTask:
    """Runs ``target`` in one of its volunteers at a time, handing it over on cancellation.

    Every volunteer calls :meth:`volunteer`; the first runs ``target``, the
    others wait. When the running one is cancelled, a waiting one takes over.
    """

    target: Callable[[], Awaitable[None]]
    _running: bool = attrs.field(init=False, default=False)
    _waiting: trio.lowlevel.ParkingLot = attrs.field(init=False, factory=trio.lowlevel.ParkingLot)

    @property
    def running(self) -> bool:
        """Whether some volunteer runs ``target`` now."""
        return self._running

    async def volunteer(self) -> None:
        """Run ``target`` whenever no one else does, until cancelled."""
        while True:
            if self._running:
                await self._waiting.park()
                continue
            self._running = True
            try:
                await self.target()
            finally:
                self._running = False
                self._waiting.unpark_all()
