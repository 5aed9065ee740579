"""The node's two "given now, what is true" machines: the log's health and admission. Pure.

No trio, no clock: ``now`` comes in as an argument (the driver passes
``trio.current_time()``). The node (:mod:`trio_reconnect.server._server`,
:mod:`trio_reconnect.server._outage`, :mod:`trio_reconnect.server._accept`)
only applies what these say.

The log's health (PROTOCOL.md section 3.4)
-------------------------------------------

======================  ======================================  ======================
the log is ...          on a failed log call at ``now``          on a successful read
======================  ======================================  ======================
up                      down since ``now``: :attr:`WENT_DOWN`    up (nothing)
down, under the limit   still down: :attr:`STILL_DOWN`           up: the outage's length
down past the limit     close every client, once per outage:     up: the outage's length
                        :attr:`OUTAGE` (then ``STILL_DOWN``)
======================  ======================================  ======================

The limit (``outage_limit``) counts from the first failure; ``None`` never
closes. Every failure is counted by the driver, whatever the verdict.

Admission
---------

A new opening handshake at ``now`` is, in this order of precedence:

1. refused until the refusal ends (``Retry-After`` past it), while the node
   stops (for good) or a drain's ``refuse_for`` is running;
2. refused with a ``Retry-After`` of at least ``outage_retry_after``, while
   the log is down;
3. else up to the rate limiter (:class:`~trio_reconnect.server.AdmissionControl`).

Whichever refuses, the limiter spreads the refused clients' returns.
"""

from __future__ import annotations

import enum
import math

import attrs

from ._spread import AdmissionControl

__all__ = ["Admission", "HealthVerdict", "LogHealth"]


class HealthVerdict(enum.Enum):
    """What a failed log call means, given how long the log has been down."""

    #: The log just went down: refuse new handshakes from now on.
    WENT_DOWN = "went down"
    #: Still down; nothing new to do.
    STILL_DOWN = "still down"
    #: Down for ``outage_limit``: close every client (once per outage).
    OUTAGE = "outage"


@attrs.define(eq=False)
class LogHealth:
    """Whether the log is up, since when it is down, and whether the outage closed the clients."""

    #: When the log went down (``None``: it is up).
    down_since: float | None = None
    #: Whether this outage has closed the clients already.
    outage_closed: bool = False

    @property
    def down(self) -> bool:
        """Whether the log is down now."""
        return self.down_since is not None

    def failed(self, now: float, limit: float | None) -> HealthVerdict:
        """A log call failed at ``now``; ``limit`` is the ``outage_limit`` (``None``: never)."""
        if self.down_since is None:
            self.down_since = now
            return HealthVerdict.WENT_DOWN
        if limit is not None and not self.outage_closed and now - self.down_since >= limit:
            self.outage_closed = True
            return HealthVerdict.OUTAGE
        return HealthVerdict.STILL_DOWN

    def succeeded(self, now: float) -> float | None:
        """A log call succeeded at ``now``: the log is up. Returns how long it was down, if so."""
        if self.down_since is None:
            return None
        down_for = now - self.down_since
        self.down_since = None
        self.outage_closed = False
        return down_for


@attrs.define(eq=False)
class Admission:
    """Whether a new handshake is admitted: refusal windows, stopping, the log, the rate.

    Args:
        limiter: The rate limiter, which also spreads the refused clients' returns.
        outage_retry_after: Least ``Retry-After`` while the log is down.
    """

    limiter: AdmissionControl
    outage_retry_after: float
    #: Until when every handshake is refused (a drain's ``refuse_for``, a stop).
    refuse_until: float = attrs.field(default=-math.inf, kw_only=True)
    #: Whether the node stops: it refuses for good.
    stopping: bool = attrs.field(default=False, kw_only=True)

    def refuse_for(self, now: float, seconds: float) -> None:
        """Refuse every handshake from ``now`` for ``seconds`` (a longer refusal stays)."""
        self.refuse_until = max(self.refuse_until, now + seconds)

    def stop(self, now: float, exit_within: float) -> None:
        """The node stops: refuse for good, pointing past ``exit_within`` seconds from ``now``."""
        self.stopping = True
        self.refuse_for(now, exit_within)

    def decide(self, now: float, *, log_down: bool) -> int | None:
        """``None`` to admit a handshake arriving at ``now``, else its ``Retry-After`` (seconds)."""
        if self.stopping or now < self.refuse_until:
            return self.limiter.refuse(now, max(now, self.refuse_until))
        if log_down:
            return self.limiter.refuse(now, now + self.outage_retry_after)
        return self.limiter.admit(now)
