"""The client over real TCP (and TLS) on 127.0.0.1, against trio-websocket servers.

Real sockets mean the real clock: delays are kept to milliseconds (hints of
0 ms, a tiny backoff) and every wait is guarded by ``fail_after``.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio_websocket
import trustme

import trio_reconnect as tr

TINY = tr.Backoff(initial=0.001, max_delay=0.005)
Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


async def start_server(
    nursery: trio.Nursery, handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> int:
    async def safe(request: trio_websocket.WebSocketRequest) -> None:
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await handler(request)

    server: trio_websocket.WebSocketServer = await nursery.start(
        trio_websocket.serve_websocket, safe, "127.0.0.1", 0, ssl_context
    )
    return server.port


@pytest.fixture
async def ticker(nursery: trio.Nursery) -> tuple[int, list[int]]:
    """A protocol server that publishes 3 events per connection, then restarts it."""
    log: list[int] = []
    connections: list[int] = [0]

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        connections[0] += 1
        ws = await request.accept()
        frame = json.loads(await ws.get_message())
        last = int(frame["lastEventId"] or 0)
        for i in range(last + 1, len(log) + 1):
            await ws.send_message(json.dumps({"type": "event", "id": str(i), "data": i}))
        await ws.send_message(json.dumps({"type": "ready", "id": str(len(log)) if log else None}))
        for _ in range(3):
            log.append(len(log) + 1)
            n = len(log)
            await ws.send_message(json.dumps({"type": "event", "id": str(n), "data": n}))
        await ws.aclose(1012, json.dumps({"reason": "restart", "retryAfter": 0}))

    port = await start_server(nursery, handler)
    return port, connections


async def test_loopback_reconnects_and_delivers_every_event_once(
    ticker: tuple[int, list[int]],
) -> None:
    port, connections = ticker
    items: list[object] = []
    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/ticker", backoff=TINY
        ) as ws:
            async for item in ws:
                items.append(item)
                if len(items) == 12:
                    break
            stats = ws.statistics()
    assert items == [tr.ServerEvent(str(i), i) for i in range(1, 13)]
    assert connections[0] >= 4
    assert stats.reconnects >= 3


async def test_loopback_connection_refused_is_retried_then_gives_up() -> None:
    with trio.socket.socket() as sock:  # a port with nobody listening
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(10), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/", backoff=TINY, max_attempts=3
        ) as ws:
            await ws.send_message("x")
    assert len(info.value.history) == 3
    assert all(isinstance(a.error, OSError) for a in info.value.history)


async def test_loopback_echo_with_resume_off(nursery: trio.Nursery) -> None:
    async def echo(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        while True:
            await ws.send_message(await ws.get_message())

    port = await start_server(nursery, echo)
    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(f"ws://127.0.0.1:{port}/", resume=False) as ws:
            for i in range(50):
                await ws.send_message(f"m{i}")
            got = [await ws.get_message() for _ in range(50)]
    assert got == [f"m{i}" for i in range(50)]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def ready_handler(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    await ws.get_message()
    await ws.send_message(json.dumps({"type": "ready", "id": None}))
    await ws.get_message()


async def test_wss_with_trusted_ca(nursery: trio.Nursery, ca: trustme.CA) -> None:
    port = await start_server(nursery, ready_handler, server_context(ca))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(
            f"wss://127.0.0.1:{port}/", ssl_context=client
        ) as ws:
            await ws.wait_ready()
            assert ws.state is tr.ConnectionState.OPEN


async def test_certificate_failure_is_a_tls_error_and_retried(
    nursery: trio.Nursery, ca: trustme.CA
) -> None:
    port = await start_server(nursery, ready_handler, server_context(ca))
    with trio.fail_after(10), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            f"wss://127.0.0.1:{port}/",
            ssl_context=ssl.create_default_context(),  # does not trust our CA
            backoff=TINY,
            max_attempts=3,
        ) as ws:
            await ws.wait_ready()
    assert len(info.value.history) == 3  # retried with backoff, not fatal
    error = info.value.last_error
    assert isinstance(error, tr.TLSError)
    assert not isinstance(error, tr.ConnectTimeout)
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)


async def test_rotated_certificate_picked_up_by_ssl_factory(
    nursery: trio.Nursery, ca: trustme.CA
) -> None:
    other = trustme.CA()  # the server's certificate is signed by this one
    port = await start_server(nursery, ready_handler, server_context(other))
    trusted = [ca]
    calls: list[int] = []

    def context() -> ssl.SSLContext:
        calls.append(1)
        client = ssl.create_default_context()
        trusted[0].configure_trust(client)
        trusted[0] = other  # "rotation": the next attempt trusts the new CA
        return client

    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(
            f"wss://127.0.0.1:{port}/", ssl_context=context, backoff=TINY
        ) as ws:
            await ws.wait_ready()
    assert len(calls) == 2
