"""A couple of end-to-end runs over real loopback TCP, and over a custom listener.

Real sockets run on the real clock (the autojump clock would jump past
in-flight socket I/O), so these tests only wait on I/O, never on timers.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket

from tests.support.server_clients import handshake, receive_json
from trio_reconnect._hints import parse_retry_after_reason
from trio_reconnect.server import ReconnectServer, ReplayLog


async def test_resume_publish_restart_over_tcp() -> None:
    log = ReplayLog(start=1)
    server = ReconnectServer(log, rng=random.Random(0))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, "127.0.0.1", 0)
            assert listener.port > 0
            await server.publish("before")
            # trio-websocket's open_websocket never closes the client socket
            # after a server-initiated close (ResourceWarning), so open the
            # stream here and close it ourselves.
            stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
            try:
                ws = await trio_websocket.wrap_client_stream(nursery, stream, "127.0.0.1", "/feed")
                frames = await handshake(ws, None)
                assert frames == [
                    {"type": "event", "id": "1", "data": "before"},
                    {"type": "ready", "id": "1", "lost": False},
                ]
                (client,) = server.clients
                assert client.path == "/feed"
                assert client.remote.startswith("127.0.0.1:")
                await server.publish({"price": 42})
                assert await receive_json(ws) == {"type": "event", "id": "2", "data": {"price": 42}}
                await ws.send_message("hello server")
                got = await server.messages().receive()
                assert got == (client, "hello server")
                async with trio.open_nursery() as inner:
                    inner.start_soon(server.restart)
                    with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                        await ws.get_message()
            finally:
                await stream.aclose()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1012
            hint = parse_retry_after_reason(closed.value.reason.reason)
            assert hint is not None
            assert 0.25 <= hint <= 2.25
            nursery.cancel_scope.cancel()


async def test_admission_503_over_tcp() -> None:
    server = ReconnectServer(ReplayLog(start=1), admission_rate=0.5, admission_burst=1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, "127.0.0.1", 0)
            async with trio_websocket.open_websocket(
                "127.0.0.1", listener.port, "/", use_ssl=False
            ) as ws:
                await handshake(ws, None)
                # trio-websocket's open_websocket leaks the client socket when
                # the handshake is refused (it never closes the stream), so
                # open the stream here and close it ourselves.
                stream = await trio.open_tcp_stream("127.0.0.1", listener.port)
                try:
                    with pytest.RaisesGroup(
                        trio_websocket.ConnectionRejected, flatten_subgroups=True
                    ) as refused:
                        async with trio.open_nursery() as client_nursery:
                            await trio_websocket.wrap_client_stream(
                                client_nursery, stream, "127.0.0.1", "/"
                            )
                finally:
                    await stream.aclose()
            (rejection,) = refused.value.exceptions
            assert isinstance(rejection, trio_websocket.ConnectionRejected)
            assert rejection.status_code == 503
            assert (b"retry-after", b"2") in rejection.headers
            assert server.statistics().refused == 1
            nursery.cancel_scope.cancel()


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """An in-memory listener: how an in-memory network plugs in."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[trio.abc.Stream](0)

    async def accept(self) -> trio.abc.Stream:
        return await self.receive.receive()

    async def aclose(self) -> None:
        await self.receive.aclose()

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await self.send.send(server)
        return client


async def test_serve_listeners_in_memory(autojump_clock: trio.testing.MockClock) -> None:
    server = ReconnectServer(ReplayLog(start=1))
    listener = MemoryListener()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            description = await nursery.start(server.serve_listeners, [listener])
            assert len(description.listeners) == 1
            stream: Any = await listener.connect()
            ws = await trio_websocket.wrap_client_stream(nursery, stream, "localhost", "/")
            assert await handshake(ws, None) == [{"type": "ready", "id": None, "lost": False}]
            await server.publish(1)
            assert (await receive_json(ws))["id"] == "1"
            nursery.cancel_scope.cancel()
