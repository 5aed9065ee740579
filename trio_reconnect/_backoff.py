"""How long to wait before the next attempt: the backoff policy and the pacer.

Pure: no trio, no clock, no global random. Randomness comes in as a
``random.Random`` so that a test can state exact numbers.

The policy (:class:`Backoff`) maps a retry number to a delay::

    cap(n)   = min(max_delay, initial * factor ** (n - 1))      n = 1, 2, 3 ...
    NONE         delay = cap(n)
    FULL         delay = uniform(0, cap(n))                     (the default)
    EQUAL        delay = cap(n) / 2 + uniform(0, cap(n) / 2)
    DECORRELATED delay = min(max_delay, uniform(initial, 3 * previous))

Jitter is applied after the cap, so clients that have all reached the cap do
not come back in lockstep. With the defaults the first retry waits a random
0-1 s (the "random initial delay"), then 0-2 s, 0-4 s ... up to 0-30 s.

The pacer (:class:`Pacer`) adds the server's hints and the counters:

* ``retry`` counts the waits scheduled since the last stable connection; the
  backoff delay of the next wait is ``policy.delay(retry)``. A server hint
  applies to one wait only; the counter keeps going underneath it.
* A hint is clamped to ``[0, max_server_delay]``.
* Anti-hammering: after ``SHORT_HINT_LIMIT`` consecutive failed attempts whose
  hint was shorter than ``policy.initial``, the pacer waits
  ``max(hint, backoff)`` instead of the hint. So a server that answers every
  attempt with ``retryAfter: 0`` gets two immediate retries, then backoff.
* :meth:`Pacer.reset` (called once a connection has been ready for
  ``stable_after`` seconds) is the only thing that resets the counters.
"""

from __future__ import annotations

import enum
import math
import random
from typing import Final, Protocol

import attrs

from ._state import DelaySource
from ._validators import positive_number

__all__ = [
    "DEFAULT_FACTOR",
    "DEFAULT_INITIAL_DELAY",
    "DEFAULT_MAX_DELAY",
    "SHORT_HINT_LIMIT",
    "Backoff",
    "Jitter",
    "Pacer",
    "RetryPolicy",
]

#: First backoff step, seconds.
DEFAULT_INITIAL_DELAY: Final = 1.0
#: Growth factor per retry.
DEFAULT_FACTOR: Final = 2.0
#: The cap, seconds.
DEFAULT_MAX_DELAY: Final = 30.0
#: Consecutive failed attempts with a too-short server hint before the hint is
#: floored by the backoff (docs/reference/protocol.md, section 1a).
SHORT_HINT_LIMIT: Final = 3


class Jitter(enum.Enum):
    """How randomness spreads the backoff delays."""

    #: No randomness: exactly ``cap(n)``. Clients that dropped together retry together.
    NONE = "none"
    #: ``uniform(0, cap(n))``: the widest spread (AWS "full jitter").
    FULL = "full"
    #: ``cap(n)/2 + uniform(0, cap(n)/2)``: never shorter than half the step.
    EQUAL = "equal"
    #: ``min(max_delay, uniform(initial, 3 * previous))`` (AWS "decorrelated jitter").
    DECORRELATED = "decorrelated"


