"""The bench's pure steps: option checks, figures from the rounds, aligned columns."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable

import pytest
import trio
from trio.testing import MockClock

from trio_reconnect._tools.bench._echo_clients import Rates, echo_payloads
from trio_reconnect._tools.bench._publish import measure_rounds
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


async def test_publish_bursts_start_collected_and_rotate(autojump_clock: MockClock) -> None:
    """Every burst starts from a full collection, so an acked burst (which
    allocates) does not pay for collecting what the process held before."""
    started: list[tuple[str, int]] = []
    gc.collect()
    garbage: list[object] = []

    def burst(kind: str) -> Callable[[], Awaitable[float]]:
        async def run() -> float:
            started.append((kind, gc.get_count()[0]))
            garbage.extend([[n] for n in range(2000)])  # survivors: the count grows
            await trio.sleep(0.1)
            return 10.0 if kind == "plain" else 5.0

        return run

    with trio.fail_after(60):
        rates = await measure_rounds({"plain": burst("plain"), "redis": burst("redis")}, 3)
    assert rates == {"plain": [10.0] * 3, "redis": [5.0] * 3}
    warm_up, odd, even, third = (
        ["redis", "plain"],
        ["plain", "redis"],
        ["redis", "plain"],
        ["plain", "redis"],
    )
    assert [kind for kind, _ in started] == [*warm_up, *odd, *even, *third]
    assert all(count < 100 for _, count in started), started
