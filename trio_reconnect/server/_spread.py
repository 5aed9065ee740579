"""When dropped and refused clients should come back. Pure.

No trio, no clock, no global random: time comes in as ``now`` (seconds on any
monotonic clock) and randomness as a ``random.Random``.

Spreading a mass disconnect (docs/reference/protocol.md, section 1c)
-----------------------------------------------------------

When the server drops N clients at once (a restart, a drain) it tells each a
different ``retryAfter``::

    window       = max(min_window, N / rate)
    retryAfter_i = base + (slot_i + u_i) * window / N        u_i uniform in [0, 1)

with ``slot`` a random permutation of ``0 .. N-1``. Every interval of width
``window / N`` after ``base`` gets exactly one client (stratified jitter), so
any bin of the window that is k slots wide receives k clients, give or take
the one straddling each edge. N independent uniform draws, by contrast, put
about ``sqrt(N)`` more clients than average into the busiest bin. The window
never goes below ``min_window`` so that a handful of clients is still spread
over a couple of seconds, and never below ``N / rate`` so that the arrival
rate stays at or under ``rate``, the rate the server says it can absorb.
``base`` keeps the first client from returning while the server is still
going down.

The close reason carries whole milliseconds, so two clients in adjacent slots
can round to the same value. :func:`distinct_milliseconds` rounds a plan and
moves a colliding value up by one millisecond, so that every client gets a
different hint whenever the window holds at least N milliseconds; no value
moves by more than the number of collisions before it, a millisecond or two
in practice.

A slot is a point in time, not a delay: :class:`ReturnAt` keeps the
client's absolute return time, and its close reason's ``retryAfter`` is the
distance from the moment the close frame is written (``max(0, at - now)``).
The close frames of a drain go out over tens of milliseconds (each client's
writer finishes what it was sending first); a delay fixed when the drain
starts would move each client's return by its own write lag and bunch the
plan's slots back together.

Spreading refused handshakes (HTTP 503 with Retry-After)
--------------------------------------------------------

Admission control refuses handshakes that arrive faster than ``rate`` per
second. The refused clients must come back spread out too, but the header
only carries whole delta-seconds (RFC 9110 section 10.2.3), so a Retry-After
cannot pick a point in time finer than one second. Random jitter inside one
second is therefore impossible; what we can control is how many refused
clients are sent to each future second.

:class:`AdmissionControl` does that with two timelines:

* Admission is a token bucket in its GCRA form (the "virtual scheduling"
  algorithm of ITU-T I.371): ``tat``, the theoretical arrival time, moves
  ``1 / rate`` into the future with every admitted handshake, and a handshake
  is admitted while ``tat - now <= (burst - 1) / rate``. That is a bucket of
  ``burst`` tokens refilled at ``rate`` per second.
* Every refused client is promised the next free slot on a second timeline,
  ``promised``, that also advances by ``1 / rate`` per promise and never
  starts before the bucket will next have a token. The Retry-After is the
  slot's distance from ``now`` rounded UP to whole seconds (never 0, never
  earlier than the slot). So at most ``rate`` refused clients are sent to any
  one second, and the k-th refused client of a burst is told about
  ``k / rate`` seconds: a burst of excess clients is dealt out over the
  following seconds at the rate the bucket refills, not sent back in a herd.

Rounding up makes each client arrive up to one second late, never early;
clients' own clocks and network delays spread each second's group inside
the second. The server cannot recognise a returning client (a handshake has
no cookie), so new arrivals compete with promised ones; the promises are a
schedule, not reservations.

While the server refuses everyone (after ``restart(refuse_for=...)``) the
same promise timeline is used with slots starting when the refusal ends, at
``rate`` if admission control is on, else at the spread policy's rate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Final

import attrs

from .._hints import format_close_reason
from .._validators import (
    check_int,
    non_negative_number,
    optional_number_at_least_one,
    optional_positive_number,
    positive_number,
)

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_MIN_WINDOW",
    "DEFAULT_RATE",
    "AdmissionControl",
    "ReturnAt",
    "SpreadPolicy",
    "distinct_milliseconds",
    "plan_spread",
]

#: Shortest window a mass disconnect is spread over, seconds.
DEFAULT_MIN_WINDOW: Final = 2.0
#: Reconnects per second the server can absorb.
DEFAULT_RATE: Final = 1_000.0
#: Delay before the first client may come back, seconds.
DEFAULT_BASE: Final = 0.25
#: Tolerance for float error when rounding a promised slot up to whole seconds.
_EPSILON: Final = 1e-9


@attrs.frozen
class SpreadPolicy:
    """How a server spreads the clients it drops at once.

    Args:
        min_window: The shortest window the returns are spread over, seconds.
        rate: Returns per second the server can absorb; the window grows to
            ``N / rate`` for N clients.
        base: Seconds before the first client may return.
    """

    min_window: float = attrs.field(default=DEFAULT_MIN_WINDOW, validator=non_negative_number)
    rate: float = attrs.field(default=DEFAULT_RATE, validator=positive_number)
    base: float = attrs.field(default=DEFAULT_BASE, validator=non_negative_number)

    def window(self, n: int) -> float:
        """The window N clients are spread over, seconds."""
        return max(self.min_window, n / self.rate)


def plan_spread(n: int, policy: SpreadPolicy, rng: random.Random) -> list[float]:
    """A ``retryAfter`` in seconds for each of ``n`` clients dropped at once.

    The i-th value is ``base + (slot_i + u_i) * window / n``: one client per
    slot of width ``window / n``, in random order.

    Raises:
        ValueError: if ``n`` is negative.
    """
    check_int("n", n, minimum=0)
    if n == 0:
        return []
    width = policy.window(n) / n
    slots = list(range(n))
    rng.shuffle(slots)
    return [policy.base + (slot + rng.random()) * width for slot in slots]


def distinct_milliseconds(delays: Sequence[float]) -> list[float]:
    """Round each delay (seconds) to whole milliseconds, all different.

    Values are rounded in increasing order; one that would equal the previous
    one is moved up by a millisecond. The order of the input is kept.
    """
    order = sorted(range(len(delays)), key=delays.__getitem__)
    result = [0.0] * len(delays)
    previous = -1
    for index in order:
        ms = max(round(delays[index] * 1000), previous + 1)
        result[index] = ms / 1000
        previous = ms
    return result


@attrs.frozen
class ReturnAt:
    """A hinted close's return time: when the client should come back, and why it was closed.

    Attributes:
        at: The absolute return time (seconds, on the clock ``now`` is read from).
        reason: The close reason's ``reason`` word.
    """

    at: float
    reason: str

    def close_reason(self, now: float) -> str:
        """The close reason to send at ``now``: ``retryAfter`` is what is left until :attr:`at`."""
        return format_close_reason(max(0.0, self.at - now), self.reason)


@attrs.define(eq=False)
class AdmissionControl:
    """Admits handshakes at a bounded rate and spreads the refused ones.

    See the module comment for the algorithm.

    Args:
        rate: Handshakes admitted per second; ``None`` admits everything.
        burst: How many handshakes may be admitted at once after a quiet
            spell; ``None`` means one second's worth (``max(1, rate)``).
        refusal_rate: The rate at which refused clients are scheduled back
            when ``rate`` is ``None`` (during a refusal window).
    """

    rate: float | None = attrs.field(default=None, validator=optional_positive_number)
    burst: float | None = attrs.field(
        default=None, kw_only=True, validator=optional_number_at_least_one
    )
    refusal_rate: float = attrs.field(default=DEFAULT_RATE, kw_only=True, validator=positive_number)
    _tat: float = attrs.field(init=False, default=-math.inf)
    _promised: float = attrs.field(init=False, default=-math.inf)

    @property
    def _interval(self) -> float:
        return 1.0 / (self.rate if self.rate is not None else self.refusal_rate)

    def admit(self, now: float) -> int | None:
        """Decide on one handshake arriving at ``now``.

        Returns:
            ``None`` to admit it, else the ``Retry-After`` in whole seconds
            (at least 1) to refuse it with.
        """
        if self.rate is None:
            return None
        interval = 1.0 / self.rate
        burst = self.burst if self.burst is not None else max(1.0, self.rate)
        tolerance = (burst - 1.0) * interval
        tat = max(self._tat, now)
        if tat - now <= tolerance + _EPSILON:
            self._tat = tat + interval
            return None
        return self._promise(now, tat - tolerance)

    def refuse(self, now: float, until: float) -> int:
        """Refuse a handshake at ``now`` because the server refuses everyone until ``until``.

        Returns:
            The ``Retry-After`` in whole seconds (at least 1).
        """
        return self._promise(now, until)

    def _promise(self, now: float, earliest: float) -> int:
        slot = max(self._promised, earliest, now)
        self._promised = slot + self._interval
        return max(1, math.ceil(slot - now - _EPSILON))
