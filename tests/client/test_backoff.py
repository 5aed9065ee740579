"""The backoff policy and the pacer (trio_reconnect/_backoff.py). Pure: no trio.

Every expected delay is computed independently from a second ``random.Random``
with the same seed, so the tests pin the exact formula of each jitter strategy
and the exact number of draws the code makes.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from trio_reconnect._backoff import (
    DEFAULT_FACTOR,
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_DELAY,
    SHORT_HINT_LIMIT,
    Backoff,
    Jitter,
    Pacer,
)
from trio_reconnect._state import DelaySource

SEED = 20240611


class LowRandom(random.Random):
    """A Random whose ``uniform`` always returns its lower bound."""

    def uniform(self, a: float, b: float) -> float:
        return a


class HighRandom(random.Random):
    """A Random whose ``uniform`` always returns its upper bound."""

    def uniform(self, a: float, b: float) -> float:
        return b


# --------------------------------------------------------------------------- Backoff


def test_defaults_are_the_named_constants() -> None:
    policy = Backoff()
    assert DEFAULT_INITIAL_DELAY == 1.0
    assert DEFAULT_FACTOR == 2.0
    assert DEFAULT_MAX_DELAY == 30.0
    assert SHORT_HINT_LIMIT == 3
    assert policy.initial == 1.0
    assert policy.factor == 2.0
    assert policy.max_delay == 30.0
    assert policy.jitter is Jitter.FULL


def test_default_cap_sequence() -> None:
    policy = Backoff()
    assert [policy.cap(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_cap_with_custom_parameters() -> None:
    policy = Backoff(initial=0.5, factor=3.0, max_delay=10.0)
    assert [policy.cap(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_factor_one_is_constant() -> None:
    policy = Backoff(initial=2.5, factor=1.0, max_delay=2.5, jitter=Jitter.NONE)
    assert [policy.cap(n) for n in (1, 2, 100, 10**9)] == [2.5, 2.5, 2.5, 2.5]
    assert policy.delay(10**9, random.Random(SEED)) == 2.5


def test_jitter_none_is_exactly_the_cap() -> None:
    policy = Backoff(jitter=Jitter.NONE)
    rng = random.Random(SEED)
    state = rng.getstate()
    assert [policy.delay(n, rng) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert rng.getstate() == state, "Jitter.NONE must not draw from the rng"


def test_full_jitter_exact_values() -> None:
    policy = Backoff(jitter=Jitter.FULL)
    rng = random.Random(SEED)
    rng2 = random.Random(SEED)
    caps = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    delays = [policy.delay(n, rng) for n in range(1, len(caps) + 1)]
    assert delays == [rng2.uniform(0, cap) for cap in caps]
    for delay, cap in zip(delays, caps, strict=True):
        assert 0.0 <= delay <= cap


def test_equal_jitter_exact_values() -> None:
    policy = Backoff(jitter=Jitter.EQUAL)
    rng = random.Random(SEED)
    rng2 = random.Random(SEED)
    caps = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    delays = [policy.delay(n, rng) for n in range(1, len(caps) + 1)]
    assert delays == [cap / 2 + rng2.uniform(0, cap / 2) for cap in caps]
    for delay, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= delay <= cap


def test_decorrelated_jitter_exact_values() -> None:
    policy = Backoff(initial=1.0, max_delay=30.0, jitter=Jitter.DECORRELATED)
    rng = random.Random(SEED)
    rng2 = random.Random(SEED)
    previous: float | None = None
    expected_previous: float | None = None
    for n in range(1, 15):
        delay = policy.delay(n, rng, previous)
        last = 1.0 if expected_previous is None else max(expected_previous, 1.0)
        expected = min(30.0, rng2.uniform(1.0, 3 * last))
        assert delay == expected
        assert 1.0 <= delay <= 30.0
        previous = expected_previous = delay


def test_decorrelated_first_delay_is_between_initial_and_three_initial() -> None:
    policy = Backoff(initial=2.0, max_delay=100.0, jitter=Jitter.DECORRELATED)
    assert policy.delay(1, LowRandom(0)) == 2.0
    assert policy.delay(1, HighRandom(0)) == 6.0
    rng2 = random.Random(SEED)
    assert policy.delay(1, random.Random(SEED)) == rng2.uniform(2.0, 6.0)


def test_decorrelated_is_capped_and_floors_previous_at_initial() -> None:
    policy = Backoff(initial=1.0, max_delay=30.0, jitter=Jitter.DECORRELATED)
    # previous = 25 -> uniform(1, 75) -> the high end is capped at 30.
    assert policy.delay(5, HighRandom(0), previous=25.0) == 30.0
    assert policy.delay(5, HighRandom(0), previous=8.0) == 24.0
    # A previous delay shorter than initial (e.g. a server hint of 0) counts as initial.
    assert policy.delay(5, HighRandom(0), previous=0.0) == 3.0
    assert policy.delay(5, LowRandom(0), previous=25.0) == 1.0


def test_full_jitter_is_applied_after_the_cap() -> None:
    # Clients that have all reached the cap must not come back in lockstep: every
    # capped delay is a fresh uniform(0, 30) draw, so they all differ.
    policy = Backoff(jitter=Jitter.FULL)
    rng = random.Random(SEED)
    rng2 = random.Random(SEED)
    for n in range(1, 6):
        policy.delay(n, rng)
        rng2.uniform(0, policy.cap(n))
    capped = [policy.delay(n, rng) for n in range(6, 26)]
    assert capped == [rng2.uniform(0, 30.0) for _ in range(6, 26)]
    assert len(set(capped)) == len(capped)
    assert all(0.0 <= d < 30.0 for d in capped)
    assert 30.0 not in capped


def test_equal_jitter_is_applied_after_the_cap() -> None:
    policy = Backoff(jitter=Jitter.EQUAL)
    rng = random.Random(SEED)
    capped = [policy.delay(n, rng) for n in range(6, 26)]
    assert len(set(capped)) == len(capped)
    assert all(15.0 <= d <= 30.0 for d in capped)


@pytest.mark.parametrize("retry", [1024, 1025, 2000, 10**6, 10**18])
def test_cap_overflow_at_huge_retry_numbers(retry: int) -> None:
    policy = Backoff()
    assert policy.cap(retry) == 30.0
    assert policy.delay(retry, LowRandom(0)) == 0.0
    assert policy.delay(retry, HighRandom(0)) == 30.0
    rng2 = random.Random(SEED)
    assert policy.delay(retry, random.Random(SEED)) == rng2.uniform(0, 30.0)


def test_cap_when_product_overflows_to_inf_without_overflow_error() -> None:
    # factor ** n is finite, but initial * factor ** n is inf: still capped.
    policy = Backoff(initial=1e300, factor=1e10, max_delay=1e308, jitter=Jitter.NONE)
    assert policy.cap(1) == 1e300
    assert policy.cap(3) == 1e308
    assert policy.cap(10**6) == 1e308


@pytest.mark.parametrize("jitter", list(Jitter))
@pytest.mark.parametrize("retry", [0, -1, -(10**9)])
def test_retry_numbers_start_at_one(jitter: Jitter, retry: int) -> None:
    policy = Backoff(jitter=jitter)
    with pytest.raises(ValueError, match="retry numbers start at 1"):
        policy.cap(retry)
    with pytest.raises(ValueError, match="retry numbers start at 1"):
        policy.delay(retry, random.Random(SEED))


@pytest.mark.parametrize("name", ["initial", "factor", "max_delay"])
@pytest.mark.parametrize("value", [0, 0.0, -1.0, -0.0, math.nan, math.inf, -math.inf, "1", None])
def test_rejects_non_positive_or_non_finite(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a positive finite number"):
        Backoff(**{name: value})


@pytest.mark.parametrize("factor", [0.5, 0.999])
def test_rejects_factor_below_one(factor: float) -> None:
    with pytest.raises(ValueError, match="factor must be at least 1"):
        Backoff(factor=factor)


def test_rejects_max_delay_below_initial() -> None:
    with pytest.raises(ValueError, match=r"max_delay \(4\.0\) must be at least initial \(5\.0\)"):
        Backoff(initial=5.0, max_delay=4.0)
    # Equal is fine.
    assert Backoff(initial=5.0, max_delay=5.0).cap(3) == 5.0


@pytest.mark.parametrize("jitter", ["full", None, 1, "Jitter.FULL"])
def test_rejects_wrong_jitter_type(jitter: Any) -> None:
    with pytest.raises(TypeError):
        Backoff(jitter=jitter)


def test_backoff_is_a_frozen_value() -> None:
    policy = Backoff()
    assert policy == Backoff(initial=1.0, factor=2.0, max_delay=30.0, jitter=Jitter.FULL)
    assert hash(policy) == hash(Backoff())
    with pytest.raises(AttributeError):
        policy.initial = 2.0  # type: ignore[misc]


# --------------------------------------------------------------------------- Pacer


def make_pacer(
    jitter: Jitter = Jitter.NONE, *, rng: random.Random | None = None, max_server: float = 300.0
) -> Pacer:
    return Pacer(
        Backoff(jitter=jitter),
        random.Random(SEED) if rng is None else rng,
        max_server_delay=max_server,
    )


def test_pacer_without_hints_follows_the_backoff() -> None:
    pacer = make_pacer(Jitter.NONE)
    waits = [pacer.next_delay(failed=True, hint=None) for _ in range(7)]
    assert waits == [(d, DelaySource.BACKOFF) for d in (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0)]
    assert pacer.retry == 7
    assert pacer.short_hints == 0


def test_pacer_full_jitter_exact_values() -> None:
    pacer = make_pacer(Jitter.FULL)
    rng2 = random.Random(SEED)
    for cap in (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0):
        assert pacer.next_delay(failed=True, hint=None) == (
            rng2.uniform(0, cap),
            DelaySource.BACKOFF,
        )


def test_pacer_decorrelated_uses_its_previous_wait() -> None:
    pacer = Pacer(Backoff(jitter=Jitter.DECORRELATED), random.Random(SEED), 300.0)
    rng2 = random.Random(SEED)
    previous = 1.0
    for _ in range(10):
        expected = min(30.0, rng2.uniform(1.0, 3 * max(previous, 1.0)))
        assert pacer.next_delay(failed=True, hint=None) == (expected, DelaySource.BACKOFF)
        previous = expected
    # A hint becomes the "previous" wait of the next decorrelated draw.
    rng2.uniform(1.0, 3 * max(previous, 1.0))  # the draw made under the hint
    assert pacer.next_delay(failed=True, hint=12.0) == (12.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=None) == (
        min(30.0, rng2.uniform(1.0, 36.0)),
        DelaySource.BACKOFF,
    )


@pytest.mark.parametrize("hint", [0.0, 0.25, 1.0, 1.375, 7.0, 299.999, 300.0])
def test_a_hint_is_used_exactly(hint: float) -> None:
    pacer = make_pacer(Jitter.FULL)
    assert pacer.next_delay(failed=True, hint=hint) == (hint, DelaySource.SERVER)


@pytest.mark.parametrize("hint", [300.001, 1e9, 1e308, math.inf])
def test_a_hint_is_clamped_to_max_server_delay(hint: float) -> None:
    pacer = make_pacer(Jitter.FULL)
    assert pacer.next_delay(failed=True, hint=hint) == (300.0, DelaySource.SERVER)
    pacer = make_pacer(Jitter.FULL, max_server=12.5)
    assert pacer.next_delay(failed=True, hint=hint) == (12.5, DelaySource.SERVER)


@pytest.mark.parametrize("hint", [-0.001, -1.0, -1e9, -math.inf])
def test_a_negative_hint_is_clamped_to_zero(hint: float) -> None:
    pacer = make_pacer(Jitter.NONE)
    assert pacer.next_delay(failed=False, hint=hint) == (0.0, DelaySource.SERVER)


def test_a_hint_applies_to_one_wait_and_the_counter_keeps_going() -> None:
    pacer = make_pacer(Jitter.NONE)
    assert pacer.next_delay(failed=True, hint=None) == (1.0, DelaySource.BACKOFF)
    assert pacer.next_delay(failed=True, hint=120.0) == (120.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=5.0) == (5.0, DelaySource.SERVER)
    assert pacer.retry == 3
    # The counter went on underneath the hints: retry 4 -> cap 8.
    assert pacer.next_delay(failed=True, hint=None) == (8.0, DelaySource.BACKOFF)
    assert pacer.retry == 4


def test_the_rng_is_drawn_even_under_a_hint() -> None:
    # The backoff is computed for every wait (it is the floor of a short hint),
    # so one draw per wait, hint or not.
    pacer = make_pacer(Jitter.FULL)
    rng2 = random.Random(SEED)
    assert pacer.next_delay(failed=True, hint=50.0) == (50.0, DelaySource.SERVER)
    rng2.uniform(0, 1.0)
    assert pacer.next_delay(failed=True, hint=None) == (rng2.uniform(0, 2.0), DelaySource.BACKOFF)


def test_anti_hammer_zero_hints_get_two_immediate_retries_then_backoff() -> None:
    pacer = make_pacer(Jitter.NONE)
    waits = [pacer.next_delay(failed=True, hint=0.0) for _ in range(6)]
    assert waits == [
        (0.0, DelaySource.SERVER),
        (0.0, DelaySource.SERVER),
        (4.0, DelaySource.SERVER_FLOORED),
        (8.0, DelaySource.SERVER_FLOORED),
        (16.0, DelaySource.SERVER_FLOORED),
        (30.0, DelaySource.SERVER_FLOORED),
    ]
    assert pacer.short_hints == 6
    assert pacer.retry == 6


def test_anti_hammer_with_full_jitter_exact_values() -> None:
    pacer = make_pacer(Jitter.FULL)
    rng2 = random.Random(SEED)
    hint = 0.001
    for n, cap in enumerate((1.0, 2.0, 4.0, 8.0, 16.0, 30.0), start=1):
        backoff = rng2.uniform(0, cap)
        delay, source = pacer.next_delay(failed=True, hint=hint)
        if n < SHORT_HINT_LIMIT:
            assert (delay, source) == (hint, DelaySource.SERVER)
        else:
            assert delay == max(hint, backoff)
            assert source is (DelaySource.SERVER_FLOORED if backoff > hint else DelaySource.SERVER)


def test_anti_hammer_when_the_hint_is_already_the_longer() -> None:
    # From the 3rd short hint on the wait is max(hint, backoff). When the
    # jittered backoff is shorter than the hint, that max is the hint itself.
    pacer = make_pacer(Jitter.FULL, rng=LowRandom(0))  # FULL backoff is then 0.0
    for _ in range(5):
        assert pacer.next_delay(failed=True, hint=0.5) == (0.5, DelaySource.SERVER)
    assert pacer.short_hints == 5


def test_anti_hammer_negative_hints_count_as_zero() -> None:
    pacer = make_pacer(Jitter.NONE)
    assert [pacer.next_delay(failed=True, hint=-5.0) for _ in range(3)] == [
        (0.0, DelaySource.SERVER),
        (0.0, DelaySource.SERVER),
        (4.0, DelaySource.SERVER_FLOORED),
    ]


def test_a_hint_equal_to_initial_is_not_short() -> None:
    pacer = make_pacer(Jitter.NONE)
    assert pacer.next_delay(failed=True, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=0.999) == (0.999, DelaySource.SERVER)
    assert pacer.short_hints == 2
    assert pacer.next_delay(failed=True, hint=1.0) == (1.0, DelaySource.SERVER)
    assert pacer.short_hints == 0


def test_short_hint_is_compared_with_the_policy_initial() -> None:
    pacer = Pacer(Backoff(initial=5.0, max_delay=60.0, jitter=Jitter.NONE), random.Random(0), 300)
    assert [pacer.next_delay(failed=True, hint=4.0) for _ in range(4)] == [
        (4.0, DelaySource.SERVER),
        (4.0, DelaySource.SERVER),
        (20.0, DelaySource.SERVER_FLOORED),
        (40.0, DelaySource.SERVER_FLOORED),
    ]


def test_streak_reset_by_a_long_hint() -> None:
    pacer = make_pacer(Jitter.NONE)
    pacer.next_delay(failed=True, hint=0.0)
    pacer.next_delay(failed=True, hint=0.0)
    assert pacer.short_hints == 2
    assert pacer.next_delay(failed=True, hint=2.0) == (2.0, DelaySource.SERVER)
    assert pacer.short_hints == 0
    # The streak starts over: two more short hints are honoured.
    assert pacer.next_delay(failed=True, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=0.0) == (30.0, DelaySource.SERVER_FLOORED)


def test_streak_reset_by_a_clamped_huge_hint() -> None:
    pacer = make_pacer(Jitter.NONE)
    pacer.next_delay(failed=True, hint=0.0)
    pacer.next_delay(failed=True, hint=0.0)
    assert pacer.next_delay(failed=True, hint=math.inf) == (300.0, DelaySource.SERVER)
    assert pacer.short_hints == 0


def test_streak_reset_by_no_hint() -> None:
    pacer = make_pacer(Jitter.NONE)
    pacer.next_delay(failed=True, hint=0.0)
    pacer.next_delay(failed=True, hint=0.0)
    assert pacer.next_delay(failed=True, hint=None) == (4.0, DelaySource.BACKOFF)
    assert pacer.short_hints == 0
    assert pacer.next_delay(failed=True, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=0.0) == (30.0, DelaySource.SERVER_FLOORED)


def test_streak_reset_by_a_stable_drop() -> None:
    pacer = make_pacer(Jitter.NONE)
    pacer.next_delay(failed=True, hint=0.0)
    pacer.next_delay(failed=True, hint=0.0)
    # A stable connection dropped with a short hint: not a failed attempt.
    assert pacer.next_delay(failed=False, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.short_hints == 0
    assert pacer.retry == 3
    assert pacer.next_delay(failed=True, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.next_delay(failed=True, hint=0.0) == (30.0, DelaySource.SERVER_FLOORED)


def test_non_failed_drops_never_trigger_the_floor() -> None:
    pacer = make_pacer(Jitter.NONE)
    for _ in range(10):
        assert pacer.next_delay(failed=False, hint=0.0) == (0.0, DelaySource.SERVER)
    assert pacer.short_hints == 0
    assert pacer.retry == 10


def test_reset_forgets_everything() -> None:
    pacer = Pacer(Backoff(jitter=Jitter.DECORRELATED), random.Random(SEED), 300.0)
    for _ in range(4):
        pacer.next_delay(failed=True, hint=0.0)
    assert pacer.retry == 4
    assert pacer.short_hints == 4
    pacer.reset()
    assert pacer.retry == 0
    assert pacer.short_hints == 0
    # The decorrelated "previous" is forgotten too: the next draw is uniform(1, 3).
    state = pacer.rng.getstate()
    rng2 = random.Random()
    rng2.setstate(state)
    assert pacer.next_delay(failed=True, hint=None) == (
        rng2.uniform(1.0, 3.0),
        DelaySource.BACKOFF,
    )
    assert pacer.retry == 1


def test_reset_restarts_the_backoff_and_the_streak() -> None:
    pacer = make_pacer(Jitter.NONE)
    for _ in range(5):
        pacer.next_delay(failed=True, hint=None)
    pacer.reset()
    assert pacer.next_delay(failed=True, hint=None) == (1.0, DelaySource.BACKOFF)
    pacer.reset()
    assert [pacer.next_delay(failed=True, hint=0.0) for _ in range(3)] == [
        (0.0, DelaySource.SERVER),
        (0.0, DelaySource.SERVER),
        (4.0, DelaySource.SERVER_FLOORED),
    ]