@attrs.frozen
class Backoff:
    """Exponential backoff with a cap and jitter.

    Args:
        initial: The first step, seconds (default :data:`DEFAULT_INITIAL_DELAY`).
        factor: Growth per retry, at least 1 (default :data:`DEFAULT_FACTOR`).
        max_delay: The cap, seconds, at least ``initial``
            (default :data:`DEFAULT_MAX_DELAY`).
        jitter: The jitter strategy (default :attr:`Jitter.FULL`).
    """

    initial: float = attrs.field(default=DEFAULT_INITIAL_DELAY, validator=positive_number)
    factor: float = attrs.field(default=DEFAULT_FACTOR, validator=positive_number)
    max_delay: float = attrs.field(default=DEFAULT_MAX_DELAY, validator=positive_number)
    jitter: Jitter = attrs.field(
        default=Jitter.FULL, validator=attrs.validators.instance_of(Jitter)
    )

    def __attrs_post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"factor must be at least 1, got {self.factor!r}")
        if self.max_delay < self.initial:
            raise ValueError(
                f"max_delay ({self.max_delay!r}) must be at least initial ({self.initial!r})"
            )

    def cap(self, retry: int) -> float:
        """The un-jittered delay of retry number ``retry`` (1-based), capped."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry!r}")
        try:
            step = self.initial * self.factor ** (retry - 1)
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, step)

    def delay(self, retry: int, rng: random.Random, previous: float | None = None) -> float:
        """The delay before retry number ``retry`` (1-based).

        Args:
            retry: 1 for the first retry after a drop or failure, then 2, 3 ...
            rng: Where the randomness comes from.
            previous: The previous delay (used by :attr:`Jitter.DECORRELATED`).
        """
        cap = self.cap(retry)
        if self.jitter is Jitter.NONE:
            return cap
        if self.jitter is Jitter.FULL:
            return rng.uniform(0.0, cap)
        if self.jitter is Jitter.EQUAL:
            return cap / 2 + rng.uniform(0.0, cap / 2)
        last = self.initial if previous is None else max(previous, self.initial)
        return min(self.max_delay, rng.uniform(self.initial, 3 * last))


class RetryPolicy(Protocol):
    """What the client needs from a backoff policy; :class:`Backoff` is one.

    Implement it to reproduce another library's schedule exactly (the herd
    simulator's peer strategies in :mod:`trio_reconnect.testing` do).
    """

    @property
    def initial(self) -> float:
        """The first step, seconds: hints shorter than this count as short."""
        ...

    def delay(self, retry: int, rng: random.Random, previous: float | None = None) -> float:
        """The delay before retry number ``retry`` (1-based), seconds, finite and >= 0."""
        ...


@attrs.define(eq=False)
class Pacer:
    """Chooses each wait from the backoff policy and the server's hints.

    Args:
        backoff: The policy (a :class:`Backoff` or any :class:`RetryPolicy`).
        rng: Randomness for the jitter.
        max_server_delay: The clamp for server hints, seconds.
    """

    backoff: RetryPolicy
    rng: random.Random
    max_server_delay: float
    #: Waits scheduled since the last stable connection.
    retry: int = 0
    #: Consecutive failed attempts with a hint shorter than ``backoff.initial``.
    short_hints: int = 0
    _previous: float | None = None

    def next_delay(self, *, failed: bool, hint: float | None) -> tuple[float, DelaySource]:
        """The wait before the next attempt, and where it came from.

        Args:
            failed: Whether the attempt that just ended failed (did not reach
                a stable connection). A drop of a stable connection is not a
                failure.
            hint: The server's hint in seconds, already validated as finite
                and non-negative, or ``None``.
        """
        self.retry += 1
        backoff = self.backoff.delay(self.retry, self.rng, self._previous)
        if not (isinstance(backoff, int | float) and math.isfinite(backoff) and backoff >= 0):
            raise ValueError(f"the retry policy returned an invalid delay: {backoff!r}")
        if hint is None:
            self.short_hints = 0
            delay, source = backoff, DelaySource.BACKOFF
        else:
            hint = min(max(hint, 0.0), self.max_server_delay)
            self.short_hints = self.short_hints + 1 if failed and hint < self.backoff.initial else 0
            if self.short_hints >= SHORT_HINT_LIMIT and backoff > hint:
                delay, source = backoff, DelaySource.SERVER_FLOORED
            else:
                delay, source = hint, DelaySource.SERVER
        self._previous = delay
        return delay, source

    def reset(self) -> None:
        """Forget the streak: a connection has been stable."""
        self.retry = 0
        self.short_hints = 0
        self._previous = None
