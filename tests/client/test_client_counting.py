"""Honest numbers: one attempt number per attempt, planned restarts are not failures, logging.

* Every transition of one attempt carries the same number, and
  ``BACKING_OFF`` carries the number of the attempt it waits for; the
  history and the log line use the same number.
* A ready connection that the server closes with a planned code (1001, 1012,
  1013) and a ``retryAfter`` hint is a server-directed reconnect: counted in
  ``server_directed``, not in ``failed_attempts``, and it does not bring the
  client nearer to ``max_attempts``. The anti-hammer rule still applies.
* The library logs what it raises at DEBUG only; WARNING is for what the
  application cannot otherwise see (a retried failure), INFO for a planned
  reconnect.
"""

from __future__ import annotations

import json
import logging

import pytest
import trio
import trio.testing
import trio_websocket

import trio_reconnect as tr
from tests.support.fake_server import FakeServer, accept_and_resume, send_event, send_ready

URL = "ws://example.test/"
NONE = tr.Backoff(jitter=tr.Jitter.NONE)
S = tr.ConnectionState


async def test_one_number_per_attempt_in_transitions_history_and_log(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        if n == 2:
            await request.reject(503)
            return
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n == 1:
            await trio.sleep(2)  # ready, then lost before stable_after: a failure
            await ws.aclose(1011)
            return
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    caplog.set_level(logging.DEBUG, logger="trio_reconnect")
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, backoff=NONE, on_transition=transitions.append
        ) as ws:
            while len(server.connects) < 3 or ws.state is not S.OPEN:
                await trio.sleep(0.5)
            stats = ws.statistics()
    steps = [(t.state, t.attempt) for t in transitions if t.state is not S.CLOSED]
    assert steps == [
        (S.RESUMING, 1),
        (S.OPEN, 1),
        (S.BACKING_OFF, 2),
        (S.CONNECTING, 2),
        (S.BACKING_OFF, 3),
        (S.CONNECTING, 3),
        (S.RESUMING, 3),
        (S.OPEN, 3),
    ]
    waits = [r.getMessage() for r in caplog.records if "; attempt" in r.getMessage()]
    assert waits == [
        f"{URL}: connection closed with code 1011; attempt 2 in 1.000 s (backoff)",
        f"{URL}: handshake refused with HTTP 503; attempt 3 in 2.000 s (backoff)",
    ]
    assert stats.failed_attempts == 2
    assert stats.server_directed == 0


async def test_history_numbers_match_the_transitions(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        await request.reject(503)

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(100), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            backoff=NONE,
            max_attempts=3,
            on_transition=transitions.append,
        ) as ws:
            await ws.wait_ready()
    assert [a.number for a in info.value.history] == [1, 2, 3]
    connecting = [t.attempt for t in transitions if t.state is S.CONNECTING]
    assert connecting == [2, 3]  # attempt 1's CONNECTING is the initial state
    assert transitions[-1].state is S.FAILED
    assert transitions[-1].attempt == 3


