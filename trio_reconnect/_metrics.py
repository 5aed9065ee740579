"""Reconnect metrics: durations, percentiles and a health level. Pure.

A reconnect's duration runs from the moment a connection that was ``OPEN`` was
lost to the moment the next connection's ``ready`` arrived, backoff included.
That is what a user of the application feels.

Health is read off the median of the recent reconnects (a bounded window of
:data:`DEFAULT_WINDOW`), each counted *without the wait the server asked
for*: a ``retryAfter`` in a close frame or a ``Retry-After`` on a refused
handshake that the client honoured (:attr:`DelaySource.SERVER`). A restart
that tells its clients "come back in 1.5 s" and has them back 1.6 s later
went as planned; the 0.1 s beyond the plan is what the level judges. The full
durations stay in the statistics (``median_reconnect``, what a user feels),
and each one's server-requested part beside it (``recent_server_waits``).
When the server asks for no waits the two medians are the same.

=================  ==========================================
median             level
=================  ==========================================
under 1 s          :attr:`HealthLevel.HEALTHY`
1 s to 2 s         :attr:`HealthLevel.WATCH`
over 2 s           :attr:`HealthLevel.REGRESSION`
over 10 s          :attr:`HealthLevel.INCIDENT`
=================  ==========================================

With no reconnect in the window yet, the level is ``HEALTHY``. A level read
off fewer than :data:`MIN_HEALTH_SAMPLES` reconnects is one reconnect's story,
not a trend: ``health_samples`` says how many it was read off, and
:meth:`ReconnectStatistics.describe` says so in words.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Sequence
from typing import Final

import attrs

from ._protocol import HandshakeOutcome, HandshakeResult
from ._state import DelaySource
from ._validators import check_int

__all__ = [
    "DEFAULT_WINDOW",
    "HEALTHY_BELOW",
    "INCIDENT_ABOVE",
    "MIN_HEALTH_SAMPLES",
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
#: Fewest reconnects a health level is a trend of; from fewer, it is said to be.
MIN_HEALTH_SAMPLES: Final = 3


class HealthLevel(enum.Enum):
    """How healthy the recent reconnects are, from their median beyond the server's asked waits."""

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
        health: The level read off ``median_beyond_server_wait`` (the module
            docstring has the rule).
        fresh: Handshakes with outcome fresh: the client had no
            ``lastEventId`` and the server sent nothing before ``ready``.
        replayed: Handshakes with outcome replayed: the server sent events
            before ``ready`` (possibly none, when the client was up to date).
            A first connection counts here when the server gives a new client
            its history.
        replayed_events: Events received in replays, in total.
        snapshots: Handshakes that delivered a snapshot.
        lost: Handshakes that reported lost events.
        recent_server_waits: For each of ``recent_reconnects``, the seconds of
            it that were waits the server asked for (hints honoured).
        median_beyond_server_wait: Median of each recent reconnect's duration
            less its server-requested wait, seconds: the part nobody planned.
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
    recent_server_waits: tuple[float, ...] = ()
    median_beyond_server_wait: float | None = None

    @property
    def health_samples(self) -> int:
        """How many reconnects ``health`` is read off (under :data:`MIN_HEALTH_SAMPLES`: few)."""
        return len(self.recent_reconnects)

    def describe(self) -> str:
        """One line: the median reconnect, the server's share of it, and the level.

        For example ``median reconnect 1.62 s over 1 reconnect (1.50 s of it
        waits the server asked for): healthy, from 1 reconnect only``.
        """
        if self.median_reconnect is None:
            return "no reconnect yet: healthy"
        count = len(self.recent_reconnects)
        waited = percentile(self.recent_server_waits, 50) or 0.0
        line = f"median reconnect {self.median_reconnect:.2f} s over {_reconnects(count)}"
        if waited > 0:
            line += f" ({waited:.2f} s of it waits the server asked for)"
        line += f": {self.health.value}"
        if self.health_samples < MIN_HEALTH_SAMPLES:
            line += f", from {_reconnects(self.health_samples)} only"
        return line


def _reconnects(count: int) -> str:
    return f"{count} reconnect" + ("" if count == 1 else "s")


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
    _server_waits: collections.deque[float] = attrs.field(init=False)
    _waited: float = attrs.field(init=False, default=0.0)
    _outcomes: collections.Counter[HandshakeOutcome] = attrs.field(
        init=False, factory=collections.Counter
    )

    def __attrs_post_init__(self) -> None:
        check_int("window", self.window, minimum=1)
        self._durations = collections.deque(maxlen=self.window)
        self._server_waits = collections.deque(maxlen=self.window)

    def record_failure(self) -> None:
        """An attempt failed."""
        self.failed_attempts += 1

    def record_server_directed(self) -> None:
        """The server closed a ready connection with a planned close and a hint."""
        self.server_directed += 1

    def record_wait(self, delay: float, source: DelaySource) -> None:
        """The client waits ``delay`` seconds before its next attempt, because of ``source``.

        The waits the server asked for (:attr:`DelaySource.SERVER`) add up
        until the next ``ready``, and are that reconnect's server-requested part.
        """
        if source is DelaySource.SERVER:
            self._waited += delay

    def record_ready(self, lost_for: float | None, result: HandshakeResult | None) -> None:
        """A connection reached ``ready``.

        Args:
            lost_for: Seconds since the previous connection was lost, or
                ``None`` for the first connection.
            result: The handshake's result (``None`` with ``resume=False``).
        """
        self.connects += 1
        waited, self._waited = self._waited, 0.0
        if lost_for is not None:
            self.reconnects += 1
            self._durations.append(lost_for)
            self._server_waits.append(min(waited, lost_for))
        if result is not None:
            self._outcomes[result.outcome] += 1
            self.replayed_events += result.replayed

    def statistics(self) -> ReconnectStatistics:
        """A frozen snapshot."""
        durations = list(self._durations)
        median = percentile(durations, 50)
        waits = tuple(self._server_waits)
        beyond = percentile([d - w for d, w in zip(durations, waits, strict=True)], 50)
        return ReconnectStatistics(
            connects=self.connects,
            reconnects=self.reconnects,
            failed_attempts=self.failed_attempts,
            server_directed=self.server_directed,
            median_reconnect=median,
            p95_reconnect=percentile(durations, 95),
            max_reconnect=max(durations, default=None),
            recent_reconnects=tuple(durations),
            health=health_level(beyond),
            fresh=self._outcomes[HandshakeOutcome.FRESH],
            replayed=self._outcomes[HandshakeOutcome.REPLAYED],
            replayed_events=self.replayed_events,
            snapshots=self._outcomes[HandshakeOutcome.SNAPSHOT],
            lost=self._outcomes[HandshakeOutcome.LOST],
            recent_server_waits=waits,
            median_beyond_server_wait=beyond,
        )
