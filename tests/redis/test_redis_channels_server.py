"""Two server nodes sharing channels on RedisChannelStore: delivery across nodes, and repair.

Real redis-server, real time; the clients are raw websockets over memory
streams (tests/support/server_clients.py).
"""

from __future__ import annotations

import json
import random
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from tests.redis.test_redis_channels import command
from tests.support.server_clients import connect, receive_json, until_ready
from trio_reconnect.server import ChannelRequest, ReconnectServer, ReplayLog
from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._redis_server import RedisServer

GUARD = 15.0


def node(store: RedisChannelStore) -> ReconnectServer:
    return ReconnectServer(ReplayLog(start=1), channels=store, rng=random.Random(0))


async def subscribe_on(
    nursery: trio.Nursery, server: ReconnectServer, channels: dict[str, str | None]
) -> WebSocketConnection:
    ws = await connect(nursery, server)
    resume = {"type": "resume", "lastEventId": None, "clientId": "c1", "channels": channels}
    await ws.send_message(json.dumps(resume))
    await until_ready(ws)
    return ws


async def events(ws: WebSocketConnection, n: int) -> list[tuple[str, str, Any]]:
    got: list[tuple[str, str, Any]] = []
    while len(got) < n:
        frame = await receive_json(ws)
        if frame["type"] == "event":
            got.append((frame["channel"], frame["id"], frame["data"]))
    return got


async def nothing_more(ws: WebSocketConnection) -> None:
    with trio.move_on_after(0.5):
        frame = await ws.get_message()
        raise AssertionError(f"unexpected frame {frame!r}")


async def test_an_event_published_on_one_node_reaches_a_client_of_another(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    with trio.fail_after(GUARD):
        async with (
            RedisChannelStore(redis_server.url) as a,
            RedisChannelStore(redis_server.url) as b,
        ):
            [start] = await a.read([ChannelRequest("room", None)], max_replay=10)
            ws = await subscribe_on(nursery, node(a), {"room": start.newest})
            publisher = node(b)
            ids = [await publisher.publish("room", i) for i in range(3)]
            assert await events(ws, 3) == [("room", ids[i], i) for i in range(3)]
            await nothing_more(ws)


async def test_a_killed_notification_connection_is_repaired_without_gap_or_duplicate(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    with trio.fail_after(GUARD):
        async with (
            RedisChannelStore(redis_server.url) as a,
            RedisChannelStore(redis_server.url) as b,
        ):
            starts = await a.read([ChannelRequest(c, None) for c in ("x", "y")], max_replay=10)
            ws = await subscribe_on(nursery, node(a), {s.channel: s.newest for s in starts})
            publisher = node(b)
            first = await publisher.publish("x", "before")
            assert await events(ws, 1) == [("x", first, "before")]
            assert command(redis_server.port, "CLIENT", "KILL", "TYPE", "pubsub") == 1
            during = [
                (channel, await publisher.publish(channel, i)) for i, channel in enumerate("xyxy")
            ]
            got = await events(ws, 4)
            await nothing_more(ws)
    for channel in "xy":
        assert [i for c, i, _ in got if c == channel] == [i for c, i in during if c == channel]
