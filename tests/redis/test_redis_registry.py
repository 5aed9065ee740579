"""RedisRegistry against a real redis-server: announce, expiry by Redis's TTL, withdraw, outages."""

from __future__ import annotations

import time

import coredis
import pytest
import trio

from trio_reconnect.server._cluster import NodeStatus
from trio_reconnect.server._logbase import LogUnavailableError
from trio_reconnect.server.redis import DEFAULT_REGISTRY_PREFIX, RedisRegistry
from trio_reconnect.testing._redis_server import RedisServer

GUARD = 10.0


async def test_announce_nodes_withdraw(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisRegistry(redis_server.url) as a, RedisRegistry(redis_server.url) as b:
            assert await a.nodes() == []
            await a.announce(NodeStatus("a", 300.0), ttl=5.0)
            await b.announce(NodeStatus("b", 100.0, draining=True, drain_ends=12.5), ttl=5.0)
            expected = [
                NodeStatus("a", 300.0),
                NodeStatus("b", 100.0, draining=True, drain_ends=12.5),
            ]
            assert await a.nodes() == expected
            assert await b.nodes() == expected
            await a.announce(NodeStatus("a", 250.0, draining=True, drain_ends=1.0), ttl=5.0)
            assert (await b.nodes())[0] == NodeStatus("a", 250.0, draining=True, drain_ends=1.0)
            await b.withdraw("b")
            assert await a.nodes() == [NodeStatus("a", 250.0, draining=True, drain_ends=1.0)]
            await b.withdraw("never-there")


async def test_redis_expires_a_silent_node(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisRegistry(redis_server.url) as registry:
            await registry.announce(NodeStatus("short", 1.0), ttl=0.1)
            await registry.announce(NodeStatus("long", 1.0), ttl=5.0)
            assert [n.node for n in await registry.nodes()] == ["long", "short"]
            await trio.sleep(0.25)
            assert [n.node for n in await registry.nodes()] == ["long"]
            async with coredis.Redis.from_url(redis_server.url) as client:
                names = await client.smembers(DEFAULT_REGISTRY_PREFIX + ":names")
            assert names == {b"long"}  # the expired name was dropped from the index


async def test_now_is_wall_clock_and_prefixes_separate_clusters(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with (
            RedisRegistry(redis_server.url, prefix="one") as one,
            RedisRegistry(redis_server.url, prefix="two") as two,
        ):
            assert abs(one.now() - time.time()) < 1.0
            await one.announce(NodeStatus("x", 1.0), ttl=5.0)
            assert await two.nodes() == []


async def test_malformed_status_is_ignored(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisRegistry(redis_server.url) as registry:
            await registry.announce(NodeStatus("good", 1.0), ttl=5.0)
            async with coredis.Redis.from_url(redis_server.url) as client:
                await client.set(DEFAULT_REGISTRY_PREFIX + ":node:bad", "{not json")
                await client.sadd(DEFAULT_REGISTRY_PREFIX + ":names", ["bad"])
            assert [n.node for n in await registry.nodes()] == ["good"]


async def test_bad_ttl(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisRegistry(redis_server.url) as registry:
            for ttl in (0, -1.0, float("nan"), True):
                with pytest.raises(ValueError, match="ttl"):
                    await registry.announce(NodeStatus("a", 1.0), ttl=ttl)


async def test_redis_down_then_back(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisRegistry(redis_server.url, timeout=0.5) as registry:
            await registry.announce(NodeStatus("a", 1.0), ttl=5.0)
            redis_server.stop()
            with pytest.raises(LogUnavailableError):
                await registry.nodes()
            with pytest.raises(LogUnavailableError):
                await registry.announce(NodeStatus("a", 1.0), ttl=5.0)
            redis_server.start()
            assert await registry.nodes() == []  # Redis came back empty
            await registry.announce(NodeStatus("a", 1.0), ttl=5.0)
            assert [n.node for n in await registry.nodes()] == ["a"]


def test_the_backends_implement_the_protocols() -> None:
    # Checked by mypy (structural typing), and at run time for the methods' names.
    from trio_reconnect.server._cluster import ClusterRegistry
    from trio_reconnect.server._logbase import EventLog
    from trio_reconnect.server.redis import RedisStreamLog

    log: EventLog = RedisStreamLog("redis://127.0.0.1:1/0")
    registry: ClusterRegistry = RedisRegistry("redis://127.0.0.1:1/0")
    for name in ("append", "read_after", "newest", "tail"):
        assert callable(getattr(log, name))
    for name in ("now", "announce", "nodes", "withdraw"):
        assert callable(getattr(registry, name))
