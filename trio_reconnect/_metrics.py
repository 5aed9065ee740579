"""Reconnect metrics: durations, percentiles and a health level. Pure.

A reconnect's duration runs from the moment a connection that was ``OPEN`` was
lost to the moment the next connection's ``ready`` arrived, backoff included.
That is what a user of the application feels.

Health is read off the median of the recent durations (a bounded window of
:data:`DEFAULT_WINDOW` reconnects):

=================  ==========================================
median             level
=================  ==========================================
under 1 s          :attr:`HealthLevel.HEALTHY`
1 s to 2 s         :attr:`HealthLevel.WATCH`
over 2 s           :attr:`HealthLevel.REGRESSION`
over 10 s          :attr:`HealthLevel.INCIDENT`
=================  ==========================================

With no reconnect in the window yet, the level is ``HEALTHY``.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Sequence
from typing import Final

import attrs

from ._protocol import HandshakeOutcome, HandshakeResult

__all__ = [
    "DEFAULT_WINDOW",
    "HEALTHY_BELOW",
    "INCIDENT_ABOVE",
    "REGRESSION_ABOVE",
    "HealthLevel",
    "MetricsRecorder",
    "ReconnectStatistics",
    "health_level",
    "percentile",
]

#: A median reconnect under this many seconds is healthy.
HEALTHY_BELOW: Final = 1.0
#: A median over this many seconds is a regression.
REGRESSION_ABOVE: Final = 2.0
#: A median over this many seconds is an incident.
INCIDENT_ABOVE: Final = 10.0
#: How many recent reconnect durations the statistics are computed over.
DEFAULT_WINDOW: Final = 256


class HealthLevel(enum.Enum):
    """How healthy the recent reconnects are, from their median duration."""

    HEALTHY = "healthy"
    WATCH = "watch"
    REGRESSION = "regression"
    INCIDENT = "incident"


def health_level(median: float | None) -> HealthLevel:
    """The health level for a median reconnect duration (``None``: no data)."""
    if median is None or math.isnan(median) or median < HEALTHY_BELOW:
        return HealthLevel.HEALTHY
    if median > INCIDENT_ABOVE:
        return HealthLevel.INCIDENT
    if median > REGRESSION_ABOVE:
        return HealthLevel.REGRESSION
    return HealthLevel.WATCH


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-quantile (0-1): the smallest value with ``q`` of them at or below.

    Always one of ``values`` (the herd simulator reports such figures);
    ``None`` if empty. :func:`percentile` interpolates instead.
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation, ``None`` if empty."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0-100, got {q!r}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@attrs.frozen
class ReconnectStatistics:
    """A snapshot of one client's connection metrics.

    Attributes:
        connects: Connections that reached ``ready`` (the first one included).
        reconnects: Connections that reached ``ready`` after a lost one.
        failed_attempts: Attempts that failed, over the client's lifetime: a
            connection that did not reach ``ready``, or was lost before it
            had been up ``stable_after`` seconds, other than by a
            server-directed close.
        server_directed: Connections that reached ``ready`` and that the
            server then closed on purpose, with a planned close code (1001,
            1012, 1013) and a ``retryAfter`` hint: a restart or a drain, not
            a failure.
        median_reconnect: Median reconnect duration over the window, seconds.
        p95_reconnect: 95th percentile over the window, seconds.
        max_reconnect: Longest reconnect in the window, seconds.
        recent_reconnects: The durations in the window, oldest first, seconds
            (what a histogram of the recent reconnects is drawn from).
        health: The level read off ``median_reconnect``.
        fresh: Handshakes with outcome fresh.
        replayed: Handshakes with outcome replayed.
        replayed_events: Events received in replays, in total.
        snapshots: Handshakes that delivered a snapshot.
        lost: Handshakes that reported lost events.
    """

    connects: int
    reconnects: int
    failed_attempts: int
    server_directed: int
    median_reconnect: float | None
    p95_reconnect: float | None
    max_reconnect: float | None
    recent_reconnects: tuple[float, ...]
    health: HealthLevel
    fresh: int
    replayed: int
    replayed_events: int
    snapshots: int
    lost: int


@attrs.define(eq=False)
class MetricsRecorder:
    """Accumulates what :class:`ReconnectStatistics` reports.

    Args:
        window: How many recent durations to keep.
    """

    window: int = DEFAULT_WINDOW
    connects: int = 0
    reconnects: int = 0
    failed_attempts: int = 0
    server_directed: int = 0
    replayed_events: int = 0
    _durations: collections.deque[float] = attrs.field(init=False)
    _outcomes: collections.Counter[HandshakeOutcome] = attrs.field(
        init=False, factory=collections.Counter
    )

    def __attrs_post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be at least 1, got {self.window!r}")
        self._durations = collections.deque(maxlen=self.window)

    def record_failure(self) -> None:
        """An attempt failed."""
        self.failed_attempts += 1

    def record_server_directed(self) -> None:
        """The server closed a ready connection with a planned close and a hint."""
        self.server_directed += 1

    def record_ready(self, lost_for: float | None, result: HandshakeResult | None) -> None:
        """A connection reached ``ready``.

        Args:
            lost_for: Seconds since the previous connection was lost, or
                ``None`` for the first connection.
            result: The handshake's result (``None`` with ``resume=False``).
        """
        self.connects += 1
        if lost_for is not None:
            self.reconnects += 1
            self._durations.append(lost_for)
        if result is not None:
            self._outcomes[result.outcome] += 1
            self.replayed_events += result.replayed

    def statistics(self) -> ReconnectStatistics:
        """A frozen snapshot."""
        durations = list(self._durations)
        median = percentile(durations, 50)
        return ReconnectStatistics(
            connects=self.connects,
            reconnects=self.reconnects,
            failed_attempts=self.failed_attempts,
            server_directed=self.server_directed,
            median_reconnect=median,
            p95_reconnect=percentile(durations, 95),
            max_reconnect=max(durations, default=None),
            recent_reconnects=tuple(durations),
            health=health_level(median),
            fresh=self._outcomes[HandshakeOutcome.FRESH],
            replayed=self._outcomes[HandshakeOutcome.REPLAYED],
            replayed_events=self.replayed_events,
            snapshots=self._outcomes[HandshakeOutcome.SNAPSHOT],
            lost=self._outcomes[HandshakeOutcome.LOST],
        )
