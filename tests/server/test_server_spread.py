"""The spread planner and admission control: pure, exact numbers."""

from __future__ import annotations

import collections
import math
import random
from typing import Any

import pytest

from trio_reconnect.server import (
    DEFAULT_BASE,
    DEFAULT_MIN_WINDOW,
    DEFAULT_RATE,
    AdmissionControl,
    SpreadPolicy,
    distinct_milliseconds,
    plan_spread,
)


def test_policy_defaults() -> None:
    policy = SpreadPolicy()
    assert (policy.min_window, policy.rate, policy.base) == (2.0, 1_000.0, 0.25)
    assert (DEFAULT_MIN_WINDOW, DEFAULT_RATE, DEFAULT_BASE) == (2.0, 1_000.0, 0.25)
    assert policy.window(1) == 2.0
    assert policy.window(2_000) == 2.0
    assert policy.window(10_000) == 10.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_window", -1.0),
        ("min_window", math.inf),
        ("min_window", math.nan),
        ("rate", 0.0),
        ("rate", -5.0),
        ("rate", math.inf),
        ("base", -0.1),
        ("base", math.nan),
        ("base", True),
        ("rate", "1000"),
    ],
)
def test_policy_validation(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        SpreadPolicy(**{field: value})


def test_policy_is_frozen() -> None:
    policy = SpreadPolicy()
    with pytest.raises(AttributeError):
        policy.rate = 5.0  # type: ignore[misc]


def test_plan_follows_the_formula() -> None:
    policy = SpreadPolicy(min_window=2.0, rate=1_000.0, base=0.25)
    n = 8
    plan = plan_spread(n, policy, random.Random(7))
    # Replay the same draws: a shuffle of the slots, then one uniform per client.
    rng = random.Random(7)
    slots = list(range(n))
    rng.shuffle(slots)
    expected = [0.25 + (slot + rng.random()) * 2.0 / n for slot in slots]
    assert plan == expected


def test_plan_one_client_per_slot() -> None:
    policy = SpreadPolicy(min_window=2.0, rate=1_000.0, base=0.25)
    n = 500
    plan = plan_spread(n, policy, random.Random(1))
    width = 2.0 / n
    slots = sorted(math.floor((value - 0.25) / width) for value in plan)
    assert slots == list(range(n))
    assert all(0.25 <= value < 2.25 for value in plan)
    assert len(set(plan)) == n


def test_window_grows_with_n_over_rate() -> None:
    policy = SpreadPolicy(min_window=2.0, rate=100.0, base=0.0)
    plan = plan_spread(1_000, policy, random.Random(2))
    assert max(plan) < 10.0  # window = 1000 / 100
    assert max(plan) > 9.99
    # No 1-second bin receives more than `rate` clients.
    bins = collections.Counter(math.floor(value) for value in plan)
    assert max(bins.values()) == 100


def test_degenerate_case_is_the_seed_example() -> None:
    # 250 + random * 1750 ms: N = 1, base 0.25 s, window 1.75 s.
    policy = SpreadPolicy(min_window=1.75, rate=1_000.0, base=0.25)
    rng = random.Random(3)
    expected = 0.25 + random.Random(3).random() * 1.75
    # plan_spread(1, ...) shuffles a one-element list, which draws nothing.
    assert plan_spread(1, policy, rng) == [expected]


def test_plan_edge_cases() -> None:
    assert plan_spread(0, SpreadPolicy(), random.Random()) == []
    with pytest.raises(ValueError, match="n must be"):
        plan_spread(-1, SpreadPolicy(), random.Random())
    with pytest.raises(ValueError, match="n must be"):
        plan_spread(True, SpreadPolicy(), random.Random())
    zero = SpreadPolicy(min_window=0.0, rate=10.0, base=0.0)
    assert all(0.0 <= value < 0.1 for value in plan_spread(1, zero, random.Random()))


def test_stratified_beats_independent_draws() -> None:
    n, bins = 1_000, 20
    policy = SpreadPolicy(min_window=2.0, rate=1_000.0, base=0.0)
    plan = plan_spread(n, policy, random.Random(4))
    peak = max(collections.Counter(math.floor(v / (2.0 / bins)) for v in plan).values())
    assert peak == n // bins  # exactly even: bins are whole numbers of slots
    rng = random.Random(4)
    naive = [rng.random() * 2.0 for _ in range(n)]
    naive_peak = max(collections.Counter(math.floor(v / (2.0 / bins)) for v in naive).values())
    assert naive_peak > peak


# -- admission control -------------------------------------------------------


def test_admission_off_admits_everything() -> None:
    control = AdmissionControl(None)
    assert all(control.admit(0.0) is None for _ in range(10_000))


def test_admission_burst_then_spread_refusals() -> None:
    control = AdmissionControl(10.0)  # burst: one second's worth
    decisions = [control.admit(0.0) for _ in range(35)]
    assert decisions[:10] == [None] * 10
    # The excess is dealt out over the next seconds, `rate` per second.
    assert decisions[10:] == [1] * 10 + [2] * 10 + [3] * 5


def test_admission_refills_at_rate() -> None:
    control = AdmissionControl(10.0, burst=1)
    assert control.admit(0.0) is None
    assert control.admit(0.0) == 1
    assert control.admit(0.05) == 1
    assert control.admit(0.1) is None
    assert control.admit(0.2) is None
    # After a quiet spell the bucket holds at most `burst` tokens.
    assert control.admit(100.0) is None
    assert control.admit(100.0) is not None


def test_admission_refused_clients_find_room_when_they_return() -> None:
    control = AdmissionControl(10.0)
    refused = [r for r in (control.admit(0.0) for _ in range(30)) if r is not None]
    assert collections.Counter(refused) == {1: 10, 2: 10}
    # They come back at the second they were told, and are admitted.
    for second in (1, 2):
        back = [control.admit(float(second)) for r in refused if r == second]
        assert back == [None] * 10


def test_admission_retry_after_is_never_zero_and_rounds_up() -> None:
    control = AdmissionControl(1_000.0, burst=1)
    assert control.admit(5.0) is None
    # The next token is 1 ms away, but Retry-After has whole seconds.
    assert control.admit(5.0) == 1


def test_refusal_window_points_past_its_end() -> None:
    control = AdmissionControl(None, refusal_rate=2.0)
    # Refusing everyone until t=10: slots at 10, 10.5, 11, 11.5, 12 (2 per
    # second from the end of the refusal), each rounded up to whole seconds.
    assert [control.refuse(4.0, 10.0) for _ in range(5)] == [6, 7, 7, 8, 8]
    # Later refusals continue the schedule: the next slot is 12.5.
    assert control.refuse(5.0, 10.0) == 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.0},
        {"rate": -1.0},
        {"rate": math.inf},
        {"rate": 10.0, "burst": 0.5},
        {"rate": 10.0, "refusal_rate": 0.0},
    ],
)
def test_admission_validation(kwargs: dict[str, Any]) -> None:
    kwargs = dict(kwargs)  # the parameter is shared by every run of the test
    rate = kwargs.pop("rate")
    with pytest.raises(ValueError, match="must be"):
        AdmissionControl(rate, **kwargs)


def test_distinct_milliseconds() -> None:
    assert distinct_milliseconds([]) == []
    assert distinct_milliseconds([0.0194, 0.0196, 0.0204, 0.5]) == [0.019, 0.02, 0.021, 0.5]
    # Order is kept; collisions move up in increasing order of the input.
    assert distinct_milliseconds([0.0204, 0.0196]) == [0.021, 0.02]
    plan = plan_spread(2_000, SpreadPolicy(), random.Random(5))  # 1 ms slots
    rounded = distinct_milliseconds(plan)
    assert len(set(rounded)) == 2_000
    assert max(abs(a - b) for a, b in zip(plan, rounded, strict=True)) < 0.003
    assert all(
        round(value * 1000) == value * 1000 or abs(round(value * 1000) - value * 1000) < 1e-6
        for value in rounded
    )
