"""``on_connect=``: the application's own handshake, a step before the gate (virtual time).

It runs on every connection after the websocket opens (with ``resume=True``:
after ``ready``) and before the gate opens; what the server sends while it
runs goes to ``conn.get_message()``, what it leaves unread to the
application, in order. If it raises, the attempt fails and is retried (its
error in the history and in ``should_reconnect``'s question); it is bounded
by ``resume_timeout``; leaving the block cancels it at once.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket

import trio_reconnect as tr
from tests.support.fake_server import FakeServer, accept_and_resume, send_event, send_ready

URL = "ws://example.test/"
SEED = 7


class AuthRefused(Exception):
    pass


def plain_server(log: list[tuple[int, str]], *, answer_after: float = 1.0) -> Any:
    """A third-party-style server (no resume protocol): ``auth`` then ``subscribe``."""

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws = await request.accept()
        while True:
            message = await ws.get_message()
            assert isinstance(message, str)
            log.append((n, message))
            if message == "auth":
                await trio.sleep(answer_after)
                await ws.send_message("auth-ok")
            elif message == "subscribe":
                await ws.send_message("subscribed")
                await ws.send_message(f"tick-{n}")

    return handler


async def auth_then_subscribe(conn: tr.Connection) -> None:
    await conn.send_message("auth")
    assert await conn.get_message() == "auth-ok"
    await conn.send_message("subscribe")


async def test_the_gate_opens_after_on_connect_and_nothing_goes_out_of_turn(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[int, str]] = []
    server = FakeServer(nursery, plain_server(log))
    transitions: list[tr.Transition] = []
    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            resume=False,
            on_connect=auth_then_subscribe,
            on_transition=transitions.append,
            ping_interval=None,
        ) as ws:
            await ws.send_message("order-1")  # waits for the gate: after on_connect
            assert trio.current_time() == 1.0
            # What on_connect left unread goes to the application, in order.
            assert [await ws.get_message() for _ in range(2)] == ["subscribed", "tick-1"]
    assert log == [(1, "auth"), (1, "subscribe"), (1, "order-1")]
    states = [(t.state, t.time) for t in transitions]
    assert states[:2] == [
        (tr.ConnectionState.RESUMING, 0.0),
        (tr.ConnectionState.OPEN, 1.0),  # when on_connect returned
    ]


async def test_on_connect_runs_after_ready_with_resume(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    frames: list[str | bytes] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        frames.append(frame["type"])
        await send_event(ws, "5", "replayed")
        await send_ready(ws, "5")
        await send_event(ws, "6", "live")
        while True:
            frames.append(await ws.get_message())

    async def on_connect(conn: tr.Connection) -> None:
        await conn.send_message("subscribe")
        assert await conn.get_message() == json.dumps({"type": "event", "id": "6", "data": "live"})

    server = FakeServer(nursery, handler)
    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, on_connect=on_connect, ping_interval=None
        ) as ws:
            await ws.send_message("order")
            assert await ws.get_message() == tr.ServerEvent("5", "replayed")
            await trio.sleep(1)
    assert frames == ["resume", "subscribe", "order"]


async def test_on_connect_raising_is_retried_with_backoff_and_recorded(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[int, str]] = []
    server = FakeServer(nursery, plain_server(log, answer_after=0.0))
    calls = 0

    async def flaky(conn: tr.Connection) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise AuthRefused(f"refused {calls}")
        await auth_then_subscribe(conn)

    transitions: list[tr.Transition] = []
    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            resume=False,
            on_connect=flaky,
            on_transition=transitions.append,
            random=random.Random(SEED),
            ping_interval=None,
        ) as ws:
            await ws.wait_ready()
    waits = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert [type(t.error) for t in waits] == [AuthRefused, AuthRefused]
    assert [t.delay_source for t in waits] == [tr.DelaySource.BACKOFF] * 2
    assert server.connects[0] == 0.0
    delays = [float(t.delay or 0.0) for t in waits]
    assert server.connects[1:] == pytest.approx([delays[0], delays[0] + delays[1]], abs=1e-9)
    assert calls == 3


async def test_should_reconnect_can_make_an_on_connect_error_fatal(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[int, str]] = []
    server = FakeServer(nursery, plain_server(log, answer_after=0.0))
    asked: list[tr.Disconnect] = []

    async def refused(conn: tr.Connection) -> None:
        raise AuthRefused("bad token")

    def should_reconnect(d: tr.Disconnect) -> bool:
        asked.append(d)
        return not isinstance(d.error, AuthRefused)

    with trio.fail_after(60), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            resume=False,
            on_connect=refused,
            should_reconnect=should_reconnect,
            ping_interval=None,
        ) as ws:
            await ws.send_message("never sent")
    assert type(info.value) is tr.ReconnectFailed
    assert isinstance(info.value.__cause__, AuthRefused)
    assert "on_connect raised" in str(info.value)
    assert [type(a.error) for a in asked] == [AuthRefused]
    assert asked[0].default is True
    assert asked[0].close_code is None
    assert isinstance(info.value.last_error, AuthRefused)
    assert len(server.connects) == 1
    assert log == []


async def test_on_connect_is_bounded_by_resume_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[int, str]] = []
    server = FakeServer(nursery, plain_server(log, answer_after=100.0))  # auth-ok too late
    transitions: list[tr.Transition] = []
    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            resume=False,
            on_connect=auth_then_subscribe,
            resume_timeout=3.0,
            on_transition=transitions.append,
            random=random.Random(SEED),
            ping_interval=None,
        ):
            await trio.sleep(3.5)
    wait = next(t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF)
    assert wait.time == 3.0
    assert isinstance(wait.error, tr.ResumeTimeout)
    assert str(wait.error) == "on_connect did not return within 3.0 s (resume_timeout)"


async def test_leaving_the_block_cancels_on_connect_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[int, str]] = []
    server = FakeServer(nursery, plain_server(log))
    cancelled = trio.Event()

    async def waits_forever(conn: tr.Connection) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            resume=False,
            on_connect=waits_forever,
            ping_interval=None,
        ) as ws:
            await trio.sleep(2)
            assert ws.state is tr.ConnectionState.RESUMING
    assert trio.current_time() == 2.0  # the close reply, not close_timeout
    assert cancelled.is_set()
    assert repr(ws).endswith(" closed>")


async def test_the_connection_object_is_valid_for_its_connection_only(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[int, str]] = []
    server = FakeServer(nursery, plain_server(log, answer_after=0.0))
    kept: list[tr.Connection] = []

    async def keep(conn: tr.Connection) -> None:
        kept.append(conn)
        await auth_then_subscribe(conn)

    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            resume=False,
            on_connect=keep,
            ping_interval=None,
        ) as ws:
            await ws.wait_ready()
            with pytest.raises(trio_websocket.ConnectionClosed):
                await kept[0].send_message("late")
            ws.reconnect_now()
            await trio.sleep(1)
            await ws.wait_ready()
            assert len(kept) == 2
            with pytest.raises(trio_websocket.ConnectionClosed):
                await kept[0].get_message()
    assert (1, "late") not in log


async def test_a_resume_against_another_server_names_resume_false(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def chatty(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws = await request.accept()
        if n % 2:
            await ws.send_message('{"op": "hello"}')  # not a resume protocol frame
        await trio.sleep_forever()

    server = FakeServer(nursery, chatty)
    caplog.set_level(logging.WARNING, logger="trio_reconnect")
    with trio.fail_after(600), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            max_attempts=4,
            resume_timeout=2.0,
            random=random.Random(SEED),
            ping_interval=None,
        ):
            await trio.sleep_forever()
    errors = [a.error for a in info.value.history]
    assert [type(e) for e in errors] == [tr.ResumeProtocolError, tr.ResumeTimeout] * 2
    assert all("resume=False" in str(e) and "on_connect=" in str(e) for e in errors)
    said = [r for r in caplog.records if "3 attempts in a row" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.WARNING
    assert "resume=False" in said[0].getMessage()


async def test_the_client_failure_from_a_reader_task_comes_out_bare(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The tutorial's reader task in a nursery: FatalCloseError, no ExceptionGroup."""

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws)
        await trio.sleep(1)
        await ws.aclose(4003, "forbidden")

    async def read(ws: tr.ReconnectingWebSocket) -> None:
        async for _item in ws:
            pass

    server = FakeServer(nursery, handler)
    with trio.fail_after(60), pytest.raises(tr.FatalCloseError) as info:
        async with (
            tr.open_reconnecting_websocket(
                URL, open_stream=server.open_stream, ping_interval=None
            ) as ws,
            trio.open_nursery() as inner,
        ):
            inner.start_soon(read, ws)
            async with trio.open_nursery() as innermost:
                innermost.start_soon(read, ws)
                await trio.sleep_forever()
    assert info.value.code == 4003


async def test_an_application_that_sends_before_it_reads_does_not_hang(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A server that has published 10,000 events replays them all; the
    application sends first and reads later (the README's shape)."""
    published = 10_000
    got_subscribe = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _frame = await accept_and_resume(request)
        for i in range(1, published + 1):
            await send_event(ws, str(i), i)
        await send_ready(ws, str(published))
        assert await ws.get_message() == "subscribe"
        got_subscribe.set()
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, last_event_id="0", ping_interval=None
        ) as ws:
            await ws.send_message("subscribe")
            await got_subscribe.wait()
            items = [await ws.get_message() for _ in range(published)]
    assert items == [tr.ServerEvent(str(i), i) for i in range(1, published + 1)]


async def test_an_on_connect_error_at_the_exit_does_not_slow_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[int, str]] = []
    server = FakeServer(nursery, plain_server(log))

    async def converts(conn: tr.Connection) -> None:
        try:
            await conn.get_message()
        except trio_websocket.ConnectionClosed:
            raise AuthRefused("the connection went away") from None

    with trio.fail_after(60):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, resume=False, on_connect=converts
        ):
            await trio.sleep(2)
    assert trio.current_time() == 2.0  # not close_timeout later
