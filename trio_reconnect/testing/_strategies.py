"""Reconnect strategies as real client configurations, ours and our peers'.

Each strategy is a set of options for :func:`~trio_reconnect.open_reconnecting_websocket`,
so the herd simulator runs the same client code for all of them and only the
retry schedule differs. The peer schedules are transcribed from the peers'
sources (the versions are named on each class), including when their
counters reset, because that decides how a herd behaves after a restart:

* ``websockets`` (``websockets.client.backoff`` and ``connect.__aiter__``,
  websockets 14-17): when an established connection closes, the
  ``async for websocket in connect(...)`` loop reconnects AT ONCE (the delay
  generator is reset by every successful connection); only a failed attempt
  draws from the generator: ``uniform(0, 5)``, then 3.1 s growing by 1.618
  up to 90 s.
* ``socketio`` (socket.io-client ``Manager.reconnect`` with ``backo2``,
  v4): every reconnect, the first one included, waits
  ``min(1 s * 2**attempt +/- up to 50 %, 5 s)``; the randomisation is
  applied before the cap.
* ``naive``: ``on close: reconnect()`` with no delay at all.

None of the peers reads a server's retry hints, so they run with
``server_hints=False``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, Final

import attrs

from .._backoff import Backoff

__all__ = [
    "STRATEGIES",
    "NoBackoff",
    "SocketIOBackoff",
    "WebsocketsBackoff",
    "strategy_options",
]


@attrs.frozen
class NoBackoff:
    """Retry at once, every time (the ``naive`` strategy)."""

    @property
    def initial(self) -> float:
        """No first step."""
        return 0.0

    def delay(self, retry: int, rng: random.Random, previous: float | None = None) -> float:
        """Always 0."""
        return 0.0


@attrs.frozen
class WebsocketsBackoff:
    """The schedule of the ``websockets`` library's reconnecting ``connect``.

    Our client counts retries from the last stable connection, and retry 1 is
    the wait after a drop; websockets reconnects at once after a drop and
    only backs off on failed attempts. So retry 1 is 0, retry 2 draws the
    random initial delay, retry 3 is ``min_delay``, and so on.
    """

    initial_delay: float = 5.0
    min_delay: float = 3.1
    max_delay: float = 90.0
    factor: float = 1.618
    reconnect_at_once: bool = True

    @property
    def initial(self) -> float:
        """The smallest non-random step."""
        return self.min_delay

    def delay(self, retry: int, rng: random.Random, previous: float | None = None) -> float:
        """The ``retry``-th wait (1-based) of websockets' ``backoff()`` generator."""
        step = retry - 1 if self.reconnect_at_once else retry
        if step <= 0:
            return 0.0
        if step == 1:
            return rng.random() * self.initial_delay
        try:
            value = self.min_delay * self.factor ** (step - 2)
        except OverflowError:
            return self.max_delay
        return min(value, self.max_delay)


@attrs.frozen
class SocketIOBackoff:
    """socket.io-client's reconnection delay (``backo2``: 1 s doubling, cap 5 s, 50 % jitter).

    Transcribed from ``Backoff.prototype.duration``: one uniform draw gives
    both the deviation (``rand * jitter * ms``) and its sign (parity of
    ``floor(rand * 10)``); the result is capped after the randomisation and
    truncated to whole milliseconds.
    """

    min_ms: float = 1000.0
    max_ms: float = 5000.0
    factor: float = 2.0
    jitter: float = 0.5

    @property
    def initial(self) -> float:
        """The first step, seconds."""
        return self.min_ms / 1000

    def delay(self, retry: int, rng: random.Random, previous: float | None = None) -> float:
        """The ``retry``-th reconnection delay (1-based; socket.io's ``attempts`` is retry - 1)."""
        try:
            ms = self.min_ms * self.factor ** (retry - 1)
        except OverflowError:
            ms = math.inf
        if self.jitter:
            rand = rng.random()
            deviation = math.floor(rand * self.jitter * ms) if math.isfinite(ms) else 0
            ms = ms - deviation if (math.floor(rand * 10) & 1) == 0 else ms + deviation
        return int(min(ms, self.max_ms)) / 1000


#: Client options for every strategy of the herd simulator, by name.
STRATEGIES: Final[Mapping[str, Mapping[str, Any]]] = {
    "server-spread": {"backoff": Backoff(), "server_hints": True},
    "client-full-jitter": {"backoff": Backoff(), "server_hints": False},
    "naive": {"backoff": NoBackoff(), "server_hints": False},
    "websockets": {"backoff": WebsocketsBackoff(), "server_hints": False},
    "socketio": {"backoff": SocketIOBackoff(), "server_hints": False},
}


def strategy_options(name: str) -> dict[str, Any]:
    """The client options of strategy ``name`` (a copy).

    Raises:
        ValueError: for an unknown name.
    """
    try:
        return dict(STRATEGIES[name])
    except KeyError:
        known = ", ".join(STRATEGIES)
        raise ValueError(f"unknown strategy {name!r}; known: {known}") from None
