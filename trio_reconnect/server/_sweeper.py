"""The node's presence loop: its owner's liveness, the sweeper, the queued releases.

Runs with the node's channel feed (in the same sole task), on every node:

* **Liveness**: every ``refresh_interval`` (the node's ``announce_interval``)
  the owner's liveness is renewed for ``owner_ttl`` (its ``announce_ttl``).
  A refresh that finds the liveness had lapsed (Redis stalled longer than
  ``owner_ttl``, or lost its data) re-asserts every local hold
  (:meth:`~._members.NodeMembers.reassert`).
* **Sweeper**: every ``sweep_interval`` (jittered down, never up, so the
  bound holds) the store removes the holds whose grace ended; every
  ``owner_check_interval`` it also puts the held holds of dead owners in
  their grace. Idempotent: every node sweeps, and one leave goes out per
  member (:mod:`._presencebase`).
* **Releases** the store could not take synchronously wait in
  :attr:`~._members.NodeMembers.pending`, oldest first, and are retried after
  ``retry_interval`` while the store is down.
* **Exit**: :meth:`~trio_reconnect.server.ReconnectServer.shutdown` (so
  SIGTERM under ``serve_until_signal``) retires the owner after the drain
  (shielded, bounded): the survivors' next owner check orphans its holds, so
  a drained node's members leave ``presence_grace`` later unless they came
  back. A loop merely cancelled (its task handed over to another of the node's
  volunteers) does not retire. A SIGKILLed node is found when its liveness
  lapses: a member of it that does not come back leaves at most ``owner_ttl +
  owner_check_interval + presence_grace + sweep_interval`` after the kill
  (:func:`~._membersplan.killed_node_bound`).
"""

from __future__ import annotations

import logging
import random
from typing import Final

import attrs
import trio

from ._logbase import LogUnavailableError
from ._members import NodeMembers

__all__ = [
    "DEFAULT_OWNER_CHECK_INTERVAL",
    "DEFAULT_PRESENCE_GRACE",
    "DEFAULT_SWEEP_INTERVAL",
    "Sweeper",
]

logger = logging.getLogger("trio_reconnect.server")

#: Seconds a member whose connection dropped stays a member (PROTOCOL.md 4.4).
DEFAULT_PRESENCE_GRACE: Final = 30.0
#: Seconds between two sweeps of the holds whose grace ended.
DEFAULT_SWEEP_INTERVAL: Final = 1.0
#: Seconds between two checks for dead owners.
DEFAULT_OWNER_CHECK_INTERVAL: Final = 2.0
#: Seconds a retiring owner waits for the store at exit.
_RETIRE_TIMEOUT: Final = 2.0


@attrs.define(eq=False)
class Sweeper:
    """The presence loop of one node (the module comment)."""

    members: NodeMembers
    refresh_interval: float
    owner_ttl: float
    retry_interval: float
    sweep_interval: float = DEFAULT_SWEEP_INTERVAL
    owner_check_interval: float = DEFAULT_OWNER_CHECK_INTERVAL
    rng: random.Random = attrs.field(factory=random.Random, repr=False)
    _wakeup: trio.Event = attrs.field(init=False, factory=trio.Event)
    #: Holds removed by this node's sweeps.
    swept: int = attrs.field(init=False, default=0)
    #: The node stopped: its owner is not renewed any more.
    retired: bool = attrs.field(init=False, default=False)
    #: The owner was refreshed once (its next refresh must find it alive).
    refreshed: bool = attrs.field(init=False, default=False)
    #: Times its liveness was found lapsed (and its holds re-asserted).
    lapses: int = attrs.field(init=False, default=0)

    def _wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Refresh, sweep and release until cancelled (a cancelled loop is taken over)."""
        self.members.wake = self._wake
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._liveness)
            nursery.start_soon(self._sweeps)
            await self._releases()

    async def retire(self) -> None:
        """The node stops: its owner is renewed no more and retires (bounded, shielded)."""
        self.retired = True
        store, owner = self.members.store, self.members.owner
        with trio.move_on_after(_RETIRE_TIMEOUT, shield=True):
            try:
                await store.retire(owner)
            except LogUnavailableError as error:
                logger.warning("presence owner %s could not retire: %s", owner, error)

    async def _liveness(self) -> None:
        store, owner = self.members.store, self.members.owner
        while not self.retired:
            try:
                alive = await store.refresh(owner, self.owner_ttl)
                if not alive and self.refreshed:
                    logger.warning("presence owner %s had lapsed; holding its members again", owner)
                    self.lapses += 1
                    await self.members.reassert()
                self.refreshed = True
            except LogUnavailableError as error:
                logger.warning("presence owner %s: refresh failed: %s", owner, error)
            await trio.sleep(self.refresh_interval)

    async def _sweeps(self) -> None:
        store, grace = self.members.store, self.members.grace
        checked = -float("inf")
        while True:
            await trio.sleep(self.sweep_interval * self.rng.uniform(0.5, 1.0))
            now = trio.current_time()
            check = now - checked >= self.owner_check_interval
            try:
                self.swept += await store.sweep(grace=grace, check_owners=check)
            except LogUnavailableError as error:
                logger.warning("presence sweep failed: %s", error)
                continue
            if check:
                checked = now

    async def _releases(self) -> None:
        pending, store = self.members.pending, self.members.store
        while True:
            while pending:
                channel, hold, grace = pending[0]
                try:
                    await store.release(channel, hold, grace=grace)
                except LogUnavailableError as error:
                    logger.warning("presence release of %r failed (%s); retrying", channel, error)
                    await trio.sleep(self.retry_interval)
                    continue
                pending.popleft()
            await self._wakeup.wait()
            self._wakeup = trio.Event()
