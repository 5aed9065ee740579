"""The ClusterRegistry contract (trio_reconnect/server/_cluster.py), run against every backend.

Like the log contract (test_log_contract.py): one suite, one line per
backend. The Redis registry runs on a real redis-server in real time.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio

from tests.support.redis_fixtures import redis_server  # noqa: F401  (the fixture)
from trio_reconnect.server import ClusterRegistry, MemoryRegistry, NodeStatus

GUARD = 10.0

Backend = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[ClusterRegistry]]


@asynccontextmanager
async def _redis_registry(request: pytest.FixtureRequest) -> AsyncIterator[ClusterRegistry]:
    from trio_reconnect.server.redis import RedisRegistry

    server = request.getfixturevalue("redis_server")
    async with RedisRegistry(server.url) as registry:
        yield registry


@asynccontextmanager
async def _memory_registry(request: pytest.FixtureRequest) -> AsyncIterator[ClusterRegistry]:
    yield MemoryRegistry()


BACKENDS: dict[str, Backend] = {"memory": _memory_registry, "redis": _redis_registry}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Callable[[], Any]:
    return lambda: BACKENDS[request.param](request)


async def test_announce_nodes_withdraw(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as registry:
            assert list(await registry.nodes()) == []
            await registry.announce(NodeStatus("a", 300.0), ttl=5.0)
            await registry.announce(NodeStatus("b", 1.0, draining=True, drain_ends=2.5), ttl=5.0)
            await registry.announce(NodeStatus("a", 200.0), ttl=5.0)  # replaces its own
            found = sorted(await registry.nodes(), key=lambda status: status.node)
            assert found == [
                NodeStatus("a", 200.0),
                NodeStatus("b", 1.0, draining=True, drain_ends=2.5),
            ]
            await registry.withdraw("a")
            await registry.withdraw("never-there")
            assert [s.node for s in await registry.nodes()] == ["b"]


@pytest.mark.parametrize("ttl", [0, 0.0, -1.0, math.nan, math.inf, -math.inf, True, None, "5"])
async def test_a_ttl_must_be_a_positive_finite_number(backend: Any, ttl: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as registry:
            with pytest.raises(ValueError, match="ttl"):
                await registry.announce(NodeStatus("a", 1.0), ttl=ttl)
            assert list(await registry.nodes()) == []


async def test_the_clock_moves_forward(backend: Any) -> None:
    with trio.fail_after(GUARD):
        async with backend() as registry:
            before = registry.now()
            await trio.sleep(0.01)
            assert registry.now() > before
