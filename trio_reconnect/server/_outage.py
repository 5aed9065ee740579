"""The log's health, applied: count, refuse, close, recover.

When the log is unavailable (PROTOCOL.md section 3.4)
-----------------------------------------------------

Every :class:`~trio_reconnect.server.LogUnavailableError` (from the fan-out's
tail, a handshake's read, or :meth:`~trio_reconnect.server.ReconnectServer.publish`) marks the log
down until the fan-out's next successful read. While it is down the node
keeps its open connections, refuses new opening handshakes with 503 and a
spread ``Retry-After`` of at least ``outage_retry_after`` seconds, and
``publish`` raises (the append is never retried: it may have been stored).
When the outage outlasts ``outage_limit`` the node closes its clients with
1013 and spread hints, once per outage; they resume when the log is back and
are told exactly what they missed.

The driver
----------

Each such error is reported here (:class:`LogWatch` is the fan-out's hooks
object); :class:`~trio_reconnect.server._health.LogHealth` says what it
means, and this driver counts it, logs it and applies it. A discontinuity
in the log closes the fan-out's clients with 1012.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
import trio

from ._clientbase import CLOSE_SERVICE_RESTART, CLOSE_TRY_AGAIN_LATER
from ._connection import ConnectedClient
from ._drain import Spreader
from ._fanout import Subscriber
from ._health import HealthVerdict, LogHealth
from ._logbase import LogDiscontinuityError, LogUnavailableError
from ._node import ClientSet, NodeConfig
from ._stats import Counts

__all__ = ["LogWatch"]

logger = logging.getLogger("trio_reconnect.server")


@attrs.define(eq=False)
class LogWatch:
    """Applies :class:`~trio_reconnect.server._health.LogHealth` to the node."""

    config: NodeConfig
    clients: ClientSet
    counts: Counts
    spreader: Spreader
    health: LogHealth = attrs.field(factory=LogHealth)

    def log_unavailable(self, error: LogUnavailableError) -> None:
        """A log call failed: the log is down (and after ``outage_limit``, the clients go)."""
        self.counts.log_errors += 1
        health = self.health
        verdict = health.failed(trio.current_time(), self.config.outage_limit)
        if verdict is HealthVerdict.WENT_DOWN:
            logger.warning("the event log is unavailable (%s); refusing new handshakes", error)
        elif verdict is HealthVerdict.OUTAGE:
            targets = self.clients.open()
            assert health.down_since is not None
            logger.warning(
                "the event log has been unavailable for %.1f s; closing %d clients",
                trio.current_time() - health.down_since,
                len(targets),
            )
            self.spreader.close(targets, CLOSE_TRY_AGAIN_LATER, "log unavailable")

    def log_available(self) -> None:
        """A log call succeeded: the log is up."""
        down_for = self.health.succeeded(trio.current_time())
        if down_for is not None:
            logger.warning("the event log is back after %.1f s", down_for)

    def discontinuity(self, clients: Sequence[Subscriber], error: LogDiscontinuityError) -> None:
        """The log no longer holds what ``clients`` were to get: they resume elsewhere."""
        self.counts.log_discontinuities += 1
        targets = [c for c in clients if isinstance(c, ConnectedClient) and not c.closing]
        self.spreader.close(targets, CLOSE_SERVICE_RESTART, "log reset")
