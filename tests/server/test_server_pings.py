"""Half-open clients: the server pings each ready client and drops the silent ones."""

from __future__ import annotations

import random
from typing import Any

import trio
from trio.testing import MockClock

from trio_reconnect import open_reconnecting_websocket
from trio_reconnect.server import (
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    ConnectedClient,
    ReconnectServer,
    ReplayLog,
)
from trio_reconnect.testing import MemoryNetwork


def test_defaults() -> None:
    assert (DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT) == (20.0, 20.0)
    server = ReconnectServer(ReplayLog())
    assert (server.ping_interval, server.ping_timeout) == (20.0, 20.0)


async def _one_client(
    server: ReconnectServer, network: MemoryNetwork, body: Any, **client_options: Any
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve_listeners, [network.listen()])
        async with open_reconnecting_websocket(
            "ws://server/",
            open_stream=network.client("alice"),
            random=random.Random(1),
            ping_interval=None,  # the client does not notice; the server must
            **client_options,
        ) as ws:
            await body(ws)
        nursery.cancel_scope.cancel()


async def test_a_black_holed_client_is_dropped_after_interval_plus_timeout(
    autojump_clock: MockClock,
) -> None:
    network = MemoryNetwork(random=random.Random(0))
    server = ReconnectServer(ReplayLog(), ping_interval=5.0, ping_timeout=3.0)
    gone_at: list[float] = []

    async def body(ws: Any) -> None:
        await ws.wait_ready()
        (client,) = server.clients
        assert trio.current_time() == 0.0
        await trio.sleep(1.0)
        assert network.blackhole("alice") == 1
        await client.wait_closed()
        gone_at.append(trio.current_time())
        stats = client.statistics()
        assert (stats.close_code, stats.close_reason) == (1006, None)  # no close frame sent

    with trio.fail_after(60):
        await _one_client(server, network, body)
    # Pinged at 5 (answered? no: black-holed at 1), no pong by 5 + 3.
    assert gone_at == [8.0]
    stats = server.statistics()
    assert (stats.half_open, stats.clients) == (1, 0)


async def test_a_live_client_answers_every_ping(autojump_clock: MockClock) -> None:
    network = MemoryNetwork(random=random.Random(0), latency=0.2)
    server = ReconnectServer(ReplayLog(), ping_interval=5.0, ping_timeout=3.0)

    async def body(ws: Any) -> None:
        await ws.wait_ready()
        await trio.sleep(100)
        assert server.statistics().ready_clients == 1

    with trio.fail_after(200):
        await _one_client(server, network, body)
    assert server.statistics().half_open == 0


async def test_pings_off(autojump_clock: MockClock) -> None:
    network = MemoryNetwork(random=random.Random(0))
    server = ReconnectServer(ReplayLog(), ping_interval=None)

    async def body(ws: Any) -> None:
        await ws.wait_ready()
        network.blackhole("alice")
        await trio.sleep(1_000)
        assert server.statistics().clients == 1  # held until a drain finds it

    with trio.fail_after(2_000):
        await _one_client(server, network, body)
    assert server.statistics().half_open == 0


async def test_an_application_that_holds_the_reader_up_is_no_half_open_client(
    autojump_clock: MockClock,
) -> None:
    # trio-websocket answers no ping while its message queue is full, so a
    # slow on_message must not make the server drop a live client.
    network = MemoryNetwork(random=random.Random(0))
    release = trio.Event()

    async def on_message(client: ConnectedClient, message: str | bytes) -> None:
        await release.wait()

    server = ReconnectServer(
        ReplayLog(), ping_interval=5.0, ping_timeout=3.0, on_message=on_message
    )

    async def body(ws: Any) -> None:
        await ws.wait_ready()
        for n in range(5):
            await ws.send_message(f"m{n}")  # the first holds on_message; the rest queue
        await trio.sleep(60)
        assert server.statistics().ready_clients == 1
        release.set()
        await trio.sleep(20)
        assert server.statistics().ready_clients == 1

    with trio.fail_after(200):
        await _one_client(server, network, body)
    assert server.statistics().half_open == 0
