"""Channels end to end: our client against ReconnectServer(channels=MemoryChannelStore()).

Over the memory network, in virtual time: the client's streams are served by
``server.serve_stream``; an ``open_stream`` that waits on a gate keeps the
client away while the test publishes.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

import trio_reconnect as tr
from trio_reconnect.server import MemoryChannelStore, ReconnectServer, ReplayLog

URL = "ws://channels.test/"


def make_server(store: MemoryChannelStore, **kwargs: Any) -> ReconnectServer:
    return ReconnectServer(ReplayLog(start=1), channels=store, rng=random.Random(0), **kwargs)


class Network:
    """Serves the client's streams by ``servers`` in turn; ``away`` holds new ones."""

    def __init__(self, nursery: trio.Nursery, servers: list[ReconnectServer]) -> None:
        self.nursery = nursery
        self.servers = servers
        self.connects = 0
        self.open = trio.Event()
        self.open.set()

    async def open_stream(self, target: tr.Target) -> trio.abc.Stream:
        await self.open.wait()
        server = self.servers[self.connects % len(self.servers)]
        self.connects += 1
        client, server_side = trio.testing.memory_stream_pair()
        self.nursery.start_soon(server.serve_stream, server_side)
        return client

    def away(self) -> None:
        self.open = trio.Event()


def client(network: Network, **options: Any) -> Any:
    options.setdefault("ping_interval", None)
    options.setdefault("random", random.Random(3))
    return tr.open_reconnecting_websocket(URL, open_stream=network.open_stream, **options)


async def take(sub: tr.Subscription, count: int) -> list[Any]:
    return [await sub.__anext__() for _ in range(count)]


async def test_channels_resume_across_reconnects_and_node_hops(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = MemoryChannelStore(start=1)
    nodes = [make_server(store), make_server(store)]
    network = Network(nursery, nodes)
    with trio.fail_after(60):
        async with client(network) as ws, ws.subscribe("a") as a, ws.subscribe("b") as b:
            got: dict[str, list[Any]] = {"a": [], "b": []}
            for hop in range(4):
                await nodes[hop % 2].publish("a", f"a{hop}")
                await nodes[hop % 2].publish("b", f"b{hop}")
                got["a"] += await take(a, 1)
                got["b"] += await take(b, 1)
                network.away()
                ws.reconnect_now()
                await trio.sleep(1)
                await nodes[0].publish("a", f"a{hop} away")  # while the client is away
                network.open.set()
                await ws.wait_ready()
                got["a"] += await take(a, 1)
            assert network.connects == 5
    assert [i.data for i in got["a"]] == [x for h in range(4) for x in (f"a{h}", f"a{h} away")]
    assert [i.data for i in got["b"]] == [f"b{h}" for h in range(4)]
    assert all(isinstance(i, tr.ServerEvent) for i in got["a"] + got["b"])
    assert len({i.id for i in got["a"]}) == 8


async def test_a_forbidden_channel_and_history(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = MemoryChannelStore(start=1)
    for i in range(5):
        store.append_nowait("open", i)

    def authorize(principal: object, channel: str, action: str) -> bool:
        return channel != "secret"

    network = Network(nursery, [make_server(store, authorize=authorize)])
    with trio.fail_after(10):
        async with client(network) as ws:
            with pytest.raises(tr.SubscriptionRefused) as caught:
                async with ws.subscribe("secret"):
                    pytest.fail("entered")  # pragma: no cover
            assert caught.value.code == "forbidden"
            async with ws.subscribe("open", history=2) as sub:
                assert [i.data for i in await take(sub, 2)] == [3, 4]


async def test_a_slow_channel_against_the_real_server(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = MemoryChannelStore(start=1)
    server = make_server(store)
    network = Network(nursery, [server])
    with trio.fail_after(30):
        async with (
            client(network, max_queue=4) as ws,
            ws.subscribe("slow") as slow,
            ws.subscribe("fast") as fast,
        ):
            fast_items = []
            for n in range(30):
                await server.publish("slow", n)
                await server.publish("fast", n)
                fast_items += await take(fast, 1)
            assert [i.data for i in fast_items] == list(range(30))
            assert slow.behind
            items = await take(slow, 30)
            assert [i.data for i in items] == list(range(30))
