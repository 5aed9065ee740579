"""The pytest plugin's fixtures, used the way docs/howto/faults.md shows."""

from __future__ import annotations

import importlib.metadata
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from trio_reconnect import (
    ConnectionState,
    DelaySource,
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


# A pytest run in a fresh interpreter where ``import resource`` fails, as it
# does on Windows: the pytest11 entry point loads our plugin first thing.
_WITHOUT_RESOURCE = """
import importlib.abc
import sys


class HideResource(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "resource":
            raise ModuleNotFoundError("No module named 'resource'", name=name)
        return None


sys.modules.pop("resource", None)
sys.meta_path.insert(0, HideResource())
import pytest

status = pytest.main(sys.argv[1:])
import trio_reconnect.testing as testing
import trio_reconnect._tools._herd  # the herd command and the rolling deploy
import trio_reconnect.testing._herd_deploy
from trio_reconnect.testing._herd import peak_rss_kb

assert "resource" not in sys.modules
assert testing.run_herd is not None and peak_rss_kb() is None
sys.exit(status)
"""

_USES_THE_FIXTURES = """
def test_fixture(memory_network):
    assert memory_network.statistics().resets == 0
"""


def test_the_plugin_loads_where_resource_does_not_exist(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(_USES_THE_FIXTURES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_RESOURCE, "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


# ------------------------------------------------------------- your own server, any handler


async def test_your_trio_websocket_handler_on_the_network(
    autojump_clock: trio.abc.Clock,
    memory_network: MemoryNetwork,
    serve_websocket: Any,
    connect_client: Any,
) -> None:
    # Issue 20: a newcomer's own trio-websocket server (not our protocol: a
    # price feed that sends a greeting, then the price), with a fault.
    connections = 0

    async def prices(request: trio_websocket.WebSocketRequest) -> None:
        nonlocal connections
        connections += 1
        ws = await request.accept()
        await ws.send_message(f"hello #{connections}")
        await ws.send_message("42.0")
        await trio.sleep_forever()

    url = await serve_websocket(prices, "prices")
    assert url == "ws://prices/"
    async with connect_client("alice", url=url, resume=False) as ws:
        with trio.fail_after(60):
            assert [await ws.get_message(), await ws.get_message()] == ["hello #1", "42.0"]
            memory_network.reset("alice")  # RST: she reconnects on her own
            assert [await ws.get_message(), await ws.get_message()] == ["hello #2", "42.0"]
    assert ws.statistics().reconnects == 1
    assert memory_network.statistics().resets == 1


async def test_a_raw_stream_handler_on_the_network(
    autojump_clock: trio.abc.Clock, serve_stream: Any, connect_client: Any
) -> None:
    # Bytes in, bytes out: a server that refuses the first handshake with an
    # HTTP 503 and a Retry-After, then speaks websocket (trio-websocket's
    # wrap_server_stream) on the next connection.
    calls = 0

    async def handler(stream: trio.abc.Stream) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await stream.receive_some()  # the client's opening request
            await stream.send_all(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n"
            )
            await stream.aclose()
            return
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(nursery, stream)
            ws = await request.accept()
            await ws.send_message("hello")
            await trio.sleep_forever()

    url = await serve_stream(handler, "legacy", 8080)
    assert url == "ws://legacy:8080/"
    transitions: list[Transition] = []
    async with connect_client("bob", url=url, resume=False, on_transition=transitions.append) as ws:
        with trio.fail_after(60):
            assert await ws.get_message() == "hello"
            assert trio.current_time() == 2.0  # the server's Retry-After, to the tick
    waits = [t for t in transitions if t.state is ConnectionState.BACKING_OFF]
    assert [(t.delay, t.delay_source, t.status_code) for t in waits] == [
        (2.0, DelaySource.SERVER, 503)
    ]


def test_the_howto_s_own_server_samples_pass_as_pasted(tmp_path: Path) -> None:
    # docs/howto/faults.md, "Your own server": each sample is a test file a
    # user pastes into a project with trio_mode on.
    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "howto" / "faults.md").read_text()
    section = page[page.index("## Your own server") : page.index("## The faults")]
    samples = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(samples) == 2
    for n, sample in enumerate(samples):
        (tmp_path / f"test_sample_{n}.py").write_text(sample)
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
