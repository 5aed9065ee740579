"""Graceful stop, and drains spread over a cluster's registry, in virtual time."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked
from trio_websocket import WebSocketConnection

from tests.support.server_clients import closed_with, header, refused_with, resumed
from trio_reconnect import open_reconnecting_websocket
from trio_reconnect._hints import parse_retry_after_reason
from trio_reconnect.server import (
    DEFAULT_DRAIN_TIMEOUT,
    DrainSummary,
    MemoryRegistry,
    NodeStatus,
    ReconnectServer,
    ReplayLog,
    SpreadPolicy,
)
from trio_reconnect.testing import MemoryNetwork

POLICY = SpreadPolicy(min_window=2.0, rate=1_000.0, base=0.25)


def hints_of(reasons: list[str | None]) -> list[float]:
    hints = [parse_retry_after_reason(r or "") for r in reasons]
    assert all(h is not None for h in hints), reasons
    return [h for h in hints if h is not None]


async def test_shutdown_refuses_past_the_exit_closes_with_1012_and_waits(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = ReconnectServer(ReplayLog(), spread=POLICY, rng=random.Random(0), ping_interval=None)
    with trio.fail_after(60):
        clients = [(await resumed(nursery, server, None))[0] for _ in range(5)]
        await trio.sleep(3)
        closes: list[Any] = []

        async def watch(ws: WebSocketConnection) -> None:
            closes.append(await closed_with(ws))

        for ws in clients:
            nursery.start_soon(watch, ws)
        summary = await server.shutdown(drain_timeout=8.0)
        assert trio.current_time() == 3.0  # the clients answered at once
        assert summary == DrainSummary(drained=5, aborted=0, window=2.0, seconds=0.0)
        await wait_all_tasks_blocked()
        # Still refusing, with a Retry-After past the latest exit (3 + 8 = 11).
        rejection = await refused_with(server)
        assert rejection.status_code == 503
        assert header(rejection, b"retry-after") == b"8"
        await trio.sleep(30)  # past the drain's bound: a stopped node never admits again
        assert (await refused_with(server)).status_code == 503
    assert [c.code for c in closes] == [1012] * 5
    hints = hints_of([c.reason for c in closes])
    assert len(set(hints)) == 5
    assert all(0.25 <= h <= 2.25 for h in hints)
    assert server.statistics().restarts == 1


async def test_shutdown_drops_the_clients_that_do_not_leave_in_time(
    autojump_clock: MockClock,
) -> None:
    network = MemoryNetwork(random=random.Random(0))
    server = ReconnectServer(ReplayLog(), rng=random.Random(0), ping_interval=None)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_listeners, [network.listen()])
            async with open_reconnecting_websocket(
                "ws://server/",
                open_stream=network.client("silent"),
                random=random.Random(1),
                ping_interval=None,
            ) as ws:
                await ws.wait_ready()
                network.blackhole("silent")  # it will never answer the close frame
                summary = await server.shutdown(drain_timeout=2.0)
                assert trio.current_time() == 2.0  # not close_timeout (5 s)
                assert (summary.drained, summary.aborted, summary.seconds) == (1, 1, 2.0)
                assert server.statistics().clients == 0
            nursery.cancel_scope.cancel()


def test_shutdown_defaults_and_validation() -> None:
    assert DEFAULT_DRAIN_TIMEOUT == 10.0
    server = ReconnectServer(ReplayLog())

    async def stop(bad: float) -> None:
        await server.shutdown(drain_timeout=bad)

    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="drain_timeout"):
            trio.run(stop, bad)


def test_settings_the_parts_copied_cannot_change_later() -> None:
    import attrs

    server = ReconnectServer(ReplayLog())
    with pytest.raises(attrs.exceptions.FrozenAttributeError):
        server.max_replay = 5
    with pytest.raises(attrs.exceptions.FrozenAttributeError):
        server.log = ReplayLog()


def test_a_registry_needs_a_node_name() -> None:
    with pytest.raises(ValueError, match="node name"):
        ReconnectServer(ReplayLog(), registry=MemoryRegistry())


async def test_memory_registry_expires_and_withdraws(autojump_clock: MockClock) -> None:
    registry = MemoryRegistry()
    await registry.announce(NodeStatus("a", 10.0), ttl=3.0)
    await trio.sleep(1)
    await registry.announce(NodeStatus("b", 20.0, draining=True, drain_ends=9.0), ttl=3.0)
    assert registry.now() == 1.0
    assert [n.node for n in await registry.nodes()] == ["a", "b"]
    await trio.sleep(2)  # a's announcement is 3 s old: expired
    assert await registry.nodes() == [NodeStatus("b", 20.0, draining=True, drain_ends=9.0)]
    await registry.withdraw("b")
    await registry.withdraw("nobody")
    assert await registry.nodes() == []
    with pytest.raises(ValueError, match="ttl"):
        await registry.announce(NodeStatus("a", 1.0), ttl=0)
    clocked = MemoryRegistry(clock=lambda: 1_000.0)
    assert clocked.now() == 1_000.0


async def test_nodes_announce_their_rate_and_liveness(autojump_clock: MockClock) -> None:
    network = MemoryNetwork(random=random.Random(0))
    registry = MemoryRegistry()
    servers = [
        ReconnectServer(
            ReplayLog(),
            admission_rate=rate,
            registry=registry,
            node=f"n{i}",
            announce_interval=1.0,
            announce_ttl=3.0,
        )
        for i, rate in enumerate([10.0, None])
    ]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i, server in enumerate(servers):
                await nursery.start(server.serve_listeners, [network.listen(f"n{i}")])
            assert await registry.nodes() == [
                NodeStatus("n0", 10.0),
                NodeStatus("n1", 1_000.0),  # no admission limit: its spread rate
            ]
            nursery.cancel_scope.cancel()
    await trio.sleep(3)  # nobody announces any more
    assert await registry.nodes() == []


async def test_a_drain_spreads_over_the_peers_and_a_second_drain_waits_for_the_first(
    autojump_clock: MockClock,
) -> None:
    network = MemoryNetwork(random=random.Random(0))
    registry = MemoryRegistry()
    log = ReplayLog()
    servers = [
        ReconnectServer(
            log,
            spread=POLICY,
            admission_rate=10.0,
            admission_burst=1_000,
            registry=registry,
            node=f"n{i}",
            rng=random.Random(i),
            ping_interval=None,
        )
        for i in range(3)
    ]
    reasons: dict[int, list[str | None]] = {0: [], 1: []}

    async def client(node: int) -> None:
        ws, _ = await resumed(nursery, servers[node], None)
        reasons[node].append((await closed_with(ws)).reason)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i, server in enumerate(servers):
                await nursery.start(server.serve_listeners, [network.listen(f"n{i}")])
            for _ in range(60):
                nursery.start_soon(client, 0)
            for _ in range(20):
                nursery.start_soon(client, 1)
            await trio.sleep(5)
            assert [s.statistics().ready_clients for s in servers] == [60, 20, 0]
            first = await servers[0].drain()
            # 60 clients over the two peers' 10 + 10 per second: a 3 s window.
            assert (first.drained, first.window, first.survivors) == (60, 3.0, ("n1", "n2"))
            status = {n.node: n for n in await registry.nodes()}
            assert status["n0"] == NodeStatus("n0", 10.0, draining=True, drain_ends=5.0 + 3.25)
            await trio.sleep(1)  # t = 6: n1 drains while n0's window is open
            second = await servers[1].drain()
            assert second.survivors == ("n2",)  # n0 is draining
            assert second.window == 2.0  # 20 / 10 is 2 s, the min_window
            await trio.sleep(10)
            # Past its window, n0 is no longer draining.
            status = {n.node: n for n in await registry.nodes()}
            assert status["n0"] == NodeStatus("n0", 10.0)
            nursery.cancel_scope.cancel()
    first_hints = sorted(hints_of(reasons[0]))
    assert len(set(first_hints)) == 60
    assert first_hints[0] >= 0.25
    assert first_hints[-1] <= 3.25
    # Stratified over 3 s: one client per 50 ms slot.
    slots = [math.floor((h - 0.25) / 0.05) for h in first_hints]
    assert slots == list(range(60))
    # The second drain's clients arrive only after the first's window ends
    # (8.25 on the clock, 2.25 s after the second drain started), over 2 s.
    second_hints = sorted(hints_of(reasons[1]))
    assert second_hints[0] >= 8.25 - 6.0 + 0.25
    assert second_hints[-1] <= 8.25 - 6.0 + 0.25 + 2.0


async def test_a_stopping_node_announces_draining_then_leaves(autojump_clock: MockClock) -> None:
    network = MemoryNetwork(random=random.Random(0))
    servers: list[ReconnectServer] = []
    announced: list[tuple[float, NodeStatus, int]] = []

    class Recording(MemoryRegistry):
        async def announce(self, status: NodeStatus, *, ttl: float) -> None:
            ready = servers[0].statistics().ready_clients
            announced.append((trio.current_time(), status, ready))
            await super().announce(status, ttl=ttl)

    registry = Recording()
    servers.extend(
        ReconnectServer(
            ReplayLog(), admission_rate=50.0, registry=registry, node=f"n{i}", ping_interval=None
        )
        for i in range(2)
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i, server in enumerate(servers):
                await nursery.start(server.serve_listeners, [network.listen(f"n{i}")])
            _ws, _ = await resumed(nursery, servers[0], None)
            await trio.sleep(1.5)
            summary = await servers[0].shutdown(drain_timeout=5.0)
            assert summary.survivors == ("n1",)
            assert summary.window == 2.0  # 1 client / 50 per s is under min_window
            await trio.sleep(10)  # n0 would have announced ten times by now
            assert await registry.nodes() == [NodeStatus("n1", 50.0)]
            nursery.cancel_scope.cancel()
    mine = [(t, status, ready) for t, status, ready in announced if status.node == "n0"]
    # Once a second while serving, then draining (announced while its client
    # was still connected, before it was closed), then once more as it leaves:
    # the same draining status, alive only until its window ends, so that a
    # later drain does not stack on the survivors still taking this one's
    # clients (test_server_rolling.py); then nothing.
    draining = NodeStatus("n0", 50.0, draining=True, drain_ends=1.5 + 0.25 + 2.0)
    assert [t for t, _, _ in mine[:3]] == [0.0, 1.0, 1.5]
    assert mine[2] == (1.5, draining, 1)
    assert len(mine) == 4
    left_at, left_status, _ = mine[3]
    assert left_status == draining
    assert 1.5 <= left_at < 1.5 + 0.25 + 2.0
    assert not any(status.draining for _, status, _ in mine[:2])
