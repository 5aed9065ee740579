"""pytest fixtures for testing reconnect behaviour (registered as the ``trio_reconnect`` plugin).

Installed with trio_reconnect through the ``pytest11`` entry point, so the
fixtures are there in every project that has trio_reconnect and pytest-trio
(the fixtures are async: run the tests with ``trio_mode = true`` or mark them
``@pytest.mark.trio``; use ``autojump_clock`` to run in virtual time):

``memory_network``
    A :class:`~trio_reconnect.testing.MemoryNetwork`, seeded from the test's
    id so that each test is reproducible and tests differ from one another.
``reconnect_server``
    A :class:`~trio_reconnect.server.ReconnectServer` with a
    :class:`~trio_reconnect.server.ReplayLog`, serving on ``memory_network``
    at :data:`SERVER_URL`. Override the ``reconnect_server_options`` fixture
    (a dict of ``ReconnectServer`` keyword arguments) to configure it.
``connect_client``
    ``connect_client(name="client", **options)``: an async context manager
    that opens :func:`~trio_reconnect.open_reconnecting_websocket` to the
    server as host ``name`` on the memory network, with a seeded ``random``;
    ``url=`` points it at another server on the network.
``serve_websocket``
    ``await serve_websocket(handler, host="server", port=80, **options)``:
    serve *your* trio-websocket handler (``async def handler(request)``, as
    for :func:`trio_websocket.serve_websocket`) on ``memory_network``; returns
    its URL. Every fault of the network applies to its connections.
``serve_stream``
    ``await serve_stream(handler, host="server", port=80)``: serve a raw
    stream handler (``async def handler(stream)``, bytes in and out, as for
    :func:`trio.serve_listeners`) on ``memory_network``; returns the URL a
    client connects to. For a server that is no websocket server at all, or
    a broken one.

Example::

    async def test_survives_a_reset(autojump_clock, memory_network, reconnect_server,
                                    connect_client):
        async with connect_client("alice") as ws:
            await ws.wait_ready()
            memory_network.reset("alice")
            await reconnect_server.publish("hello")
            with trio.fail_after(30):
                assert (await ws.get_message()).data == "hello"
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import pytest
import trio
import trio_websocket

from .._client import ReconnectingWebSocket, open_reconnecting_websocket
from .._transport import default_port
from ..server import ReconnectServer, ReplayLog
from ._network import MemoryNetwork

__all__ = [
    "SERVER_HOST",
    "SERVER_PORT",
    "SERVER_URL",
    "connect_client",
    "memory_network",
    "reconnect_server",
    "reconnect_server_options",
    "serve_stream",
    "serve_websocket",
]

#: Where ``reconnect_server`` listens on ``memory_network``.
SERVER_HOST: Final = "server"
SERVER_PORT: Final = 80
SERVER_URL: Final = f"ws://{SERVER_HOST}/"

ClientFactory = Callable[..., contextlib.AbstractAsyncContextManager[ReconnectingWebSocket]]
#: ``serve_websocket(handler, host, port, **options)`` and ``serve_stream(handler, host, port)``.
Serve = Callable[..., Awaitable[str]]


def _url(host: str, port: int) -> str:
    return f"ws://{host}/" if port == default_port(secure=False) else f"ws://{host}:{port}/"


@pytest.fixture
def memory_network(request: pytest.FixtureRequest) -> MemoryNetwork:
    """An in-memory network seeded from the test's id."""
    return MemoryNetwork(random=random.Random(f"network:{request.node.nodeid}"))


@pytest.fixture
def reconnect_server_options() -> dict[str, Any]:
    """Keyword arguments for the ``reconnect_server`` fixture; override to configure it."""
    return {}


@pytest.fixture
async def reconnect_server(
    memory_network: MemoryNetwork,
    reconnect_server_options: dict[str, Any],
    nursery: trio.Nursery,
    request: pytest.FixtureRequest,
) -> ReconnectServer:
    """A protocol server serving on ``memory_network`` at :data:`SERVER_URL`."""
    options: dict[str, Any] = {"rng": random.Random(f"server:{request.node.nodeid}")}
    options.update(reconnect_server_options)
    log = options.pop("log", None)
    if log is None:  # not "or": an empty log is falsy
        log = ReplayLog()
    server = ReconnectServer(log, **options)
    listener = memory_network.listen(SERVER_HOST, SERVER_PORT)
    await nursery.start(server.serve_listeners, [listener])
    return server


@pytest.fixture
def connect_client(memory_network: MemoryNetwork, request: pytest.FixtureRequest) -> ClientFactory:
    """``connect_client(name="client", **options)``: a client on ``memory_network``."""

    @contextlib.asynccontextmanager
    async def connect(name: str = "client", **options: Any) -> AsyncIterator[ReconnectingWebSocket]:
        options.setdefault("random", random.Random(f"client:{name}:{request.node.nodeid}"))
        options.setdefault("open_stream", memory_network.client(name))
        url = options.pop("url", SERVER_URL)
        async with open_reconnecting_websocket(url, **options) as ws:
            yield ws

    return connect


@pytest.fixture
def serve_websocket(memory_network: MemoryNetwork, nursery: trio.Nursery) -> Serve:
    """``await serve_websocket(handler, host="server", port=80, **options)``: your handler's URL.

    ``handler`` is a trio-websocket request handler; ``options`` go to
    :class:`trio_websocket.WebSocketServer` (``max_message_size=`` ...). It
    serves until the test ends.
    """

    async def serve(
        handler: Callable[[trio_websocket.WebSocketRequest], Awaitable[None]],
        host: str = SERVER_HOST,
        port: int = SERVER_PORT,
        **options: Any,
    ) -> str:
        listener = memory_network.listen(host, port)
        # Typed for socket listeners only, but it serves any trio Listener
        # (and describes the others by their repr).
        server = trio_websocket.WebSocketServer(handler, [listener], **options)  # type: ignore[list-item]
        await nursery.start(server.run)
        return _url(host, port)

    return serve


@pytest.fixture
def serve_stream(memory_network: MemoryNetwork, nursery: trio.Nursery) -> Serve:
    """``await serve_stream(handler, host="server", port=80)``: the URL of a raw stream handler.

    ``handler`` gets each accepted connection's :class:`trio.abc.Stream`
    (the client's opening HTTP request is its first bytes). It serves until
    the test ends.
    """

    async def serve(
        handler: Callable[[trio.abc.Stream], Awaitable[object]],
        host: str = SERVER_HOST,
        port: int = SERVER_PORT,
    ) -> str:
        listener = memory_network.listen(host, port)
        await nursery.start(functools.partial(trio.serve_listeners, handler, [listener]))
        return _url(host, port)

    return serve
