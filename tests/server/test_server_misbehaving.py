"""Misbehaving clients, failing handlers and slow readers: each is closed with a
clear code and nobody else notices."""

from __future__ import annotations

import json
import random
from typing import Any, cast

import pytest
import trio
import trio.testing
import trio_websocket
from trio.testing import MockClock
from trio_websocket import WebSocketConnection

from tests.support.server_clients import closed_with, connect, receive_json, resumed
from trio_reconnect._hints import parse_retry_after_reason
from trio_reconnect._protocol import encode_resume
from trio_reconnect.server import (
    ClientState,
    ConnectedClient,
    ReconnectServer,
    ReplayLog,
    SpreadPolicy,
)


def make_server(**kwargs: Any) -> ReconnectServer:
    return ReconnectServer(ReplayLog(start=1), rng=random.Random(3), **kwargs)


async def still_served(server: ReconnectServer, ws: WebSocketConnection) -> None:
    """A well-behaved client keeps receiving live events."""
    event_id = await server.publish({"still": "here"})
    assert await receive_json(ws) == {"type": "event", "id": event_id, "data": {"still": "here"}}


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (b"\x00binary", 1003),
        (encode_resume(None).encode(), 1003),  # right content, wrong frame type
        ("hello", 1002),
        ("", 1002),
        ("[]", 1002),
        ('{"type": "hello"}', 1002),
        ('{"type": "resume"}', 1002),
        ('{"type": "resume", "lastEventId": 5}', 1002),
        ('{"type": "event", "id": "1"}', 1002),
        ("[" * 100_000, 1002),  # nesting too deep for json.loads
    ],
)
async def test_bad_first_frame(
    autojump_clock: MockClock, nursery: trio.Nursery, first: str | bytes, code: int
) -> None:
    server = make_server()
    with trio.fail_after(5):
        good, _ = await resumed(nursery, server)
        bad = await connect(nursery, server)
        await bad.send_message(first)
        close = await closed_with(bad)
        assert close.code == code
        assert close.reason in (
            "expected a resume frame",
            "expected a text resume frame",
            "resume frame needs lastEventId as a string or null",
        )
        await still_served(server, good)
    stats = server.statistics()
    assert stats.protocol_errors == 1
    assert stats.clients == 1
    assert trio.current_time() == 0.0


