"""The bench's pure steps: option checks, figures from the rounds, aligned columns."""

from __future__ import annotations

import pytest

from trio_reconnect._tools.bench._echo_clients import Rates, echo_payloads
from trio_reconnect._tools.bench._report import align
from trio_reconnect._tools.bench._run import (
    _check_options,
    _reconnect_figures,
    _throughput_figures,
)


def test_options_are_checked_by_the_shared_rules() -> None:
    _check_options(size=16, messages=1, rounds=3)
    with pytest.raises(ValueError, match="rounds must be a positive integer, got 0"):
        _check_options(size=16, messages=1, rounds=0)
    with pytest.raises(ValueError, match="messages must be a positive integer, got True"):
        _check_options(size=16, messages=True)
    with pytest.raises(ValueError, match="size must be an integer of at least 16, got 15"):
        _check_options(size=15, messages=1)


def test_payloads_are_distinct_and_of_the_size() -> None:
    payloads = echo_payloads(3, 16)
    assert len(set(payloads)) == 3
    assert all(len(p) == 16 for p in payloads)


def test_ratios_are_medians_of_the_per_round_ratios() -> None:
    ours = Rates(seq=[90.0, 100.0, 300.0], pipe=[10.0, 20.0, 30.0])
    ours.seq_cpu += [1e-6, 2e-6, 3e-6]
    ours.pipe_cpu += [1e-6, 1e-6, 1e-6]
    raw = Rates(seq=[100.0, 100.0, 100.0], pipe=[10.0, 10.0, 10.0])
    raw.seq_cpu += [1e-6, 1e-6, 1e-6]
    raw.pipe_cpu += [1e-6, 1e-6, 1e-6]
    figures = _throughput_figures({"ours": ours, "raw": raw})
    assert figures["seq_ratios"] == (0.9, 1.0, 3.0)
    assert figures["seq_ratio"] == 1.0
    assert figures["pipe_ratio"] == 2.0
    assert figures["ours_seq_rps"] == 100.0
    assert figures["ours_seq_cpu_us"] == pytest.approx(2.0)
    assert figures["websockets_seq_rps"] is None
    assert figures["websockets_pipe_ratio"] is None


def test_the_reconnect_ratio_is_of_the_medians() -> None:
    figures = _reconnect_figures(([0.001, 0.002, 0.009], [0.003, 0.004, 0.005], [0.002] * 3, 1))
    assert figures["reconnect_ratio"] == pytest.approx(1.0)
    assert figures["ours_reconnect_ms"] == pytest.approx(2.0)
    assert figures["ours_drop_to_ready_ms"] == pytest.approx(4.0)
    assert figures["reconnects_not_immediate"] == 1


def test_align_pads_left_then_right() -> None:
    assert align([("a", "1", "22"), ("bbb", "333", "4")]) == [
        "  a      1  22",
        "  bbb  333   4",
    ]
