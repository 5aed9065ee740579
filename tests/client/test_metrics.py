"""Reconnect metrics (trio_reconnect/_metrics.py). Pure."""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_reconnect._metrics import (
    DEFAULT_WINDOW,
    HEALTHY_BELOW,
    INCIDENT_ABOVE,
    MIN_HEALTH_SAMPLES,
    REGRESSION_ABOVE,
    HealthLevel,
    MetricsRecorder,
    ReconnectStatistics,
    health_level,
    percentile,
)
from trio_reconnect._protocol import HandshakeOutcome, HandshakeResult
from trio_reconnect._state import DelaySource


def test_constants() -> None:
    assert HEALTHY_BELOW == 1.0
    assert REGRESSION_ABOVE == 2.0
    assert INCIDENT_ABOVE == 10.0
    assert DEFAULT_WINDOW == 256
    assert MIN_HEALTH_SAMPLES == 3


# --------------------------------------------------------------------------- percentile


@pytest.mark.parametrize("q", [0, 50, 95, 100])
def test_percentile_of_nothing_is_none(q: float) -> None:
    assert percentile([], q) is None
    assert percentile((), q) is None


@pytest.mark.parametrize("q", [0, 0.5, 25, 50, 95, 99.9, 100])
def test_percentile_of_one_value_is_that_value(q: float) -> None:
    assert percentile([3.25], q) == 3.25


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0, 0.0),
        (12.5, 2.0),
        (25, 4.0),
        (37.5, 6.0),
        (50, 8.0),
        (62.5, 10.0),
        (75, 12.0),
        (87.5, 14.0),
        (100, 16.0),
    ],
)
def test_percentile_linear_interpolation(q: float, expected: float) -> None:
    # Given unsorted on purpose: percentile sorts.
    assert percentile([16.0, 0.0, 8.0, 4.0, 12.0], q) == expected


def test_percentile_even_count_median_is_the_mean_of_the_middle_two() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0], 50) == 2.5


def test_percentile_p95_of_twenty_one_values() -> None:
    # rank = 20 * 0.95 = 19 exactly -> the 20th value.
    values = [float(n) for n in range(21)]
    assert percentile(values, 95) == 19.0
    assert percentile(values, 97.5) == 19.5


def test_percentile_p95_of_eleven_values() -> None:
    # rank = 10 * 95 / 100 = 9.5 -> halfway between 9 and 10.
    assert percentile([float(n) for n in range(11)], 95) == 9.5


def test_percentile_does_not_mutate_its_input() -> None:
    values = [3.0, 1.0, 2.0]
    assert percentile(values, 50) == 2.0
    assert values == [3.0, 1.0, 2.0]


def test_percentile_with_duplicates() -> None:
    assert percentile([5.0, 5.0, 5.0], 37) == 5.0
    assert percentile([1.0, 1.0, 3.0, 3.0], 50) == 2.0


@pytest.mark.parametrize("q", [-0.001, -1, 100.001, 101, 1e9, math.nan, math.inf, -math.inf])
def test_percentile_rejects_q_outside_0_100(q: float) -> None:
    with pytest.raises(ValueError, match="q must be within 0-100"):
        percentile([1.0, 2.0], q)


# Integer-valued floats keep ``high - low`` exact, so the bounds hold exactly.
@given(st.lists(st.integers(0, 10**6).map(float), min_size=1, max_size=50), st.floats(0, 100))
@settings(max_examples=200, deadline=None)
def test_percentile_is_within_min_and_max(values: list[float], q: float) -> None:
    result = percentile(values, q)
    assert result is not None
    assert min(values) <= result <= max(values)
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)


# --------------------------------------------------------------------------- health_level


@pytest.mark.parametrize(
    ("median", "level"),
    [
        (None, HealthLevel.HEALTHY),
        (0.0, HealthLevel.HEALTHY),
        (0.5, HealthLevel.HEALTHY),
        (0.999, HealthLevel.HEALTHY),
        (math.nextafter(1.0, 0.0), HealthLevel.HEALTHY),
        (1.0, HealthLevel.WATCH),
        (1.5, HealthLevel.WATCH),
        (2.0, HealthLevel.WATCH),
        (math.nextafter(2.0, 3.0), HealthLevel.REGRESSION),
        (2.001, HealthLevel.REGRESSION),
        (5.0, HealthLevel.REGRESSION),
        (10.0, HealthLevel.REGRESSION),
        (math.nextafter(10.0, 11.0), HealthLevel.INCIDENT),
        (10.001, HealthLevel.INCIDENT),
        (3600.0, HealthLevel.INCIDENT),
        (math.inf, HealthLevel.INCIDENT),
    ],
)
def test_health_level_boundaries(median: float | None, level: HealthLevel) -> None:
    assert health_level(median) is level