async def test_planned_restarts_are_server_directed_not_failures(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    restarts = 6

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n <= restarts:
            await send_event(ws, str(n), n)
            await trio.sleep(3)  # serve --restart-every 3: never stable
            code = (1012, 1001, 1013)[n % 3]
            await ws.aclose(code, json.dumps({"reason": "restarting", "retryAfter": 1422}))
            return
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    caplog.set_level(logging.INFO, logger="trio_reconnect")
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            max_attempts=2,  # six restarts in a row must not give up
            on_transition=transitions.append,
        ) as ws:
            while len(server.connects) <= restarts or ws.state is not S.OPEN:
                await trio.sleep(0.5)
            stats = ws.statistics()
    assert stats.failed_attempts == 0
    assert stats.server_directed == restarts
    assert stats.reconnects == restarts
    waits = [t for t in transitions if t.state is S.BACKING_OFF]
    assert [(t.attempt, t.delay, t.delay_source) for t in waits] == [
        (1, 1.422, tr.DelaySource.SERVER)
    ] * restarts
    lines = [r for r in caplog.records if "planned reconnect" in r.getMessage()]
    assert len(lines) == restarts
    assert all(r.levelno == logging.INFO for r in lines)
    assert "attempt 1 in 1.422 s (server)" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_1011_with_a_hint_is_still_a_failure(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n == 1:
            await ws.aclose(1011, json.dumps({"retryAfter": 500}))
            return
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(URL, open_stream=server.open_stream) as ws:
            while len(server.connects) < 2 or ws.state is not S.OPEN:
                await trio.sleep(0.1)
            stats = ws.statistics()
    assert server.connects == [0.0, 0.5]
    assert (stats.failed_attempts, stats.server_directed) == (1, 0)


async def test_planned_restarts_with_short_hints_still_meet_the_anti_hammer_rule(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await ws.aclose(1012, json.dumps({"retryAfter": 0}))  # ready, then away at once

    server = FakeServer(nursery, handler)
    with trio.fail_after(1000):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, backoff=NONE
        ) as ws:
            while len(server.connects) < 7:
                await trio.sleep(0.5)
            stats = ws.statistics()
    gaps = [b - a for a, b in zip(server.connects, server.connects[1:], strict=False)]
    assert gaps == [0.0, 0.0, 4.0, 8.0, 16.0, 30.0]
    assert stats.failed_attempts == 0


async def test_what_is_raised_is_logged_at_debug_only(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        await request.reject(200, body=b"<html>a plain web server</html>")

    server = FakeServer(nursery, handler)
    caplog.set_level(logging.DEBUG, logger="trio_reconnect")
    with trio.fail_after(100), pytest.raises(tr.HandshakeRejectedError) as info:
        async with tr.open_reconnecting_websocket(URL, open_stream=server.open_stream) as ws:
            await ws.wait_ready()
    assert info.value.status_code == 200
    mine = [r for r in caplog.records if r.name.startswith("trio_reconnect")]
    refused = [r for r in mine if "refused the handshake with HTTP 200" in r.getMessage()]
    assert refused
    assert all(r.levelno == logging.DEBUG for r in refused)
    assert not [r for r in mine if r.levelno >= logging.INFO and "ready" not in r.getMessage()]


async def test_a_retried_failure_is_a_warning(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        if n == 1:
            await request.reject(503, extra_headers=[(b"Retry-After", b"2")])
            return
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    caplog.set_level(logging.DEBUG, logger="trio_reconnect")
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(URL, open_stream=server.open_stream) as ws:
            await ws.wait_ready()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"{URL}: handshake refused with HTTP 503; attempt 2 in 2.000 s (server)"
    ]
    assert warnings[0].levelno == logging.WARNING


async def test_statistics_count_a_reconnect_at_ready_not_at_its_replayed_items(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Documented choice: replayed items reach the application before the
    # handshake's ready, and statistics() counts the reconnect at ready.
    release = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        if n == 1:
            await send_ready(ws, None)
            await send_event(ws, "1", 1)
            await ws.aclose(1012, json.dumps({"retryAfter": 0}))
            return
        await send_event(ws, "2", 2)
        await send_event(ws, "3", 3)
        await release.wait()
        await send_ready(ws, "3")
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(URL, open_stream=server.open_stream) as ws:
            assert await ws.get_message() == tr.ServerEvent("1", 1)
            assert await ws.get_message() == tr.ServerEvent("2", 2)
            assert await ws.get_message() == tr.ServerEvent("3", 3)
            during = ws.statistics()
            assert ws.state is S.RESUMING
            release.set()
            await ws.wait_ready()
            after = ws.statistics()
    assert (during.connects, during.reconnects, during.replayed_events) == (1, 0, 0)
    assert (after.connects, after.reconnects, after.replayed_events) == (2, 1, 2)
    assert after.server_directed == during.server_directed == 1  # counted when the close came


def test_nothing_reaches_stderr_unless_the_application_configures_logging() -> None:
    import subprocess
    import sys

    code = (
        "import logging, trio_reconnect\n"
        "logging.getLogger('trio_reconnect').warning('a retried failure')\n"
        "logging.getLogger('trio_reconnect.server').warning('a server warning')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stderr == ""


async def test_a_restart_s_planned_wait_is_reported_and_not_held_against_the_health(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Issue 20: one reconnect through a server that restarted read REGRESSION.
    # The server says "come back in 1.5 s", is still down then (one failed
    # attempt, one backoff step of the client's own), then serves.
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        if n == 2:  # still restarting
            await request.reject(503)
            return
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n == 1:
            await trio.sleep(20)  # stable
            await ws.aclose(1012, json.dumps({"reason": "restarting", "retryAfter": 1500}))
            return
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            backoff=tr.Backoff(initial=0.2, jitter=tr.Jitter.NONE),
        ) as ws:
            while len(server.connects) < 3 or ws.state is not S.OPEN:
                await trio.sleep(0.01)
            stats = ws.statistics()
    step = 0.4  # the client's own backoff after the refused attempt 2: 0.2 * 2
    assert stats.reconnects == 1
    assert stats.recent_server_waits == (1.5,)
    assert stats.median_reconnect == pytest.approx(1.5 + step, abs=0.02)
    assert stats.median_beyond_server_wait == pytest.approx(step, abs=0.02)
    assert stats.health is tr.HealthLevel.HEALTHY  # the full 1.9 s would read WATCH
    assert stats.health_samples == 1
    assert stats.describe().endswith("healthy, from 1 reconnect only")
