"""Restart, drain and admission control: spread retry timing in virtual time."""

from __future__ import annotations

import collections
import math
import random
from typing import Any, cast

import pytest
import trio
import trio.testing
import trio_websocket
from trio.testing import MockClock
from trio_websocket import WebSocketConnection

from tests.support.server_clients import (
    attempt,
    closed_with,
    handshake,
    header,
    refused_with,
    resumed,
)
from trio_reconnect._hints import MAX_CLOSE_REASON_BYTES, parse_retry_after_reason
from trio_reconnect.server import ReconnectServer, ReplayLog, SpreadPolicy


def make_server(**kwargs: Any) -> ReconnectServer:
    return ReconnectServer(ReplayLog(start=1), rng=random.Random(1), **kwargs)


async def test_restart_spreads_returns_evenly(autojump_clock: MockClock) -> None:
    n, bins = 200, 10
    policy = SpreadPolicy(min_window=2.0, rate=1_000.0, base=0.25)
    server = make_server(spread=policy)
    hints: list[float] = []
    reasons: list[str] = []
    arrivals: list[float] = []
    restart_at = 5.0

    # Each client is its own task: connect, wait for the restart, sleep for
    # the hint, reconnect.
    async def life() -> None:
        ready = trio.Event()

        async def first(ws: WebSocketConnection) -> None:
            await handshake(ws, None)
            ready.set()
            close = await closed_with(ws)
            assert close.code == 1012
            assert close.reason is not None
            assert trio.current_time() == restart_at
            reasons.append(close.reason)
            hint = parse_retry_after_reason(close.reason)
            assert hint is not None
            hints.append(hint)
            my_hints.append(hint)

        async def second(ws: WebSocketConnection) -> None:
            arrivals.append(trio.current_time())
            assert trio.current_time() == restart_at + my_hints[0]
            frames = await handshake(ws, None)
            assert frames[-1]["type"] == "ready"

        my_hints: list[float] = []
        assert await attempt(server, first) is None
        await trio.sleep(my_hints[0])
        assert await attempt(server, second) is None

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(life)
            await trio.sleep(restart_at)
            assert server.statistics().ready_clients == n
            await server.restart()
            assert trio.current_time() == restart_at  # the closes took no virtual time
            assert server.statistics().clients == 0

    assert len(hints) == n
    assert len(set(hints)) == n  # N distinct retryAfter values
    assert all(len(reason.encode()) <= MAX_CLOSE_REASON_BYTES for reason in reasons)
    assert all(0.25 <= hint <= 2.25 for hint in hints)
    # In virtual time the returns fill the 2 s window evenly: one per 10 ms slot.
    offsets = [t - restart_at - 0.25 for t in arrivals]
    per_bin = collections.Counter(min(bins - 1, math.floor(o / (2.0 / bins))) for o in offsets)
    assert sorted(per_bin) == list(range(bins))
    assert max(per_bin.values()) <= n // bins + 1
    assert min(per_bin.values()) >= n // bins - 1
    stats = server.statistics()
    assert (stats.restarts, stats.fresh) == (1, 2 * n)


