"""The demos' one measure of how evenly clients came back: peak arrivals per 100 ms."""

from __future__ import annotations

from trio_reconnect._tools.demo._arrivals import ARRIVAL_BIN, peak_per_bin


def test_nothing_counted_is_a_peak_of_zero() -> None:
    assert peak_per_bin([], 5.0) == 0
    assert peak_per_bin([4.0, 4.99], 5.0) == 0  # before the start: ignored


def test_bins_are_counted_from_the_start() -> None:
    assert ARRIVAL_BIN == 0.1
    times = [1.0, 1.02, 1.08, 1.12, 1.33, 1.37, 0.99]
    assert peak_per_bin(times, 1.0) == 3  # [1.0, 1.1): 1.0, 1.02, 1.08
    assert peak_per_bin(times, 1.05) == 2  # [1.05, 1.15): 1.08, 1.12


def test_any_iterable_of_times() -> None:
    assert peak_per_bin((t / 100 for t in range(10)), 0.0) == 10
