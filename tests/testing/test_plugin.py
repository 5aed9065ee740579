"""The pytest plugin's fixtures, used the way docs/howto/faults.md shows."""

from __future__ import annotations

import importlib.metadata
import random
from collections.abc import Callable
from typing import Any

import pytest
import trio

from trio_reconnect import (
    ConnectionState,
    ReconnectFailed,
    ServerEvent,
    Transition,
    open_reconnecting_websocket,
)
from trio_reconnect.server import ReconnectServer, ReplayLog
from trio_reconnect.testing import MemoryNetwork
from trio_reconnect.testing.pytest_plugin import SERVER_URL


def test_the_plugin_is_registered_through_pytest11(pytestconfig: pytest.Config) -> None:
    points = importlib.metadata.entry_points(group="pytest11")
    assert any(p.value == "trio_reconnect.testing.pytest_plugin" for p in points)
    assert pytestconfig.pluginmanager.has_plugin("trio_reconnect")


async def test_no_event_is_lost_across_a_reset(
    autojump_clock: trio.abc.Clock,
    memory_network: MemoryNetwork,
    reconnect_server: ReconnectServer,
    connect_client: Any,
) -> None:
    async with connect_client("alice") as ws:
        with trio.fail_after(60):
            await ws.wait_ready()
            await reconnect_server.publish("one")
            memory_network.reset("alice")
            await reconnect_server.publish("two")
            items = [await ws.get_message(), await ws.get_message()]
    assert [item.data for item in items if isinstance(item, ServerEvent)] == ["one", "two"]
    assert memory_network.statistics().resets == 1
    assert reconnect_server.statistics().replayed == 1


async def test_half_open_link_is_noticed(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(random=random.Random(1), latency=0.02)
    server = ReconnectServer(ReplayLog(start=1))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve_listeners, [network.listen("server", 80)])
        async with open_reconnecting_websocket(
            "ws://server/",
            open_stream=network.client("bob"),
            ping_interval=5,
            ping_timeout=3,
        ) as ws:
            with trio.fail_after(60):
                await ws.wait_ready()
                network.blackhole("bob")
                start = trio.current_time()
                while ws.state is ConnectionState.OPEN:
                    await trio.sleep(0.1)
                assert trio.current_time() - start <= 5 + 3 + 0.1
                await ws.wait_ready()  # on a new connection
        assert ws.statistics().reconnects == 1
        nursery.cancel_scope.cancel()


class TestOverriddenOptions:
    @pytest.fixture
    def reconnect_server_options(self) -> dict[str, Any]:
        return {"log": ReplayLog(max_events=100, start=1), "admission_rate": 50}

    async def test_the_server_is_configured(
        self,
        autojump_clock: trio.abc.Clock,
        reconnect_server: ReconnectServer,
        connect_client: Any,
    ) -> None:
        assert reconnect_server.admission_rate == 50
        assert isinstance(reconnect_server.log, ReplayLog)
        assert reconnect_server.log.max_events == 100
        async with connect_client(url=SERVER_URL) as ws:
            with trio.fail_after(5):
                await ws.wait_ready()
            assert ws.state is ConnectionState.OPEN


async def test_clients_are_seeded_per_name(
    autojump_clock: trio.abc.Clock, memory_network: MemoryNetwork, connect_client: Any
) -> None:
    # Nothing listens: each attempt is refused; the seeded jitter is per name
    waits: dict[str, list[float]] = {"a": [], "b": []}

    def record(name: str) -> Callable[[Transition], None]:
        def hook(change: Transition) -> None:
            if change.delay is not None:
                waits[name].append(change.delay)

        return hook

    for name in waits:
        with pytest.raises(ReconnectFailed):
            async with connect_client(name, max_attempts=3, on_transition=record(name)) as ws:
                await ws.wait_ready()
    assert waits["a"] != waits["b"]
    assert len(waits["a"]) == 2
