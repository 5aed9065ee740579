"""Clients hopping between three nodes on one real Redis stream, checked by exact id accounting.

The in-memory version (tests/server/test_server_adversarial.py) runs in
virtual time; this one runs the same accounting against a real
redis-server, in real time: three nodes, each with its own
``RedisStreamLog`` (its own connection pools and fan-out, as three
processes would have), several publishers at once through random nodes,
clients reset or dropped at every publish and picking a node per attempt.
The stream holds everything, so every client must see the whole stream
from its first event, once each and in order, with no gap or snapshot.
"""

from __future__ import annotations

import contextlib
import random

import pytest
import trio

from tests.server.test_server_adversarial import account
from trio_reconnect import Backoff, Gap, Item, ServerEvent, Snapshot, open_reconnecting_websocket
from trio_reconnect.server import ReconnectServer
from trio_reconnect.server.redis import RedisStreamLog
from trio_reconnect.testing import MemoryNetwork
from trio_reconnect.testing._redis_server import RedisServer


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_clients_hopping_between_three_redis_nodes(
    redis_server: RedisServer, seed: int
) -> None:
    rng = random.Random(seed)
    network = MemoryNetwork(random=random.Random(seed + 1), latency=0.001, jitter=0.002)
    names = ["node0", "node1", "node2"]
    clients, publishers, per_publisher = 10, 3, 60
    items: dict[int, list[Item]] = {n: [] for n in range(clients)}

    with trio.fail_after(120):
        async with contextlib.AsyncExitStack() as stack:
            logs = [
                await stack.enter_async_context(RedisStreamLog(redis_server.url, stream="hop"))
                for _ in names
            ]
            servers = [
                ReconnectServer(log, rng=random.Random(seed * 10 + i), ping_interval=None)
                for i, log in enumerate(logs)
            ]
            first = int(await servers[0].publish("first"))
            last = str(first + publishers * per_publisher)

            async def client(n: int) -> None:
                picker = random.Random(seed * 100 + n)

                def url() -> str:
                    return f"ws://{picker.choice(names)}/"

                async with open_reconnecting_websocket(
                    url,
                    open_stream=network.client(f"c{n}"),
                    random=random.Random(n),
                    backoff=Backoff(initial=0.01, max_delay=0.1),
                    max_attempts=None,
                    dedupe_window=1,
                ) as ws:
                    async for item in ws:
                        items[n].append(item)
                        if isinstance(item, ServerEvent) and item.id == last:
                            return

            async def publisher(p: int) -> None:
                prng = random.Random(seed * 7 + p)
                for i in range(per_publisher):
                    await prng.choice(servers).publish(f"p{p} e{i}")
                    # The chaos goes with the publishing, not with the clock
                    # (real time: a loaded machine must not make it milder).
                    victim = f"c{rng.randrange(clients)}"
                    if prng.random() < 0.5:
                        network.reset(victim)
                    else:
                        network.drop(victim)
                    await trio.sleep(prng.uniform(0.0, 0.02))

            async with trio.open_nursery() as nursery:
                for name, server in zip(names, servers, strict=True):
                    await nursery.start(server.serve_listeners, [network.listen(name, 80)])
                async with trio.open_nursery() as crowd:
                    for n in range(clients):
                        crowd.start_soon(client, n)
                    async with trio.open_nursery() as publishing:
                        for p in range(publishers):
                            publishing.start_soon(publisher, p)
                nursery.cancel_scope.cancel()

    stats = [s.statistics() for s in servers]
    hops = sum(s.fresh + s.replayed + s.snapshots + s.lost for s in stats) - clients
    # In real time: on a slow machine (coverage, load) most attempts are cut
    # by the chaos before their handshake ends, and the clients get through
    # near the end (3 hops seen in CI, 1 in 6 runs under coverage, before and
    # after session 6). What must hold is the accounting below, across at
    # least one resume on a node.
    assert hops >= 1, hops
    for n in range(clients):
        assert not any(isinstance(item, Gap | Snapshot) for item in items[n]), n
        problems, _, _ = account(items[n], first, last)
        assert problems == [], (n, problems[:5])
