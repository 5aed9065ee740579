"""Acknowledged publish (PROTOCOL.md 4.5): one worker per connection, one store call per batch.

The connection's read loop only queues (:meth:`Publisher.offer`): the
decisions (R3, bounds, the batch cut) are :mod:`._pubplan`'s. Each connection
of a node with channels runs inside :meth:`Publisher.serve`, which starts its
worker next to it at its first publish: the worker lets the publishes
already received join the queue (it yields to the scheduler while the queue
still grows, :func:`._pubplan.gather_more`), takes the longest queued
prefix (all that arrived while its previous call was in flight, up to
:data:`._pubplan.MAX_BATCH`), applies its publishes with ONE
:meth:`~._channelbase.ChannelStore.publish` call (append and dedupe record
atomic per item, stopping at the first failure), awaits it, and queues the
answers of the whole prefix, in order and in one step (the connection's
write loop writes them together), before it takes the next one. So one
node applies one connection's publishes in the order received, never two
batches at once.

Memory: a connection that never publishes costs one dict entry here. The
worker runs in the nursery the connection already has (the acceptor's, which
holds trio-websocket's reader task), not in one of its own, and the lane (its
queue, its wakeup, its key base) is made at the first publish.

An answer is never dropped silently and never an ``ack`` for a publish the
store did not confirm: a store call that fails, or whose outcome is unknown
(a connection lost mid-script), answers ``unavailable``; the client's
re-send then finds the dedupe record. A connection that is closing starts
no new batch (its publishes will be re-sent on the next one).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed

from .._wire import Ack, Nack
from ._channelbase import ChannelStore, PublishRequest, PublishResult
from ._connection import ConnectedClient
from ._logbase import LogUnavailableError
from ._pubplan import (
    GATHER_BATCH,
    MAX_BATCH,
    Answered,
    Cut,
    Entry,
    PublishQueue,
    dedupe_key,
    gather_more,
    key_base,
    unavailable,
)
from ._stats import Counts

__all__ = ["Publisher"]

logger = logging.getLogger("trio_reconnect.server")


@attrs.define(eq=False)
class _Lane:
    """One connection's queue, its worker (started at its first publish), its dedupe key base."""

    queue: PublishQueue = attrs.Factory(PublishQueue)
    working: bool = False
    wakeup: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)
    base: hashlib.blake2b | None = None


@attrs.define(eq=False)
class Publisher:
    """The node's acknowledged publishes (the module comment)."""

    store: ChannelStore
    counts: Counts
    dedupe_ttl: float
    max_batch: int = MAX_BATCH
    #: The nursery of each connection served (its worker's), until it publishes.
    _hosts: dict[ConnectedClient, trio.Nursery] = attrs.field(init=False, factory=dict)
    #: The lane of each connection served that published.
    _lanes: dict[ConnectedClient, _Lane] = attrs.field(init=False, factory=dict)

    async def serve(
        self,
        client: ConnectedClient,
        run: Callable[[], Awaitable[None]],
        nursery: trio.Nursery | None = None,
    ) -> None:
        """Run the connection (``run``), and its publish worker beside it once it publishes.

        Args:
            client: The connection.
            run: Runs it until it is over.
            nursery: Where its worker runs, cancelled by the caller once this
                returns (``None``: a nursery of its own).
        """
        if nursery is None:
            async with trio.open_nursery() as own:
                await self.serve(client, run, own)
                own.cancel_scope.cancel()
            return
        self._hosts[client] = nursery
        try:
            await run()
        finally:
            del self._hosts[client]
            self._lanes.pop(client, None)

    def _lane(self, client: ConnectedClient) -> _Lane | None:
        """``client``'s lane, made at its first use (``None``: not served here)."""
        lane = self._lanes.get(client)
        if lane is None and client in self._hosts:
            lane = self._lanes[client] = _Lane()
        return lane

    def key(self, client: ConnectedClient, principal: Any, client_id: str, msg_id: str) -> str:
        """The dedupe key of ``client``'s publish ``msg_id`` (its base digested once)."""
        lane = self._lane(client)
        if lane is None:
            return dedupe_key(key_base(principal, client_id), msg_id)
        if lane.base is None:
            lane.base = key_base(principal, client_id)
        return dedupe_key(lane.base, msg_id)

    def queued(self, client: ConnectedClient) -> int:
        """Entries queued for ``client`` now (0: none, or not served here)."""
        lane = self._lanes.get(client)
        return 0 if lane is None else len(lane.queue)

    async def offer(self, client: ConnectedClient, entry: Entry) -> None:
        """Queue one received publish (or its decided answer) of ``client``."""
        lane = self._lane(client)
        nack: Nack | None
        if lane is None:  # not run by serve(): nothing would answer it later
            if isinstance(entry, Answered):
                nack = entry.nack
            else:
                nack = unavailable(entry.publish, "no publish worker")
        else:
            nack = lane.queue.offer(entry)
            if nack is None:
                if not lane.working:
                    lane.working = True
                    self._hosts[client].start_soon(self._work, client, lane)
                elif lane.wakeup:  # the worker waits for work (unpark_all costs, even idle)
                    lane.wakeup.unpark_all()
                return
        self.counts.nacked(nack.code)
        await client.send(nack.encode())

    async def _work(self, client: ConnectedClient, lane: _Lane) -> None:
        while not client.closing:
            await self._gather(lane)
            if client.closing:  # closed meanwhile: no new batch
                return
            cut = lane.queue.cut(self.max_batch)
            if not cut.slots:
                await lane.wakeup.park()
                continue
            results = await self._apply(cut) if cut.items else ()
            answers = lane.queue.settle(cut, results)
            self._count(answers, results)
            try:
                await client.send_many([answer.encode() for answer in answers])
            except ConnectionClosed:
                return

    async def _gather(self, lane: _Lane) -> None:
        """Let the publishes already received join the batch (:func:`._pubplan.gather_more`)."""
        queued = len(lane.queue)
        idle = 0
        while gather_more(queued, idle, min(GATHER_BATCH, self.max_batch)):
            await trio.lowlevel.checkpoint()
            now = len(lane.queue)
            idle = idle + 1 if now == queued else 0
            queued = now

    async def _apply(self, cut: Cut) -> Sequence[PublishResult]:
        requests = [
            PublishRequest(p.publish.channel, p.key, p.publish.data, p.publish.compact)
            for p in cut.items
        ]
        try:
            return await self.store.publish(requests, dedupe_ttl=self.dedupe_ttl)
        except LogUnavailableError as error:
            logger.warning("publish of %d: %s", len(requests), error)
        except Exception:
            logger.exception("publish of %d failed; answering unavailable", len(requests))
        return ()

    def _count(self, answers: Sequence[Ack | Nack], results: Sequence[PublishResult]) -> None:
        counts = self.counts
        for answer in answers:
            if isinstance(answer, Ack):
                counts.publishes_acked += 1
            else:
                counts.nacked(answer.code)
        counts.publishes_duplicate += sum(1 for r in results if r.duplicate)
