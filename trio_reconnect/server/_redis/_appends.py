"""Group commit of the Redis channel store's appends: appends that meet share one script call.

Why
---

One append is one script on Redis (:mod:`._channel_scripts`), and Redis
runs it in microseconds; the node pays far more for the call: coredis's
request, its writer and reader tasks, a cancel scope, a socket write and a
read. Measured on issue 18's figure (2,000 clients, 1,000 channels, eight
concurrent publishers), the calls took a large share of the Redis node's
CPU, and the node fanned out fewer events per second than a plain pub/sub
server. So appends that arrive while a call is in flight wait for it, and
then go together in one call: one script, one round trip, for all of them
(a database's group commit). A lone append still goes at once, in a call
of its own.

Rules
-----

* **One batch in flight.** A committer task (in the store's nursery) takes
  every waiting append, oldest first, at most ``max_batch``, and runs the
  batch script on a connection of its own (:mod:`._link`: no coredis on
  this path). An append wakes it, and it runs after every task of that
  scheduler pass, so the appends made in one pass (the callers its last
  call answered) go in one call.
* **Ids and order are the single append's.** The script runs the items in
  the order they arrived, each as one append did: set-if-missing, ``XADD``
  with the next id, ``seq``, the notification, in one step. So ids stay
  consecutive per channel and never reused, and a caller's appends keep
  the order it made them in (it waits for each id before the next). Each
  event and its notification exist together, so a subscriber's read is
  still either after the event or before its notification, per channel:
  register first, read second (PROTOCOL.md section 3) holds as before.
* **Outcomes are per item, failures are loud.** Each item runs under
  ``pcall``: one that fails (a key of the wrong type) stores nothing and its
  caller gets :class:`~trio_reconnect.server.EventLogError`, while the others
  get their ids. A call that fails as a whole (connection lost, no answer
  within ``timeout``, a script Redis refused) fails every append of the
  batch with the same error, :class:`~trio_reconnect.server.LogUnavailableError`
  ("may or may not be stored", never retried) or ``EventLogError``: none is
  dropped silently.
* **Cancellation.** An append still waiting in the queue is cancellable: it
  leaves the queue and nothing is stored. Once its batch is taken it waits
  for the outcome, as one append's shielded call did (bounded by the
  store's ``timeout``): an append that ran returns its id.
* **Closing.** Appends still waiting when the store closes fail with
  ``LogUnavailableError``; nothing is taken after that.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import attrs
import outcome
import trio

from .._logbase import EventLogError, LogUnavailableError

__all__ = ["DEFAULT_MAX_APPEND_BATCH", "AppendBatcher", "Commit"]

#: Appends one script call carries at most (the rest wait for the next call).
DEFAULT_MAX_APPEND_BATCH: Final = 128

#: Runs one batch of (channel, payload) pairs: each item's id, or its own
#: error. Raises for a call that failed as a whole.
Commit = Callable[[Sequence[tuple[str, str]]], Awaitable[Sequence[str | EventLogError]]]


@attrs.define(eq=False, slots=True)
class _Append:
    """One waiting append: its pair, its caller, and whether its batch is in flight."""

    pair: tuple[str, str]
    task: trio.lowlevel.Task
    taken: bool = False


def _copy(error: EventLogError) -> EventLogError:
    """The same error for another caller (one exception object is never raised twice)."""
    copy = type(error)(*error.args)
    copy.__cause__ = error.__cause__ or error
    return copy


@attrs.define(eq=False)
class AppendBatcher:
    """The group commit of the module comment.

    Args:
        commit: Runs one batch.
        max_batch: Appends one call carries at most.
    """

    commit: Commit
    max_batch: int = DEFAULT_MAX_APPEND_BATCH
    _queue: collections.deque[_Append] = attrs.field(init=False, factory=collections.deque)
    _arrived: trio.lowlevel.ParkingLot = attrs.field(init=False, factory=trio.lowlevel.ParkingLot)
    _running: bool = attrs.field(init=False, default=False)
    #: Calls made so far, and the appends they carried.
    calls: int = attrs.field(init=False, default=0)
    appends: int = attrs.field(init=False, default=0)

    async def append(self, channel: str, payload: str) -> str:
        """Queue one (channel, compact JSON payload) for the next call; its id.

        Raises:
            RuntimeError: the committer is not running (the store is not open).
            LogUnavailableError: Redis did not answer (the event may or may
                not be stored), or the store closed before the append ran.
            EventLogError: Redis refused it (nothing stored).
        """
        if not self._running:
            raise RuntimeError("use the Redis channel store as 'async with' before append")
        await trio.lowlevel.checkpoint_if_cancelled()
        item = _Append((channel, payload), trio.lowlevel.current_task())
        self._queue.append(item)
        self._arrived.unpark()

        def abort(_: object) -> trio.lowlevel.Abort:
            if item.taken:
                return trio.lowlevel.Abort.FAILED  # in flight: its outcome will come
            self._queue.remove(item)
            return trio.lowlevel.Abort.SUCCEEDED

        event_id: str = await trio.lowlevel.wait_task_rescheduled(abort)
        return event_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until cancelled; then fail whatever still waits."""
        self._running = True
        batch: list[_Append] = []
        task_status.started()
        try:
            while True:
                if not self._queue:
                    # An append unparks it: it runs after every append of that pass.
                    await self._arrived.park()
                batch = self._take()
                if batch:
                    with trio.CancelScope(shield=True):
                        await self._commit(batch)
                    if self._queue:
                        # Appends came during the call: let the callers just
                        # answered make their next ones before the next call.
                        await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._running = False
            closed = LogUnavailableError("the Redis channel store closed before the append ran")
            for item in [*batch, *self._queue]:
                trio.lowlevel.reschedule(item.task, outcome.Error(_copy(closed)))
            self._queue.clear()

    def _take(self) -> list[_Append]:
        batch: list[_Append] = []
        while self._queue and len(batch) < self.max_batch:
            item = self._queue.popleft()
            item.taken = True
            batch.append(item)
        return batch

    async def _commit(self, batch: list[_Append]) -> None:
        """Run ``batch`` and hand each caller its outcome (a failed call: the same error to all)."""
        self.calls += 1
        self.appends += len(batch)
        try:
            outcomes = await self.commit([item.pair for item in batch])
        except Exception as exc:  # a call that failed as a whole; never the committer's end
            error = exc if isinstance(exc, EventLogError) else EventLogError(f"append: {exc!r}")
            error.__cause__ = error.__cause__ or exc
            for item in batch:
                trio.lowlevel.reschedule(item.task, outcome.Error(_copy(error)))
            batch.clear()
            return
        for item, result in zip(batch, outcomes, strict=True):
            if isinstance(result, EventLogError):
                trio.lowlevel.reschedule(item.task, outcome.Error(result))
            else:
                trio.lowlevel.reschedule(item.task, outcome.Value(result))
        batch.clear()
