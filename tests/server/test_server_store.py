"""When the log is unreachable, or lost what it held (PROTOCOL.md section 3.4), in virtual time."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked
from trio_websocket import ConnectionClosed

from tests.support.faulty_log import FaultyLog
from tests.support.server_clients import (
    closed_with,
    connect,
    header,
    ids,
    receive_json,
    refused_with,
    resumed,
)
from trio_reconnect import Gap, ServerEvent, open_reconnecting_websocket
from trio_reconnect._hints import parse_retry_after_reason
from trio_reconnect._protocol import encode_resume
from trio_reconnect.server import LoggedEvent, LogUnavailableError, ReconnectServer, ReplayLog
from trio_reconnect.testing import MemoryNetwork


def make_server(log: FaultyLog, **kwargs: Any) -> ReconnectServer:
    options: dict[str, Any] = {"rng": random.Random(0), "ping_interval": None, **kwargs}
    return ReconnectServer(log, **options)


async def test_unavailable_keeps_clients_refuses_new_ones_and_fails_publish(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = FaultyLog(ReplayLog(start=1))
    server = make_server(log, outage_limit=30.0, outage_retry_after=3.0)
    with trio.fail_after(60):
        ws, _ = await resumed(nursery, server, None)
        assert await server.publish("one") == "1"
        assert (await receive_json(ws))["id"] == "1"
        await trio.sleep(10 - trio.current_time())
        log.go_down()
        await wait_all_tasks_blocked()
        # publish fails loudly, and nothing is appended behind the error.
        with pytest.raises(LogUnavailableError):
            await server.publish("never stored")
        rejection = await refused_with(server)
        assert rejection.status_code == 503
        assert header(rejection, b"retry-after") == b"3"  # outage_retry_after
        stats = server.statistics()
        assert (stats.clients, stats.ready_clients, stats.refused) == (1, 1, 1)
        assert stats.log_errors >= 2  # the fan-out's read and the publish
        assert stats.events_published == 1
        # The store comes back; the fan-out's next attempt (once a second) finds it.
        await trio.sleep(2.5)
        log.come_back()
        await trio.sleep(0.75)  # the fan-out found it back at t = 13 (once a second)
        # New handshakes are admitted again (nothing was published meanwhile).
        other, frames = await resumed(nursery, server, "1")
        assert frames == [{"type": "ready", "id": "1", "lost": False}]
        assert await server.publish("two") == "2"
        assert await receive_json(ws) == {"type": "event", "id": "2", "data": "two"}
        assert await receive_json(other) == {"type": "event", "id": "2", "data": "two"}
    assert trio.current_time() == 13.25


async def test_an_outage_past_the_limit_closes_every_client_with_a_hint(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = FaultyLog(ReplayLog(start=1))
    server = make_server(log, outage_limit=5.0)
    with trio.fail_after(60):
        clients = [(await resumed(nursery, server, None))[0] for _ in range(3)]
        await server.publish("one")
        for ws in clients:
            assert (await receive_json(ws))["id"] == "1"
        await trio.sleep(20 - trio.current_time())
        log.go_down()
        closes = []
        for ws in clients:
            closes.append(await closed_with(ws))
        # The fan-out retries once a second; the fifth failed second closes them.
        assert trio.current_time() == 25.0
        await wait_all_tasks_blocked()
    assert [c.code for c in closes] == [1013, 1013, 1013]
    hints = [parse_retry_after_reason(c.reason or "") for c in closes]
    assert all(h is not None and 0.25 <= h <= 2.25 for h in hints)
    assert len(set(hints)) == 3  # spread, not a herd
    assert all('"reason":"log unavailable"' in (c.reason or "") for c in closes)
    assert server.statistics().clients == 0


async def test_no_outage_limit_keeps_clients_for_good(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = FaultyLog(ReplayLog(start=1))
    server = make_server(log, outage_limit=None)
    with trio.fail_after(1_000):
        ws, _ = await resumed(nursery, server, None)
        log.go_down()
        await trio.sleep(600)
        assert server.statistics().ready_clients == 1
        log.come_back()
        await trio.sleep(1)
        await server.publish("after")
        assert (await receive_json(ws))["data"] == "after"


async def test_a_log_that_lost_its_data_closes_clients_who_then_learn_what_they_missed(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = FaultyLog(ReplayLog(start=1))
    server = make_server(log)
    with trio.fail_after(60):
        clients = [(await resumed(nursery, server, None))[0] for _ in range(2)]
        for n in range(3):
            await server.publish(n)  # 1, 2, 3
        for ws in clients:
            assert [(await receive_json(ws))["id"] for _ in range(3)] == ["1", "2", "3"]
        await trio.sleep(7 - trio.current_time())
        log.lose_data(restart_at=5_000)  # the store restarts empty, ids from the clock
        closes = [await closed_with(ws) for ws in clients]
        assert trio.current_time() == 7.0  # at once, not at the next tail timeout
        assert [c.code for c in closes] == [1012, 1012]
        hints = [parse_retry_after_reason(c.reason or "") for c in closes]
        assert all(h is not None and 0.25 <= h <= 2.25 for h in hints)
        assert len(set(hints)) == 2
        assert server.statistics().log_discontinuities == 1
        assert await server.publish("new") == "5000"
        # A client resuming from "3" is told exactly that: lost, up to 5000.
        ws, frames = await resumed(nursery, server, "3")
        assert frames == [{"type": "ready", "id": "5000", "lost": True}]
        # The fan-out restarted from the log's newest: live events flow again.
        assert await server.publish("next") == "5001"
        assert await receive_json(ws) == {"type": "event", "id": "5001", "data": "next"}


async def test_a_fanout_that_fell_behind_the_ring_closes_clients_with_1012(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = FaultyLog(ReplayLog(max_events=3, start=1))
    server = make_server(log)
    with trio.fail_after(60):
        ws, _ = await resumed(nursery, server, None)
        await server.publish("one")
        assert (await receive_json(ws))["id"] == "1"
        held = trio.Event()
        log.hold_tail = held
        for n in range(8):
            await server.publish(n)  # 2..9; the fan-out holds [2], the ring keeps 7..9
        log.hold_tail = None
        held.set()
        seen = ["1"]
        close = None
        while close is None:  # the close drops what was queued: "2" may or may not go out
            try:
                seen.append((await receive_json(ws))["id"])
            except ConnectionClosed as exc:
                close = exc.reason
        assert close is not None
        assert close.code == 1012
        assert seen in (["1"], ["1", "2"])
        assert server.statistics().log_discontinuities == 1
        # Resuming from its last id, the client is told events were lost, up to 9.
        ws, frames = await resumed(nursery, server, seen[-1])
        assert frames == [{"type": "ready", "id": "9", "lost": True}]
        await server.publish("ten")
        assert (await receive_json(ws))["id"] == "10"


async def test_a_real_client_gets_a_gap_and_goes_on_after_the_store_lost_its_data(
    autojump_clock: MockClock,
) -> None:
    network = MemoryNetwork(random=random.Random(1), latency=0.001)
    log = FaultyLog(ReplayLog(start=1))
    server = make_server(log)
    items: list[object] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_listeners, [network.listen()])
            async with open_reconnecting_websocket(
                "ws://server/", open_stream=network.client(), random=random.Random(2)
            ) as ws:
                await ws.wait_ready()
                await server.publish("a")
                items.append(await ws.get_message())
                log.lose_data(restart_at=9_000)
                await trio.sleep(3)  # the client is closed with a hint and resumes
                await server.publish("b")
                items.append(await ws.get_message())
                items.append(await ws.get_message())
            nursery.cancel_scope.cancel()
    assert items == [ServerEvent("1", "a"), Gap("1"), ServerEvent("9000", "b")]


async def test_a_node_whose_log_is_down_from_the_start_refuses_then_serves(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = FaultyLog(ReplayLog(start=1))
    log.go_down()
    server = make_server(log, outage_retry_after=2.0)
    with trio.fail_after(60):
        rejection = await refused_with(server)
        assert rejection.status_code == 503
        assert header(rejection, b"retry-after") == b"2"
        log.come_back()
        await server.publish("first")  # appended; the fan-out is not positioned yet
        await trio.sleep(1)  # its next attempt positions it
        _, frames = await resumed(nursery, server, None)
        assert ids(frames) == ["1"]


@attrs.define(eq=False)
class StuckLog(FaultyLog):
    """A log whose ``newest`` never answers (a store that hangs, not one that fails)."""

    async def newest(self) -> str | None:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_handshake_does_not_wait_forever_for_a_fanout_that_never_read_the_log(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(StuckLog(ReplayLog(start=1)), handshake_timeout=4.0)
    with trio.fail_after(60):
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume(None))
        close = await closed_with(ws)
    assert trio.current_time() == 4.0
    assert close.code == 1013
    assert '"reason":"log unavailable"' in (close.reason or "")


@attrs.define(eq=False)
class SkippingLog(FaultyLog):
    """A backend with a bug: its tail skips an event without saying so."""

    skip: bool = False

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        events = await super().tail(after, limit=limit, block=block)
        return events[1:] if self.skip and len(events) > 1 else events


async def test_a_tail_that_skips_ids_is_a_discontinuity(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = SkippingLog(ReplayLog(start=1))
    server = make_server(log)
    with trio.fail_after(60):
        ws, _ = await resumed(nursery, server, None)
        await server.publish("one")
        assert (await receive_json(ws))["id"] == "1"
        log.skip = True
        log.inner.append_nowait("two")  # both arrive in one tail read, "2" is skipped
        log.inner.append_nowait("three")
        close = await closed_with(ws)
        assert close.code == 1012
        assert server.statistics().log_discontinuities == 1
        log.skip = False
        _, frames = await resumed(nursery, server, "1")
        assert ids(frames) == ["2", "3"]  # told exactly what it missed


@attrs.define(eq=False)
class BrokenLog(FaultyLog):
    """A backend with a bug: its tail raises something that is not an EventLogError."""

    broken: bool = False

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        if self.broken:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("a bug in the backend")
        return await super().tail(after, limit=limit, block=block)


async def test_a_tail_that_raises_anything_else_counts_as_the_log_down(
    autojump_clock: MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    log = BrokenLog(ReplayLog(start=1))
    server = make_server(log, outage_limit=None)
    with trio.fail_after(60):
        ws, _ = await resumed(nursery, server, None)
        log.broken = True
        await server.publish("one")  # wakes the fan-out, whose next read raises
        assert (await receive_json(ws))["id"] == "1"
        await trio.sleep(3)
        assert server.statistics().log_errors >= 2
        assert (await refused_with(server)).status_code == 503
        assert "a bug in the backend" in caplog.text
        log.broken = False
        await trio.sleep(1)
        await server.publish("two")
        assert (await receive_json(ws))["id"] == "2"
        assert server.statistics().ready_clients == 1  # kept through it all
