"""Raw trio-websocket clients for the server tests (no trio_reconnect client)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import trio
import trio.testing
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected, WebSocketConnection

from trio_reconnect._protocol import encode_resume
from trio_reconnect.server import ReconnectServer


async def connect(
    nursery: trio.Nursery, server: ReconnectServer, *, path: str = "/"
) -> WebSocketConnection:
    """Open a websocket to ``server`` over an in-memory stream pair."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    nursery.start_soon(server.serve_stream, server_stream)
    # wrap_client_stream is annotated for socket streams but runs over any stream.
    return await trio_websocket.wrap_client_stream(
        nursery, cast(Any, client_stream), "localhost", path
    )


async def receive_json(ws: WebSocketConnection) -> dict[str, Any]:
    """The next message, decoded as a JSON object."""
    message = await ws.get_message()
    assert isinstance(message, str), message
    frame = json.loads(message)
    assert isinstance(frame, dict)
    return frame


async def handshake(ws: WebSocketConnection, last_event_id: str | None) -> list[dict[str, Any]]:
    """Send a resume frame; return every frame up to and including ``ready``."""
    await ws.send_message(encode_resume(last_event_id))
    return await until_ready(ws)


async def until_ready(ws: WebSocketConnection) -> list[dict[str, Any]]:
    """Every frame up to and including ``ready``."""
    frames = []
    while True:
        frame = await receive_json(ws)
        frames.append(frame)
        if frame["type"] == "ready":
            return frames


async def resumed(
    nursery: trio.Nursery, server: ReconnectServer, last_event_id: str | None = None
) -> tuple[WebSocketConnection, list[dict[str, Any]]]:
    """Connect and run the resume handshake."""
    ws = await connect(nursery, server)
    return ws, await handshake(ws, last_event_id)


async def closed_with(ws: WebSocketConnection) -> CloseReason:
    """Read (and discard) messages until the connection closes; its close reason."""
    reason: CloseReason | None = None
    while reason is None:
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason or CloseReason(1006, "no close reason")
    return reason


async def refused_with(server: ReconnectServer) -> ConnectionRejected:
    """Attempt a handshake that the server must refuse; the rejection."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    rejected: list[ConnectionRejected] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, server_stream)
            await trio_websocket.wrap_client_stream(
                nursery, cast(Any, client_stream), "localhost", "/"
            )
    except* ConnectionRejected as group:
        rejected.extend(cast(ConnectionRejected, exc) for exc in _leaves(group))
    assert len(rejected) == 1, "the handshake was not refused"
    return rejected[0]


async def attempt(
    server: ReconnectServer, body: Callable[[WebSocketConnection], Awaitable[None]]
) -> ConnectionRejected | None:
    """Open a websocket to ``server`` and run ``body`` on it, unless refused.

    Returns:
        The rejection if the handshake was refused, else ``None`` once
        ``body`` has returned (the connection is then dropped).
    """
    client_stream, server_stream = trio.testing.memory_stream_pair()
    rejected: list[ConnectionRejected] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, server_stream)
            ws = await trio_websocket.wrap_client_stream(
                nursery, cast(Any, client_stream), "localhost", "/"
            )
            await body(ws)
            nursery.cancel_scope.cancel()
    except* ConnectionRejected as group:
        rejected.extend(cast(ConnectionRejected, exc) for exc in _leaves(group))
    return rejected[0] if rejected else None


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


def header(rejection: ConnectionRejected, name: bytes) -> bytes | None:
    """A header of a refused handshake, by lower-case name."""
    for key, value in rejection.headers or ():
        if key.lower() == name:
            return value
    return None


def ids(frames: list[dict[str, Any]], kind: str = "event") -> list[str]:
    """The ids of the frames of one type."""
    return [frame["id"] for frame in frames if frame["type"] == kind]