# --------------------------------------------------------------------------- MetricsRecorder


def result(outcome: HandshakeOutcome, replayed: int = 0) -> HandshakeResult:
    return HandshakeResult(outcome, replayed, None)


def test_empty_recorder_statistics() -> None:
    assert MetricsRecorder().statistics() == ReconnectStatistics(
        connects=0,
        reconnects=0,
        failed_attempts=0,
        server_directed=0,
        median_reconnect=None,
        p95_reconnect=None,
        max_reconnect=None,
        recent_reconnects=(),
        health=HealthLevel.HEALTHY,
        fresh=0,
        replayed=0,
        replayed_events=0,
        snapshots=0,
        lost=0,
    )


def test_recorder_counts_and_durations() -> None:
    metrics = MetricsRecorder()
    metrics.record_ready(None, result(HandshakeOutcome.FRESH))
    metrics.record_failure()
    metrics.record_failure()
    metrics.record_ready(0.5, result(HandshakeOutcome.REPLAYED, 3))
    metrics.record_ready(1.5, result(HandshakeOutcome.REPLAYED, 0))
    metrics.record_ready(2.5, result(HandshakeOutcome.SNAPSHOT, 2))
    metrics.record_failure()
    metrics.record_server_directed()
    metrics.record_ready(12.5, result(HandshakeOutcome.LOST))
    metrics.record_ready(3.5, None)  # resume=False: no handshake result
    stats = metrics.statistics()
    assert stats == ReconnectStatistics(
        connects=6,
        reconnects=5,
        failed_attempts=3,
        server_directed=1,
        median_reconnect=2.5,
        p95_reconnect=percentile([0.5, 1.5, 2.5, 3.5, 12.5], 95),
        max_reconnect=12.5,
        recent_reconnects=(0.5, 1.5, 2.5, 12.5, 3.5),
        health=HealthLevel.REGRESSION,
        fresh=1,
        replayed=2,
        replayed_events=5,
        snapshots=1,
        lost=1,
        recent_server_waits=(0.0, 0.0, 0.0, 0.0, 0.0),
        median_beyond_server_wait=2.5,
    )
    # rank 4 * 0.95 = 3.8 -> 3.5 + 9 * 0.8 (within float rounding of 10.7).
    assert stats.p95_reconnect == pytest.approx(10.7, rel=1e-12)


def test_first_connection_is_not_a_reconnect() -> None:
    metrics = MetricsRecorder()
    metrics.record_ready(None, None)
    stats = metrics.statistics()
    assert (stats.connects, stats.reconnects, stats.median_reconnect) == (1, 0, None)
    assert stats.health is HealthLevel.HEALTHY


def test_zero_duration_is_recorded() -> None:
    metrics = MetricsRecorder()
    metrics.record_ready(0.0, None)
    stats = metrics.statistics()
    assert (stats.reconnects, stats.median_reconnect, stats.max_reconnect) == (1, 0.0, 0.0)


def test_window_bounds_the_durations_but_not_the_counts() -> None:
    metrics = MetricsRecorder(window=3)
    for duration in (100.0, 50.0, 0.1, 0.2, 0.3):
        metrics.record_ready(duration, result(HandshakeOutcome.REPLAYED, 1))
    stats = metrics.statistics()
    # Only 0.1, 0.2, 0.3 remain: the slow ones fell out of the window.
    assert stats.median_reconnect == 0.2
    assert stats.max_reconnect == 0.3
    assert stats.recent_reconnects == (0.1, 0.2, 0.3)
    assert stats.health is HealthLevel.HEALTHY
    assert stats.reconnects == 5
    assert stats.connects == 5
    assert stats.replayed == 5
    assert stats.replayed_events == 5


def test_default_window_holds_256_durations() -> None:
    metrics = MetricsRecorder()
    metrics.record_ready(1000.0, None)
    for _ in range(DEFAULT_WINDOW - 1):
        metrics.record_ready(0.5, None)
    assert metrics.statistics().max_reconnect == 1000.0
    metrics.record_ready(0.5, None)
    assert metrics.statistics().max_reconnect == 0.5
    assert metrics.statistics().reconnects == DEFAULT_WINDOW + 1


def test_health_follows_the_median() -> None:
    metrics = MetricsRecorder(window=4)
    for duration in (1.0, 2.0):
        metrics.record_ready(duration, None)
    assert metrics.statistics().median_reconnect == 1.5
    assert metrics.statistics().health is HealthLevel.WATCH
    for duration in (20.0, 30.0):
        metrics.record_ready(duration, None)
    assert metrics.statistics().median_reconnect == 11.0
    assert metrics.statistics().health is HealthLevel.INCIDENT


