"""Closing clients with spread hints: one at a time, many at once, drains and stops.

:class:`Spreader` writes every hinted close reason: a one-client hint (a
client too slow, a handler that failed, a handshake refused) or the
distinct hints of many clients closed at once (an outage, a discontinuity,
a drain). :class:`Drains` runs :meth:`~trio_reconnect.server.ReconnectServer.drain`
and the drain of :meth:`~trio_reconnect.server.ReconnectServer.shutdown`:
refuse for a while, plan the spread (over the cluster with a registry),
close, wait (bounded), drop the stragglers, and say what it did in a
:class:`DrainSummary`.
"""

from __future__ import annotations

import json
import logging
import math
import signal
from collections.abc import Sequence
from typing import Final

import attrs
import trio

from .._hints import HINTED_CLOSE_CODES, format_close_reason
from .._validators import check_non_negative
from ._clientbase import ClientState
from ._connection import ConnectedClient
from ._health import Admission
from ._node import ClientSet, NodeConfig
from ._presence import PresenceDriver
from ._spread import ReturnAt, SpreadPolicy, distinct_milliseconds, plan_spread
from ._stats import Counts

__all__ = ["DRAIN_SUMMARY_TAG", "DrainSummary", "Drains", "Spreader"]

logger = logging.getLogger("trio_reconnect.server")

#: The word that starts :meth:`DrainSummary.json_line` (a program reading a
#: node's output looks for it).
DRAIN_SUMMARY_TAG: Final = "drain-summary"


@attrs.frozen
class DrainSummary:
    """What a drain (or a graceful stop) did.

    Attributes:
        drained: Clients closed with a spread hint.
        aborted: Of those, the ones still connected when the wait ran out
            (dropped without waiting further).
        window: Seconds the hints were spread over (after the ``base``).
        survivors: The peer nodes the clients were spread over (empty
            without a registry, or with no live peer).
        seconds: How long the drain took.
        signal: The signal that started a graceful stop, if one did.
    """

    drained: int
    aborted: int
    window: float
    survivors: tuple[str, ...] = ()
    seconds: float = 0.0
    signal: int | None = None

    def describe(self) -> str:
        """One line for a log: what was drained, how, and how long it took."""
        cause = f"{signal.Signals(self.signal).name}: " if self.signal is not None else ""
        peers = f" over {len(self.survivors)} peer nodes" if self.survivors else ""
        return (
            f"{cause}drained {self.drained} clients with spread hints over "
            f"{self.window:.2f} s{peers} in {self.seconds:.2f} s"
            f" ({self.aborted} did not leave in time)"
        )

    def json_line(self) -> str:
        """One line for a program to read back with :meth:`from_output`.

        :data:`DRAIN_SUMMARY_TAG`, a space, and the fields as a JSON object.
        """
        fields = attrs.asdict(self)
        fields["survivors"] = list(self.survivors)
        return f"{DRAIN_SUMMARY_TAG} {json.dumps(fields, separators=(',', ':'))}"

    @classmethod
    def from_output(cls, text: str) -> DrainSummary | None:
        """The last summary that :meth:`json_line` wrote in ``text`` (a node's output), if any."""
        found: DrainSummary | None = None
        prefix = DRAIN_SUMMARY_TAG + " "
        for line in text.splitlines():
            _, tagged, body = line.partition(prefix)
            if not tagged:
                continue
            try:
                fields = json.loads(body)
                fields["survivors"] = tuple(fields["survivors"])
                found = cls(**fields)
            except (ValueError, TypeError, KeyError):
                continue
        return found


@attrs.define(eq=False)
class Spreader:
    """Closes clients with retry hints spread by the node's ``spread`` policy."""

    config: NodeConfig

    def hint_reason(self, reason: str) -> str:
        """A close reason with a one-client spread hint (base plus up to min_window)."""
        return format_close_reason(plan_spread(1, self.config.spread, self.config.rng)[0], reason)

    def close(
        self,
        targets: Sequence[ConnectedClient],
        code: int,
        reason: str,
        policy: SpreadPolicy | None = None,
        *,
        shift: float = 0.0,
    ) -> None:
        """Start closing ``targets`` with distinct spread hints (synchronously).

        Each client gets a distinct return time; its close reason's
        ``retryAfter`` is the time left until it when its close frame is
        written (:class:`~._spread.ReturnAt`).

        Args:
            targets: The clients to close.
            code: The close code.
            reason: The close reason's ``reason`` word.
            policy: The spread (``None``: the node's own).
            shift: Seconds added to every hint.
        """
        spread = self.config.spread if policy is None else policy
        delays = distinct_milliseconds(plan_spread(len(targets), spread, self.config.rng))
        now = trio.current_time()
        logger.info("closing %d clients with %d (%s)", len(targets), code, reason)
        for client, delay in zip(targets, delays, strict=True):
            client.close(code, ReturnAt(now + shift + delay, reason))


@attrs.define(eq=False)
class Drains:
    """Runs the node's drains: refuse, spread, close, wait (bounded), drop the stragglers."""

    config: NodeConfig
    clients: ClientSet
    counts: Counts
    admission: Admission
    spreader: Spreader
    presence: PresenceDriver
    #: The waits of drains in progress (a second stop signal ends them).
    _waits: set[trio.CancelScope] = attrs.field(init=False, factory=set)

    async def drain(
        self, code: int, reason: str, *, refuse_for: float, wait: float | None
    ) -> DrainSummary:
        """Close every open client with ``code`` and a spread hint, then wait up to ``wait`` s."""
        if code not in HINTED_CLOSE_CODES:
            raise ValueError(f"code must be one of {sorted(HINTED_CLOSE_CODES)}, got {code!r}")
        check_non_negative("refuse_for", refuse_for)
        spread = self.config.spread
        # A reason too long for 123 bytes fails before any client is closed,
        # with no client connected too (the error must not depend on how many
        # happen to be there).
        format_close_reason(refuse_for + spread.base + spread.window(1), reason)
        started = trio.current_time()
        if refuse_for > 0:
            self.admission.refuse_for(started, refuse_for)
        self.counts.restarts += 1
        policy, survivors = await self.presence.plan_drain(self.clients)
        targets = self.clients.open()
        self.spreader.close(targets, code, reason, policy, shift=refuse_for)
        aborted = await self._wait_gone(targets, wait)
        return DrainSummary(
            drained=len(targets),
            aborted=aborted,
            window=policy.window(len(targets)) if targets else 0.0,
            survivors=survivors,
            seconds=trio.current_time() - started,
        )

    async def _wait_gone(self, targets: Sequence[ConnectedClient], wait: float | None) -> int:
        """Wait up to ``wait`` s for ``targets`` to go, then drop the rest; returns how many."""
        with trio.move_on_after(math.inf if wait is None else wait) as waiting:
            self._waits.add(waiting)
            try:
                for client in targets:
                    await client.wait_closed()
            finally:
                self._waits.discard(waiting)
        aborted = 0
        for client in targets:
            if client.state is not ClientState.CLOSED:
                aborted += 1
                client.abort()
        for client in targets:
            await client.wait_closed()
        await trio.lowlevel.checkpoint()
        return aborted

    def cut_short(self) -> None:
        """Stop waiting for the drained clients of every drain in progress."""
        for scope in self._waits:
            scope.cancel()