async def test_oversized_frame_gets_1009(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server(max_message_size=1_000)
    with trio.fail_after(5):
        good, _ = await resumed(nursery, server)
        bad = await connect(nursery, server)
        await bad.send_message(json.dumps({"type": "resume", "lastEventId": "x" * 2_000}))
        assert (await closed_with(bad)).code == 1009
        # After ready, too.
        late, _ = await resumed(nursery, server)
        await late.send_message("y" * 1_001)
        assert (await closed_with(late)).code == 1009
        await still_served(server, good)
    assert server.statistics().clients == 1


async def test_silent_client_closed_at_handshake_timeout(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(handshake_timeout=3.0, spread=SpreadPolicy(min_window=2.0, base=0.25))
    with trio.fail_after(10):
        good, _ = await resumed(nursery, server)
        silent = await connect(nursery, server)
        close = await closed_with(silent)
        assert trio.current_time() == 3.0
        assert close.code == 1013
        hint = parse_retry_after_reason(close.reason)
        assert hint is not None
        assert 0.25 <= hint <= 2.25
        await still_served(server, good)
    assert server.statistics().protocol_errors == 1


async def test_no_upgrade_request_closed_at_handshake_timeout(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(handshake_timeout=4.0)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        nursery.start_soon(server.serve_stream, server_stream)
        assert await client_stream.receive_some() == b""
    assert trio.current_time() == 4.0


@pytest.mark.parametrize(
    "garbage",
    [b"garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01"],
)
async def test_not_a_websocket_request(
    autojump_clock: MockClock, nursery: trio.Nursery, garbage: bytes
) -> None:
    server = make_server(handshake_timeout=4.0)
    with trio.fail_after(10):
        good, _ = await resumed(nursery, server)
        client_stream, server_stream = trio.testing.memory_stream_pair()
        nursery.start_soon(server.serve_stream, server_stream)
        await client_stream.send_all(garbage)
        received = b""
        while chunk := await client_stream.receive_some():
            received += chunk
        assert received == b"" or received.startswith(b"HTTP/1.1 4")
        await still_served(server, good)


async def test_failing_handler_closes_only_its_client(
    autojump_clock: MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[tuple[int, str | bytes]] = []

    async def on_message(client: ConnectedClient, message: str | bytes) -> None:
        if message == "boom":
            raise ValueError("handler bug")
        handled.append((client.id, message))

    server = make_server(on_message=on_message)
    with trio.fail_after(5):
        good, _ = await resumed(nursery, server)
        bad, _ = await resumed(nursery, server)
        await bad.send_message("boom")
        close = await closed_with(bad)
        assert close.code == 1011
        assert parse_retry_after_reason(close.reason) is not None
        await good.send_message("fine")
        await good.send_message(b"\x01")
        while len(handled) < 2:
            await trio.sleep(0.1)
        await still_served(server, good)
    assert handled == [(1, "fine"), (1, b"\x01")]
    assert server.statistics().handler_errors == 1
    assert "on_message failed for client 2" in caplog.text


async def test_messages_iterator(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server()
    with trio.fail_after(5):
        first, _ = await resumed(nursery, server)
        second, _ = await resumed(nursery, server)
        await first.send_message("one")
        await second.send_message(b"two")
        await first.send_message("three")
        got = []
        async for client, message in server.messages():
            got.append((client.id, message))
            if len(got) == 3:
                break
        assert sorted(got, key=repr) == sorted([(1, "one"), (2, b"two"), (1, "three")], key=repr)
        # Replies go to the sender only.
        (one, _two) = server.clients
        await one.send("reply")
        assert await first.get_message() == "reply"
    assert one.statistics().messages_received == 2
    assert one.statistics().messages_sent == 1


async def test_slow_client_is_closed_not_buffered(
    autojump_clock: MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(queue_size=8, close_timeout=2.0)
    with trio.fail_after(30):
        good, _ = await resumed(nursery, server)
        # A lockstep stream has no buffer: a client that stops reading stops
        # the server's writes to it.
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
        nursery.start_soon(server.serve_stream, server_stream)
        slow = await trio_websocket.wrap_client_stream(
            nursery, cast(Any, client_stream), "localhost", "/", message_queue_size=1
        )
        await slow.send_message(encode_resume(None))
        assert (await receive_json(slow))["type"] == "ready"
        (_, slow_client) = server.clients
        received = 0
        for i in range(40):  # the slow client reads nothing meanwhile
            await server.publish(i)
            assert (await receive_json(good))["data"] == i
            if slow_client.statistics().state is not ClientState.READY:
                break
        closing_at = trio.current_time()
        assert slow_client.statistics().state in (ClientState.CLOSING, ClientState.CLOSED)
        assert server.statistics().slow_clients == 1
        # The server waits close_timeout for the send in progress, then drops
        # the connection (a close frame after half a frame would be garbage).
        await slow_client.wait_closed()
        assert trio.current_time() == closing_at + 2.0
        # Memory stayed bounded: never more than queue_size frames queued.
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            while True:
                await slow.get_message()
                received += 1
        assert received <= 3  # what the client-side buffers held
        assert closed.value.reason is not None
        assert closed.value.reason.code == 1006
        await still_served(server, good)
    assert "client 2 is too slow" in caplog.text


async def test_client_send_and_close(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server()
    with trio.fail_after(5):
        ws, _ = await resumed(nursery, server)
        (client,) = server.clients
        assert client.id == 1
        assert client.path == "/"
        assert client.state is ClientState.READY
        await client.send("hello")
        await client.send(b"\x00\x01")
        assert await ws.get_message() == "hello"
        assert await ws.get_message() == b"\x00\x01"
        with pytest.raises(TypeError):
            await client.send(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="123"):
            await client.aclose(4000, "x" * 124)
        async with trio.open_nursery() as inner:
            inner.start_soon(client.aclose, 4001, "go away")
            close = await closed_with(ws)
        assert (close.code, close.reason) == (4001, "go away")
        await client.wait_closed()
        assert client.statistics().state is ClientState.CLOSED
        with pytest.raises(trio_websocket.ConnectionClosed):
            await client.send("too late")
        stats = client.statistics()
        assert (stats.close_code, stats.close_reason) == (4001, "go away")
        assert stats.messages_sent == 2
    assert server.clients == ()


async def test_peer_close_is_recorded(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server()
    with trio.fail_after(5):
        ws, _ = await resumed(nursery, server)
        (client,) = server.clients
        await ws.aclose(1000, "bye")
        await client.wait_closed()
    stats = client.statistics()
    assert (stats.state, stats.close_code, stats.close_reason) == (ClientState.CLOSED, 1000, "bye")
    assert server.statistics().clients == 0


async def test_client_vanishing_mid_handshake(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    started = trio.Event()

    async def snapshot() -> tuple[str | None, Any]:
        started.set()
        await trio.sleep(1)
        return None, "state"

    server = ReconnectServer(ReplayLog(start=1), snapshot=snapshot, rng=random.Random(0))
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        nursery.start_soon(server.serve_stream, server_stream)
        async with trio.open_nursery() as inner:
            ws = await trio_websocket.wrap_client_stream(
                inner, cast(Any, client_stream), "localhost", "/"
            )
            await ws.send_message(encode_resume(None))
            await started.wait()
            await trio.aclose_forcefully(client_stream)  # no close frame
        while server.clients:
            await trio.sleep(0.5)
        good, frames = await resumed(nursery, server)
        assert [f["type"] for f in frames] == ["snapshot", "ready"]
        await still_served(server, good)


def test_server_option_validation() -> None:
    log = ReplayLog(start=1)
    for kwargs in (
        {"max_replay": -1},
        {"queue_size": 0},
        {"handshake_timeout": 0},
        {"close_timeout": -1.0},
        {"admission_rate": 0.0},
        {"admission_rate": float("nan")},
        {"max_message_size": 0},
        {"admission_rate": 5.0, "admission_burst": 0.5},
    ):
        with pytest.raises(ValueError, match="must be"):
            ReconnectServer(log, **kwargs)


async def test_queue_overflow_during_handshake_gets_1013(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    started, gate = trio.Event(), trio.Event()

    async def snapshot() -> tuple[str | None, Any]:
        started.set()
        await gate.wait()
        return None, "state"

    server = ReconnectServer(
        ReplayLog(start=1), snapshot=snapshot, queue_size=4, rng=random.Random(0)
    )
    with trio.fail_after(5):
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume(None))
        await started.wait()
        for i in range(5):
            await server.publish(i)
        close = await closed_with(ws)
        assert close.code == 1013
        assert close.reason is not None
        assert close.reason.startswith('{"reason":"too slow","retryAfter":')
    assert server.statistics().slow_clients == 1
    assert server.statistics().snapshots == 0