async def test_restart_refuse_for(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server(spread=SpreadPolicy(min_window=2.0, base=0.25))
    with trio.fail_after(30):
        ws, _ = await resumed(nursery, server)
        closing = trio.Event()
        reasons: list[str | None] = []

        async def watch() -> None:
            reasons.append((await closed_with(ws)).reason)
            closing.set()

        nursery.start_soon(watch)
        await server.restart(refuse_for=5.0)
        await closing.wait()
        hint = parse_retry_after_reason(reasons[0])
        assert hint is not None
        assert 5.25 <= hint <= 7.25  # points past the refusal
        await trio.sleep(1.0)
        rejection = await refused_with(server)
        assert rejection.status_code == 503
        assert header(rejection, b"retry-after") == b"4"  # the refusal ends at t=5
        await trio.sleep(hint - 1.0)
        assert trio.current_time() == hint
        ws, frames = await resumed(nursery, server)  # refusal over
        assert frames[-1]["type"] == "ready"
    assert server.statistics().refused == 1


async def test_drain_codes_and_validation(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server()
    with trio.fail_after(10):
        ws, _ = await resumed(nursery, server)
        with pytest.raises(ValueError, match="code must be"):
            await server.drain(code=1000)
        with pytest.raises(ValueError, match="refuse_for"):
            await server.drain(refuse_for=-1.0)
        with pytest.raises(ValueError, match="123"):
            await server.drain(reason="x" * 120)
        assert server.statistics().clients == 1  # nobody was closed
        assert server.statistics().restarts == 0
        async with trio.open_nursery() as inner:
            inner.start_soon(server.drain)
            close = await closed_with(ws)
        assert close.code == 1001
        assert close.reason is not None
        assert close.reason.startswith('{"reason":"going away","retryAfter":')
    assert server.statistics().restarts == 1


async def test_restart_with_no_clients(autojump_clock: MockClock) -> None:
    server = make_server()
    with trio.fail_after(1):
        await server.restart()
    assert server.statistics().restarts == 1


async def test_restart_closes_handshaking_clients_too(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    started = trio.Event()

    async def slow_snapshot() -> tuple[str | None, Any]:
        started.set()
        await trio.sleep_forever()
        raise AssertionError

    server = ReconnectServer(ReplayLog(start=1), snapshot=slow_snapshot, rng=random.Random(2))
    from tests.support.server_clients import connect
    from trio_reconnect._protocol import encode_resume

    with trio.fail_after(10):
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume(None))
        await started.wait()
        async with trio.open_nursery() as inner:
            inner.start_soon(server.restart)
            close = await closed_with(ws)
        assert close.code == 1012
    assert server.statistics().clients == 0
    assert server.statistics().snapshots == 0


# -- admission control ---------------------------------------------------------


async def test_admission_refuses_excess_with_spread_retry_after(
    autojump_clock: MockClock,
) -> None:
    server = make_server(admission_rate=10.0)
    admitted: list[float] = []
    told: list[int] = []

    async def life() -> None:
        async def body(ws: WebSocketConnection) -> None:
            frames = await handshake(ws, None)
            assert frames[-1]["type"] == "ready"
            admitted.append(trio.current_time())

        while True:
            rejection = await attempt(server, body)
            if rejection is None:
                return
            assert rejection.status_code == 503
            value = header(rejection, b"retry-after")
            assert value is not None
            told.append(int(value))
            await trio.sleep(int(value))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(life)
    # 10 admitted at once (one second's burst), the excess spread over the
    # following seconds at the admission rate, all admitted on their return.
    assert collections.Counter(told) == {1: 10, 2: 10}
    assert collections.Counter(admitted) == {0.0: 10, 1.0: 10, 2.0: 10}
    assert server.statistics().refused == 20
    assert server.statistics().fresh == 30


async def test_admission_off_by_default(autojump_clock: MockClock) -> None:
    server = make_server()
    results = []

    async def body(ws: WebSocketConnection) -> None:
        await handshake(ws, None)

    with trio.fail_after(10):
        for _ in range(50):
            results.append(await attempt(server, body))
    assert results == [None] * 50
    assert server.statistics().refused == 0


async def test_drain_hints_a_return_time_a_late_close_frame_still_meets(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # One client's writer is busy for 30 ms (virtual) when the drain starts:
    # its close frame goes out 30 ms late, so its retryAfter is 30 ms shorter
    # and both clients still come back exactly on their planned slots.
    server = make_server(spread=SpreadPolicy(min_window=0.0, rate=1e6, base=0.25))
    busy = {"armed": False}

    async def slow_connect() -> WebSocketConnection:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        pump = server_stream.send_stream.send_all_hook
        assert pump is not None

        async def hook() -> None:
            await pump()  # the bytes reach the client now...
            if busy["armed"]:  # ...and the writer stays busy for 30 ms
                busy["armed"] = False
                await trio.sleep(0.030)

        server_stream.send_stream.send_all_hook = hook
        nursery.start_soon(server.serve_stream, server_stream)
        return await trio_websocket.wrap_client_stream(
            nursery, cast(Any, client_stream), "localhost", "/"
        )

    returns: list[float] = []

    async def watch(ws: WebSocketConnection, closed: trio.Event) -> None:
        close = await closed_with(ws)
        hint = parse_retry_after_reason(close.reason)
        assert hint is not None
        returns.append(trio.current_time() + hint)
        closed.set()

    with trio.fail_after(10):
        slow = await slow_connect()
        await handshake(slow, None)
        quick, _ = await resumed(nursery, server)
        events = [trio.Event(), trio.Event()]
        nursery.start_soon(watch, slow, events[0])
        nursery.start_soon(watch, quick, events[1])
        await trio.sleep(1.0)
        busy["armed"] = True
        await server.clients[0].send("busy")  # the slow client's writer takes it
        await trio.sleep(0.010)
        assert busy["armed"] is False
        drain_at = trio.current_time()
        await server.restart()
        for event in events:
            await event.wait()
    assert trio.current_time() == pytest.approx(drain_at + 0.020)
    # The plan: base + (whole, distinct milliseconds), from the drain's start.
    assert sorted(round((t - drain_at) * 1000) for t in returns) == [250, 251]
