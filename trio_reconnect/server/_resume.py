"""The resume handshake on the server: register first, read second.

Exactly once, across a handshake
--------------------------------

A client must see every event after its ``lastEventId`` ``L`` exactly once,
in log order, also the events appended while its handshake runs, on whichever
node it lands. Nothing here is synchronous with the log any more: every log
call is a round trip to a store that other nodes write to at the same time.
So the handshake does not try to read the log and start the live feed "in
one step"; it orders the two and lets ids decide the rest:

1. **Register.** The client's queue is registered with the node's fan-out,
   which stands at some id ``X`` (the last event it fed). From that instant
   the fan-out puts every event after ``X`` into the queue, in log order
   (:mod:`trio_reconnect.server._fanout`).
2. **Read.** The log is read after ``L``: the events ``(L, N]`` and the
   newest id ``N``. The read comes after the registration and the log only
   grows, and the fan-out could only stand at ``X`` because the log held
   ``X``, so ``N >= X``.
3. **Answer.** The handshake sends the client every event through some id
   ``C`` ("covered", :mod:`trio_reconnect.server._planner`): the replay
   ``(L, N]`` (``C = N``); or a snapshot at ``S`` with the events ``(S, N]``
   read from the log after it (``C = N``); or a snapshot at ``S >= N`` that
   includes them (``C = S``); or, when it can do neither, ``ready`` with
   ``lost: true`` (``C = N``). Always ``C >= N >= X``.
4. **Filter, for good.** The connection's write loop sends a queued event
   only if its id is above ``C``, for as long as the connection lives.

The queue holds every event after ``X``, the handshake sent every event
through ``C``, and ``X <= C``: so every event after ``L`` goes out once,
and in order, because ids are consecutive integers and both halves are in
log order.

Why the two classic shortcuts lose events or repeat them:

* *Read first, register second.* A checkpoint between the two lets events
  be appended (and fed by the fan-out) after the read saw ``N`` and before
  the client is registered at ``X > N``: the events ``(N, X]`` are in
  neither half. A gap.
* *Purge once instead of filtering.* Dropping the queued events through
  ``C`` when ``ready`` is sent is not enough, because the fan-out can still
  be behind ``C`` then: it stands at ``X`` and reads ``(X, C]`` only later
  (it runs at its own pace, on another round trip to the store). Those
  events reach the queue after the purge and are sent a second time. A
  duplicate. The persistent filter drops them whenever they come.

tests/server/test_resume_ordering.py drives both shortcuts' failure points
with a log whose reads and tails wait where the test says.

A slow read is not a failed read
--------------------------------

Each log call of the handshake has the handshake timeout (``timeout``),
whatever the log's own bound. In a reconnect storm the reads queue up: the
Redis log lets ``max_in_flight`` commands run at once and the others wait
their turn, outside its per-command ``timeout``. A read still queued (or
still running) when the handshake timeout ends is the node being too busy,
not the log failing: the client is closed with 1013 and a one-client retry
hint ("busy", counted in ``statistics().busy``), and the node's log health
is left alone. Only a :class:`LogUnavailableError` from the log itself
reports the log down. Nothing is lost either way: the client was never sent
``ready``, so it resumes from the same ``lastEventId``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import attrs
import trio

from .._exceptions import ResumeProtocolError
from .._protocol import HandshakeOutcome, encode_ready, encode_snapshot, parse_resume
from .._wire import Refused, ResumeFrame, encode_ready_v2, parse_resume_v2, resume_refusal
from ._chananswer import Busy
from ._chanframes import ChannelFrames
from ._clientbase import CLOSE_PROTOCOL_ERROR, CLOSE_TRY_AGAIN_LATER, CLOSE_UNSUPPORTED_DATA
from ._connection import ConnectedClient
from ._fanout import FanOut, encode_logged_event
from ._logbase import EventLog, LoggedEvent, LogUnavailableError
from ._planner import (
    ResumeAction,
    SnapshotFit,
    plan_fill,
    plan_resume,
    plan_snapshot,
    read_limit,
    snapshot_issued,
)

__all__ = ["ResumeHooks", "Resumer", "SnapshotProvider"]

logger = logging.getLogger("trio_reconnect.server")

_T = TypeVar("_T")


class _Busy(Exception):
    """A log call of the handshake did not end within the handshake timeout."""


#: An application's snapshot: ``(id of the newest event it includes, data)``.
SnapshotProvider = Callable[[], Awaitable[tuple[str | None, Any]]]


class ResumeHooks(Protocol):
    """What the handshake tells its node."""

    def hint_reason(self, reason: str) -> str:
        """A close reason carrying a one-client retry hint."""
        ...

    def protocol_error(self) -> None:
        """A client sent a bad (or no) resume frame."""
        ...

    def log_unavailable(self, error: LogUnavailableError) -> None:
        """A log call of the handshake failed because the store is unreachable."""
        ...

    def busy(self) -> None:
        """A log call of the handshake did not end within the handshake timeout."""
        ...

    def resumed(self, outcome: HandshakeOutcome, replayed: int) -> None:
        """A handshake ended with ``ready``."""
        ...


@attrs.define(eq=False)
class Resumer:
    """Runs the resume handshake of each new connection (the module comment).

    Args:
        log: The event log.
        fanout: The node's fan-out, to register each client with.
        hooks: Where outcomes and failures are reported.
        snapshot: The application's snapshot provider, or ``None``.
        max_replay: Most events replayed in one handshake.
        timeout: Seconds the snapshot provider may take, the fan-out to
            take its first position, and each log call to end, waiting its
            turn included (the handshake timeout).
    """

    log: EventLog
    fanout: FanOut
    hooks: ResumeHooks
    snapshot: SnapshotProvider | None
    max_replay: int
    timeout: float
    #: ``False``: a fresh client starts at the newest event (no history).
    replay_to_fresh: bool = True
    #: The node's channels (``None``: a version 1 server).
    channels: ChannelFrames | None = None

    async def __call__(self, client: ConnectedClient) -> bool:
        """Run the handshake; ``True`` once ``ready`` was sent."""
        first = await client.first_frame()
        if first is None:
            return await self._refuse(
                client, CLOSE_TRY_AGAIN_LATER, self.hooks.hint_reason("no resume frame")
            )
        if isinstance(first, bytes):
            return await self._refuse(
                client, CLOSE_UNSUPPORTED_DATA, "expected a text resume frame"
            )
        try:
            frame: ResumeFrame | None = None
            refusals: tuple[Refused, ...] = ()
            if self.channels is None:
                last = parse_resume(first)
            else:
                frame, refusals = parse_resume_v2(first)
                last = frame.last_event_id
        except ResumeProtocolError as error:
            return await self._refuse(client, CLOSE_PROTOCOL_ERROR, resume_refusal(error, first))
        client.last_event_id = last
        try:
            answer = None
            if self.channels is not None and frame is not None:
                answer = await self.channels.handshake(client, frame, refusals)
            return await self._resume(client, last, answer)
        except LogUnavailableError as error:
            self.hooks.log_unavailable(error)
            logger.warning("client %d: %s; closing it", client.id, error)
            client.close(CLOSE_TRY_AGAIN_LATER, self.hooks.hint_reason("log unavailable"))
        except (_Busy, Busy):
            self.hooks.busy()
            logger.warning(
                "client %d: a log read did not end within %s s; closing it",
                client.id,
                self.timeout,
            )
            client.close(CLOSE_TRY_AGAIN_LATER, self.hooks.hint_reason("busy"))
        await trio.lowlevel.checkpoint()
        return False

    async def _refuse(self, client: ConnectedClient, code: int, reason: str) -> bool:
        self.hooks.protocol_error()
        logger.info("client %d: %s; closing with %d", client.id, reason, code)
        client.close(code, reason)
        await trio.lowlevel.checkpoint()
        return False

    async def _resume(
        self,
        client: ConnectedClient,
        last: str | None,
        answer: tuple[Sequence[str], list[str]] | None,
    ) -> bool:
        """``answer``: a version 2 connection's active channels and their answer's frames."""
        channels, held = (None, []) if answer is None else answer
        has_snapshot = self.snapshot is not None
        # 1. Register (the fan-out feeds the queue every event after its position) ...
        registered = False
        with trio.move_on_after(self.timeout):
            await self.fanout.register(client)
            registered = True
        if not registered:  # the fan-out never reached the log
            raise LogUnavailableError("the node's fan-out has not read the log yet")
        # 2. ... then read.
        limit = read_limit(
            last,
            max_replay=self.max_replay,
            has_snapshot=has_snapshot,
            replay_to_fresh=self.replay_to_fresh,
        )
        read = await self._within(lambda: self.log.read_after(last, limit=limit))
        plan = plan_resume(
            last, read, has_snapshot=has_snapshot, replay_to_fresh=self.replay_to_fresh
        )
        replayed = 0
        lost = plan.action is ResumeAction.LOST
        if held and (plan.events or plan.action is ResumeAction.SNAPSHOT):
            await client.send_frame(held)  # the channels' answers go first
            held = []
        ready_id, covered, outcome = plan.ready_id, plan.covered, plan.outcome
        if plan.action is ResumeAction.REPLAY:
            replayed = await self._send_events(client, plan.events)
        elif plan.action is ResumeAction.SNAPSHOT:
            taken = await self._take_snapshot(client)
            placed = None if taken is None else await self._place(taken[0], read.newest)
            if taken is None or placed is None:
                outcome, lost = HandshakeOutcome.LOST, True
            else:
                # A snapshot the log cannot place is not sent: ``lost`` means
                # neither a replay nor a snapshot (docs/reference/protocol.md).
                fill, covered = placed
                outcome = HandshakeOutcome.SNAPSHOT
                if fill is None:
                    ready_id = taken[0]
                await client.send_frame(taken[1])
                replayed = await self._send_events(client, fill or ())
        assert outcome is not None
        if channels is None:
            await client.send_frame(encode_ready(ready_id, lost=lost))
        else:  # a version 2 connection: ``ready`` lists its active channels, in one write
            ready = encode_ready_v2(ready_id, lost=lost, channels=channels)
            await client.send_frame([*held, ready])
        # 4. The filter, for the connection's lifetime.
        client.set_ready(outcome, covered)
        self.hooks.resumed(outcome, replayed)
        logger.debug(
            "client %d ready: %s (lastEventId %r, ready id %r)",
            client.id,
            outcome.value,
            last,
            ready_id,
        )
        return True

    async def _place(
        self, snapshot_id: str | None, newest: str | None
    ) -> tuple[list[LoggedEvent] | None, int | None] | None:
        """Fit the snapshot to the read: ``(events to send after it, covered)``, or ``None`` (lost).

        The events are ``None`` when the snapshot reaches past the read
        (``ready`` then names the snapshot's id).
        """
        plan = plan_snapshot(snapshot_id, newest)
        if plan.fit is SnapshotFit.EXACT:
            return [], plan.covered
        if plan.fit is SnapshotFit.AHEAD:
            assert snapshot_id is not None
            if snapshot_issued(snapshot_id, await self._within(self.log.newest)):
                return None, plan.covered
        elif plan.fit is SnapshotFit.BEHIND:
            assert plan.covered is not None
            fill = plan_fill(
                await self._within(lambda: self.log.read_after(snapshot_id, limit=self.max_replay)),
                plan.covered,
            )
            if fill is not None:
                return fill, plan.covered
        logger.warning("snapshot id %r is unknown to the log; reporting lost events", snapshot_id)
        return None

    async def _within(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``await call()`` within the handshake timeout, else :class:`_Busy` (module comment)."""
        with trio.move_on_after(self.timeout):
            return await call()
        raise _Busy

    async def _send_events(self, client: ConnectedClient, events: Sequence[LoggedEvent]) -> int:
        for event in events:
            await client.send_replayed(encode_logged_event(event))
        return len(events)

    async def _take_snapshot(self, client: ConnectedClient) -> tuple[str | None, str] | None:
        """The application's snapshot as ``(id, frame)``, or ``None`` if it failed."""
        assert self.snapshot is not None
        try:
            with trio.move_on_after(self.timeout) as deadline:
                snapshot_id, data = await self.snapshot()
            if deadline.cancelled_caught:
                logger.warning(
                    "no snapshot for client %d within %s s; reporting lost events",
                    client.id,
                    self.timeout,
                )
                return None
            if snapshot_id is not None and not isinstance(snapshot_id, str):
                raise TypeError(f"snapshot id must be a str or None, got {snapshot_id!r}")
            return snapshot_id, encode_snapshot(snapshot_id, data)
        except Exception:
            logger.exception("snapshot for client %d failed; reporting lost events", client.id)
            return None
