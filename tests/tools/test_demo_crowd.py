"""The demo's crowd: clients in child processes, driven as one crowd."""

from __future__ import annotations

import os

import pytest
import trio

from trio_reconnect._tools.demo import _crowd
from trio_reconnect._tools.demo._crowd import CLIENTS_PER_PROCESS, open_crowd, shares
from trio_reconnect.server import ReconnectServer, ReplayLog


@pytest.mark.parametrize(
    ("clients", "expected"),
    [
        (1, [1]),
        (CLIENTS_PER_PROCESS, [CLIENTS_PER_PROCESS]),
        (CLIENTS_PER_PROCESS + 1, [26, 25]),
        (300, [50] * 6),
        (301, [43] * 7),
        (302, [44, 43, 43, 43, 43, 43, 43]),
    ],
)
def test_shares_are_even_and_at_most_the_limit(clients: int, expected: list[int]) -> None:
    assert CLIENTS_PER_PROCESS == 50
    assert shares(clients) == expected
    assert sum(expected) == clients


def test_shares_want_a_client() -> None:
    with pytest.raises(ValueError, match="clients must be at least 1, got 0"):
        shares(0)


async def test_crowd_of_several_processes_acts_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_crowd, "CLIENTS_PER_PROCESS", 2)  # 5 clients: 3 processes
    server = ReconnectServer(ReplayLog())
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            (tcp,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            await nursery.start(server.serve_listeners, [tcp])
            url = f"ws://127.0.0.1:{tcp.socket.getsockname()[1]}/c"
            async with open_crowd(url, 5) as crowd:
                await crowd.wait_until()
                assert crowd.status.connected == 5
                assert len(crowd.pids) == 3
                # each in a session of its own, as on machines of their own
                assert {os.getsid(pid) for pid in crowd.pids} == set(crowd.pids)
                for n in range(3):
                    await server.publish({"n": n})
                await crowd.wait_until(delivered=3)
                assert crowd.status.delivered == 15
                before = crowd.status.reconnects
                drained = (await server.restart()).drained
                await crowd.wait_until(reconnects=before + drained)
                assert drained == 5
                await crowd.collect()
                assert crowd.collected == 1
                records = await crowd.stop()
            nursery.cancel_scope.cancel()
    assert len(records) == 5
    assert all(len(r.ids) == 3 and len(r.durations) == 1 for r in records)
    assert crowd.status.median_reconnect is not None  # the reconnects of every process
