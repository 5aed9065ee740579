"""What one idle connection holds on the server: its tasks and nurseries (issue 18's memory).

An idle, subscribed version 2 client holds its handler task (the read loop)
and trio-websocket's reader, as a plain trio-websocket handler does: the
write loop runs only while something waits in its queue, and the publish
worker only once the client publishes, in the nursery the connection
already has.
"""

from __future__ import annotations

import json
import random
from typing import Any, cast

import trio
import trio.lowlevel
import trio.testing
import trio_websocket
from trio.testing import MockClock, wait_all_tasks_blocked
from trio_websocket import WebSocketConnection

from tests.support.server_clients import connect, receive_json, until_ready
from trio_reconnect.server import MemoryChannelStore, ReconnectServer, ReplayLog


def _server() -> ReconnectServer:
    return ReconnectServer(
        ReplayLog(start=1),
        channels=MemoryChannelStore(start=1),
        rng=random.Random(0),
        ping_interval=None,
    )


def _name(task: trio.lowlevel.Task) -> str:
    code = getattr(task.coro, "cr_code", None)
    return task.name if code is None else code.co_qualname


def _footprint() -> tuple[list[str], int]:
    """Tasks (by name, fan-out volunteers aside) and nurseries under the server's stream tasks."""
    tasks: list[str] = []
    nurseries = 0

    def walk(task: trio.lowlevel.Task, inside: bool) -> None:
        nonlocal nurseries
        inside = inside or _name(task) == "ReconnectServer.serve_stream"
        for nursery in task.child_nurseries:
            nurseries += inside
            for child in nursery.child_tasks:
                if inside and not _name(child).endswith(".volunteer"):
                    tasks.append(_name(child))
                walk(child, inside)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root, False)
    return sorted(tasks), nurseries


async def _subscribed(nursery: trio.Nursery, server: ReconnectServer) -> WebSocketConnection:
    ws = await connect(nursery, server)
    await ws.send_message(json.dumps({"type": "resume", "lastEventId": None, "clientId": "c1"}))
    await until_ready(ws)
    for channel in ("a", "b"):
        await ws.send_message(json.dumps({"type": "subscribe", "channel": channel}))
        assert (await receive_json(ws))["type"] == "subscribed"
    return ws


async def _send(ws: WebSocketConnection, **frame: Any) -> None:
    await ws.send_message(json.dumps(frame))


async def test_an_idle_connection_holds_two_tasks(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = _server()
    with trio.fail_after(5):
        await _subscribed(nursery, server)
        await wait_all_tasks_blocked()
        # The stream's nursery, the acceptor's (trio-websocket's reader), the client's loops'.
        assert _footprint() == (["WebSocketConnection._reader_task"], 3)


async def test_the_write_loop_comes_and_goes(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = _server()
    with trio.fail_after(5):
        ws = await _subscribed(nursery, server)
        (client,) = server.clients
        for round_ in range(3):
            await client.send_many([f"m{round_}", f"n{round_}"])  # queued: the write loop runs
            assert await ws.get_message() == f"m{round_}"
            assert await ws.get_message() == f"n{round_}"
            await wait_all_tasks_blocked()
            assert _footprint() == (["WebSocketConnection._reader_task"], 3)
        await server.publish("a", 1)  # live events too, queued or written directly
        assert (await receive_json(ws))["data"] == 1
        # Channel frames are messages of the connection: 2 subscribed, 6 sent, 1 event.
        assert client.statistics().messages_sent == 9


async def test_the_publish_worker_starts_at_the_first_publish(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = _server()
    with trio.fail_after(5):
        ws = await _subscribed(nursery, server)
        await _send(ws, type="publish", channel="a", msgId="m1", data=1)
        frames = [await receive_json(ws), await receive_json(ws)]
        assert sorted(frame["type"] for frame in frames) == ["ack", "event"]
        await wait_all_tasks_blocked()
        tasks, nurseries = _footprint()
        # The worker waits for the next publish in the acceptor's nursery: no nursery of its own.
        assert (tasks, nurseries) == (
            ["Publisher._work", "WebSocketConnection._reader_task"],
            3,
        )


async def test_a_request_handled_without_a_nursery_gets_its_own_for_the_worker(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # handle_request is also the handler of the WebSocketServer that serve()
    # reports: called without the connection's nursery, the worker gets one.
    server = _server()
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def handle() -> None:
        async with trio.open_nursery() as reader:
            request = await trio_websocket.wrap_server_stream(reader, server_stream)
            await server._parts.acceptor.handle_request(request)
            reader.cancel_scope.cancel()

    with trio.fail_after(5):
        nursery.start_soon(server._parts.fanout_task.volunteer)
        nursery.start_soon(server._parts.channel_task.volunteer)  # type: ignore[union-attr]
        nursery.start_soon(handle)
        ws = await trio_websocket.wrap_client_stream(
            nursery, cast(Any, client_stream), "localhost", "/"
        )
        await _send(ws, type="resume", lastEventId=None, clientId="c1")
        await until_ready(ws)
        await _send(ws, type="publish", channel="a", msgId="m1", data=1)
        assert (await receive_json(ws))["type"] == "ack"
        await ws.aclose()
