"""The publish figure of ``python -m trio_reconnect bench``: acknowledged publishes through Redis.

Two servers, each in a child process of its own
(:mod:`trio_reconnect._tools.bench._publish_server`): ``redis``, what
``serve --redis`` runs for channels (a ``ReconnectServer`` on a
``RedisChannelStore``, on a redis-server the bench starts), and ``plain``, a
trio-websocket broadcast without log or acks. One client of ours is
connected to each, in this process.

A burst: the client makes N publishes at once (one task each, so all are in
flight, ``ws.publish("bench", data)``) and the burst ends when the last
``ack`` is back; against the plain server the client sends the same N
payloads with ``send_message`` and the burst ends when the last of them has
come back (the broadcast's copy to its sender). Rates are N over the burst's
wall time. Rounds rotate which server goes first; the first round is a
warm-up; the ratio is the median of the per-round ratios ``acked / plain``.
Every burst starts after a full ``gc.collect()`` (:func:`measure_rounds`):
the acked bursts allocate enough to set off the collector and the plain ones
do not, so without it a full collection, whose cost grows with everything
the bench process holds (far more after the figures before this one), fell
inside some acked bursts only, one of them the first timed one: the only
one of a ``--fanout-rounds 1`` run, which read about 0.5.
The round trip: after the rounds, ``rtt_samples`` publishes one at a time,
each timed from the call to its ``ack``; median and nearest-rank p99.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import attrs
import trio

from ..._client import ReconnectingWebSocket, open_reconnecting_websocket
from ..._metrics import nearest_rank
from ._crowd import STEP_TIMEOUT
from ._fanout import _redis, _server
from ._publish_server import PUBLISH_KINDS

__all__ = [
    "DEFAULT_PUBLISHES",
    "DEFAULT_RTT_SAMPLES",
    "PublishFigures",
    "measure_rounds",
    "run_publish",
]

#: Publishes in one burst.
DEFAULT_PUBLISHES: Final = 1000
#: Publishes timed one at a time for the round trip.
DEFAULT_RTT_SAMPLES: Final = 200
#: Characters of every publish's data (a JSON string).
DATA_SIZE: Final = 100
#: The channel published to.
CHANNEL: Final = "bench"
_MODULE: Final = "trio_reconnect._tools.bench._publish_server"


@attrs.frozen
class PublishFigures:
    """What :func:`run_publish` measured (all ``None`` without a redis-server, see ``note``).

    Attributes:
        ratio: Median of the per-round ratios acked publishes/s / plain sends/s.
        ratios: The per-round ratios.
        acked_mps: Acked publishes per second (median over the rounds).
        plain_mps: Plain sends per second, each back from the broadcast (median).
        rtt_median_ms: One publish, call to ``ack``: median.
        rtt_p99_ms: The same, nearest-rank 99th percentile.
        publishes: Publishes per burst.
        rounds: Timed rounds.
        note: Why the figures are null, if they are.
    """

    ratio: float | None
    ratios: tuple[float, ...] | None
    acked_mps: float | None
    plain_mps: float | None
    rtt_median_ms: float | None
    rtt_p99_ms: float | None
    publishes: int
    rounds: int
    note: str | None = None


async def measure_rounds(
    bursts: Mapping[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, list[float]]:
    """Each kind's rate in ``rounds`` timed rounds, after an untimed warm-up round.

    Rounds rotate which kind goes first (the order of :data:`PUBLISH_KINDS`
    in odd rounds). Every burst starts from a full ``gc.collect()``, so that
    neither kind pays, inside its timed burst, for a collection of what the
    process held before it (each still pays for the collections of its own
    allocations).
    """
    rates: dict[str, list[float]] = {kind: [] for kind in PUBLISH_KINDS}
    for number in range(rounds + 1):  # round 0 is the warm-up
        order = PUBLISH_KINDS if number % 2 else PUBLISH_KINDS[::-1]
        for kind in order:
            gc.collect()
            with trio.fail_after(STEP_TIMEOUT):
                rate = await bursts[kind]()
            if number:
                rates[kind].append(rate)
    return rates


async def _acked_burst(ws: ReconnectingWebSocket, count: int, data: str) -> float:
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(ws.publish, CHANNEL, data)
    return count / (trio.current_time() - start)


async def _plain_burst(ws: ReconnectingWebSocket, count: int, data: str) -> float:
    message = f'{{"channel": "{CHANNEL}", "data": "{data}"}}'

    async def send() -> None:
        for _ in range(count):
            await ws.send_message(message)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        for _ in range(count):
            await ws.get_message()
    return count / (trio.current_time() - start)


async def _round_trips(ws: ReconnectingWebSocket, count: int, data: str) -> list[float]:
    times = []
    for _ in range(count):
        start = trio.current_time()
        await ws.publish(CHANNEL, data)
        times.append(trio.current_time() - start)
    return times


async def run_publish(
    *, publishes: int, rounds: int, rtt_samples: int = DEFAULT_RTT_SAMPLES, redis: bool = True
) -> PublishFigures:
    """Start the two servers (and a redis-server), measure, stop them.

    Without a redis-server (or with ``redis=False``) nothing is measured and
    every figure is ``None``, with the reason in ``note``.
    """
    data = "p" * DATA_SIZE
    async with _redis(redis) as store:
        if store.server is None:
            return PublishFigures(None, None, None, None, None, None, publishes, rounds, store.note)
        argv = {"plain": [], "redis": ["--redis", store.server.url]}
        async with (
            _server("plain", argv["plain"], module=_MODULE) as plain_server,
            _server("redis", argv["redis"], module=_MODULE) as redis_server,
            open_reconnecting_websocket(
                f"ws://127.0.0.1:{plain_server.port}/", ping_interval=None
            ) as plain,
            open_reconnecting_websocket(
                f"ws://127.0.0.1:{redis_server.port}/", ping_interval=None
            ) as acked,
        ):
            with trio.fail_after(STEP_TIMEOUT):
                await plain.wait_ready()
                await acked.wait_ready()
            rates = await measure_rounds(
                {
                    "plain": lambda: _plain_burst(plain, publishes, data),
                    "redis": lambda: _acked_burst(acked, publishes, data),
                },
                rounds,
            )
            with trio.fail_after(STEP_TIMEOUT):
                rtts = await _round_trips(acked, rtt_samples, data)
    ratios = tuple(a / p for a, p in zip(rates["redis"], rates["plain"], strict=True))
    p99 = nearest_rank(rtts, 0.99)
    return PublishFigures(
        ratio=statistics.median(ratios),
        ratios=ratios,
        acked_mps=statistics.median(rates["redis"]),
        plain_mps=statistics.median(rates["plain"]),
        rtt_median_ms=statistics.median(rtts) * 1000,
        rtt_p99_ms=None if p99 is None else p99 * 1000,
        publishes=publishes,
        rounds=rounds,
    )
