"""A drain's window outlives the node that drained: rolling deploys over a registry."""

from __future__ import annotations

import random

import pytest
import trio
from trio.testing import MockClock

from tests.support.server_clients import closed_with, resumed
from trio_reconnect import open_reconnecting_websocket
from trio_reconnect._hints import parse_retry_after_reason
from trio_reconnect.server import (
    DEFAULT_CLOSE_TIMEOUT,
    MemoryRegistry,
    NodeStatus,
    ReconnectServer,
    ReplayLog,
    SpreadPolicy,
    plan_cluster_drain,
)
from trio_reconnect.testing import MemoryNetwork

POLICY = SpreadPolicy(min_window=2.0, rate=1_000.0, base=0.25)


def hints_of(reasons: list[str | None]) -> list[float]:
    hints = [parse_retry_after_reason(r or "") for r in reasons]
    assert all(h is not None for h in hints), reasons
    return [h for h in hints if h is not None]


def test_a_replacements_inherited_window_delays_the_next_drain() -> None:
    # n0 was replaced by a new process under its name while its window
    # (ending at 12) is open: not draining, but its clients still arrive.
    nodes = [
        NodeStatus("n0", 300.0, drain_ends=12.0),
        NodeStatus("n1", 300.0),
        NodeStatus("n2", 300.0),
    ]
    plan = plan_cluster_drain(600, me="n1", nodes=nodes, now=10.0, policy=POLICY)
    assert plan.survivors == ("n0", "n2")  # the replacement takes clients
    assert plan.spread.base == pytest.approx(0.25 + 2.0)
    assert plan.ends == pytest.approx(12.0 + 0.25 + 1.0 * 2.0)


def node(log: ReplayLog, registry: MemoryRegistry, name: str, seed: int) -> ReconnectServer:
    return ReconnectServer(
        log,
        spread=POLICY,
        admission_rate=10.0,
        admission_burst=1_000,
        registry=registry,
        node=name,
        rng=random.Random(seed),
        ping_interval=None,
    )


async def serve_node(
    server: ReconnectServer,
    network: MemoryNetwork,
    host: str,
    *,
    task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``server`` at ``host`` until the returned scope is cancelled (the process exits)."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_listeners, [network.listen(host)])
            task_status.started(scope)


@pytest.mark.parametrize("same_name", [False, True])
async def test_a_stopped_nodes_window_stays_until_it_ends(
    autojump_clock: MockClock, nursery: trio.Nursery, same_name: bool
) -> None:
    """n0 stops (and is replaced) with its window open; n1's drain waits for its end.

    With unique names the stopped node's draining status stays in the
    registry until its window ends; with the same name, the replacement
    carries the window in its own announcements.
    """
    network = MemoryNetwork(random=random.Random(0))
    registry = MemoryRegistry()
    log = ReplayLog(start=1)
    servers = [node(log, registry, f"n{i}", i) for i in range(3)]
    scopes = [await nursery.start(serve_node, s, network, f"n{i}") for i, s in enumerate(servers)]
    reasons: dict[int, list[str | None]] = {0: [], 1: []}

    async def client(index: int) -> None:
        ws, _ = await resumed(nursery, servers[index], None)
        reasons[index].append((await closed_with(ws)).reason)

    with trio.fail_after(60):
        for _ in range(60):
            nursery.start_soon(client, 0)
        for _ in range(20):
            nursery.start_soon(client, 1)
        await trio.sleep(5)
        assert [s.statistics().ready_clients for s in servers] == [60, 20, 0]
        first = await servers[0].shutdown()
        # 60 clients over the two peers' 10 + 10 per second: a 3 s window.
        assert (first.drained, first.window, first.survivors) == (60, 3.0, ("n1", "n2"))
        ends = 5.0 + 0.25 + 3.0
        assert first.seconds < 1.0
        scopes[0].cancel()  # the process exits, its window open
        await trio.sleep(6.0 - trio.current_time())
        status = {n.node: n for n in await registry.nodes()}
        if same_name:
            # A new process under the name n0, as a restarted host:port would be.
            scopes[0] = await nursery.start(serve_node, node(log, registry, "n0", 9), network, "n0")
            status = {n.node: n for n in await registry.nodes()}
            assert status["n0"] == NodeStatus("n0", 10.0, drain_ends=ends)
        else:
            assert status["n0"] == NodeStatus("n0", 10.0, draining=True, drain_ends=ends)
        second = await servers[1].drain()
        drained_at = trio.current_time()
        assert second.survivors == (("n0", "n2") if same_name else ("n2",))
        await trio.sleep(ends + 1.5 - trio.current_time())  # past the window, and an announcement
        status = {n.node: n for n in await registry.nodes()}
        if same_name:
            assert status["n0"] == NodeStatus("n0", 10.0)
        else:
            assert "n0" not in status  # the stopped node's status expired with its window
        await trio.sleep(10)
    # The second drain's clients arrive only after the first's window ends.
    second_hints = sorted(hints_of(reasons[1]))
    assert len(second_hints) == 20
    assert second_hints[0] >= ends - drained_at + 0.25
    assert second_hints[-1] <= ends - drained_at + 0.25 + second.window


async def test_a_stop_past_its_window_withdraws_and_announces_no_more(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    network = MemoryNetwork(random=random.Random(0))
    registry = MemoryRegistry()
    server = node(ReplayLog(start=1), registry, "n0", 0)
    await nursery.start(serve_node, server, network, "n0")
    with trio.fail_after(60):
        async with open_reconnecting_websocket(
            "ws://n0/", open_stream=network.client("c"), ping_interval=None
        ):
            while server.statistics().ready_clients < 1:
                await trio.sleep(0.1)
            assert [n.node for n in await registry.nodes()] == ["n0"]
            network.blackhole("c")  # it never answers the close: the stop waits
            summary = await server.shutdown()
            assert summary.drained == 1
            assert summary.seconds == pytest.approx(DEFAULT_CLOSE_TIMEOUT)
            # Its window (2 s) ended long ago: withdrawn at once.
            assert await registry.nodes() == []
            # The node still runs (refusing), but announces no more.
            await trio.sleep(10)
            assert await registry.nodes() == []