@pytest.mark.parametrize(
    ("outcome", "field"),
    [
        (HandshakeOutcome.FRESH, "fresh"),
        (HandshakeOutcome.REPLAYED, "replayed"),
        (HandshakeOutcome.SNAPSHOT, "snapshots"),
        (HandshakeOutcome.LOST, "lost"),
    ],
)
def test_each_outcome_is_counted_in_its_own_field(outcome: HandshakeOutcome, field: str) -> None:
    metrics = MetricsRecorder()
    for _ in range(3):
        metrics.record_ready(None, result(outcome, 2))
    counts = attrs.asdict(metrics.statistics())
    for name in ("fresh", "replayed", "snapshots", "lost"):
        assert counts[name] == (3 if name == field else 0)
    # replayed_events counts events whatever the outcome.
    assert counts["replayed_events"] == 6


def test_replayed_events_total() -> None:
    metrics = MetricsRecorder(window=1)
    for n in (0, 7, 1024, 1):
        metrics.record_ready(1.0, result(HandshakeOutcome.REPLAYED, n))
    assert metrics.statistics().replayed_events == 1032
    assert metrics.replayed_events == 1032


@pytest.mark.parametrize("window", [0, -1])
def test_window_validation(window: int) -> None:
    with pytest.raises(ValueError, match="window must be a positive integer"):
        MetricsRecorder(window=window)


def test_statistics_is_a_frozen_snapshot() -> None:
    metrics = MetricsRecorder()
    before = metrics.statistics()
    metrics.record_failure()
    assert before.failed_attempts == 0
    assert metrics.statistics().failed_attempts == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        before.connects = 5  # type: ignore[misc]


# ------------------------------------------------------- the server's share of a reconnect


def test_a_wait_the_server_asked_for_is_not_held_against_the_health() -> None:
    # A restart: the server said "come back in 1.5 s", then was down a little
    # longer (two backoff waits of the client's own), then ready at 2.3 s.
    metrics = MetricsRecorder()
    metrics.record_ready(None, result(HandshakeOutcome.FRESH))
    metrics.record_wait(1.5, DelaySource.SERVER)
    metrics.record_wait(0.1, DelaySource.BACKOFF)
    metrics.record_wait(0.2, DelaySource.BACKOFF)
    metrics.record_ready(2.3, result(HandshakeOutcome.REPLAYED, 2))
    stats = metrics.statistics()
    assert stats.median_reconnect == 2.3  # what the user felt, whole
    assert stats.recent_server_waits == (1.5,)
    assert stats.median_beyond_server_wait == pytest.approx(0.8)
    assert stats.health is HealthLevel.HEALTHY  # not REGRESSION: 0.8 s beyond the plan
    assert stats.health_samples == 1
    assert stats.describe() == (
        "median reconnect 2.30 s over 1 reconnect (1.50 s of it waits the server asked for): "
        "healthy, from 1 reconnect only"
    )


def test_without_server_waits_the_level_is_the_median_s() -> None:
    metrics = MetricsRecorder()
    for duration in (2.5, 2.6, 2.7):
        metrics.record_wait(duration, DelaySource.BACKOFF)
        metrics.record_wait(9.0, DelaySource.SERVER_FLOORED)  # the client's floor, not asked
        metrics.record_ready(duration, None)
    stats = metrics.statistics()
    assert stats.median_beyond_server_wait == stats.median_reconnect == 2.6
    assert stats.health is HealthLevel.REGRESSION
    assert stats.describe() == "median reconnect 2.60 s over 3 reconnects: regression"


def test_server_waits_before_the_first_connection_are_no_reconnect_s() -> None:
    metrics = MetricsRecorder()
    metrics.record_wait(5.0, DelaySource.SERVER)  # a refused first handshake, Retry-After 5
    metrics.record_ready(None, None)
    metrics.record_wait(0.5, DelaySource.SERVER)
    metrics.record_ready(0.7, None)
    stats = metrics.statistics()
    assert stats.recent_server_waits == (0.5,)
    assert stats.describe().startswith("median reconnect 0.70 s over 1 reconnect (0.50 s")


def test_a_server_wait_is_never_more_than_its_reconnect() -> None:
    # reconnect_now() cut the planned wait short.
    metrics = MetricsRecorder()
    metrics.record_wait(3.0, DelaySource.SERVER)
    metrics.record_ready(0.4, None)
    stats = metrics.statistics()
    assert stats.recent_server_waits == (0.4,)
    assert stats.median_beyond_server_wait == 0.0


def test_no_reconnect_describes_itself() -> None:
    assert MetricsRecorder().statistics().describe() == "no reconnect yet: healthy"
