"""End to end: presence on two real ``serve --redis --presence lobby* --presence-grace 2`` nodes.

Two members join ``lobby`` on node 0, an observer watches from node 1. Node 0
is SIGKILLed. One member (``mover``) reconnects to node 1 at once: within the
grace, so the observer sees nothing of it. The other (``ghost``) never comes
back: the observer sees exactly one leave of it, within the bound of
docs/howto/presence.md (``owner_ttl + owner_check_interval + grace +
sweep_interval``: 5 + 2 + 2 + 1 s with serve's defaults).
"""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from tests.support.cluster import make_nodes, start_all
from trio_reconnect.server import DEFAULT_ANNOUNCE_TTL
from trio_reconnect.server._membersplan import killed_node_bound
from trio_reconnect.server._sweeper import DEFAULT_OWNER_CHECK_INTERVAL, DEFAULT_SWEEP_INTERVAL
from trio_reconnect.testing._redis_server import RedisServer

GRACE = 2.0
BOUND = killed_node_bound(
    owner_ttl=DEFAULT_ANNOUNCE_TTL,
    owner_check_interval=DEFAULT_OWNER_CHECK_INTERVAL,
    grace=GRACE,
    sweep_interval=DEFAULT_SWEEP_INTERVAL,
)

#: Every socket opened, closed at the end of the test.
OPEN: list[trio_websocket.WebSocketConnection] = []


async def member(
    nursery: trio.Nursery, url: str, client_id: str
) -> tuple[trio_websocket.WebSocketConnection, dict[str, Any]]:
    """A raw version 2 client in ``lobby``: its socket and the member list it was sent."""
    ws = await trio_websocket.connect_websocket_url(nursery, url)
    OPEN.append(ws)
    await ws.send_message(
        json.dumps({"type": "resume", "lastEventId": None, "clientId": client_id})
    )
    while json.loads(await ws.get_message())["type"] != "ready":
        pass
    await ws.send_message(
        json.dumps({"type": "subscribe", "channel": "lobby", "lastEventId": None})
    )
    members = None
    while True:
        frame = json.loads(await ws.get_message())
        if frame["type"] == "presence":
            members = frame["members"]
        if frame["type"] == "subscribed":
            assert members is not None
            return ws, members


async def drain(ws: trio_websocket.WebSocketConnection) -> None:
    """Read until the connection is over."""
    with contextlib.suppress(trio_websocket.ConnectionClosed):
        while True:
            await ws.get_message()


async def changes(ws: trio_websocket.WebSocketConnection, seconds: float) -> list[Any]:
    """The join/leave frames within ``seconds``, each with the time it came."""
    got = []
    with trio.move_on_after(seconds):
        while True:
            frame = json.loads(await ws.get_message())
            if frame["type"] in ("join", "leave"):
                got.append((frame["type"], frame["clientId"], trio.current_time()))
    return got


async def test_sigkill_one_leave_within_the_bound_and_no_flap_for_a_mover(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    extra = ("--presence", "lobby*", "--presence-grace", str(GRACE))
    nodes = make_nodes(redis_server.url, tmp_path, *extra, count=2)
    try:
        with trio.fail_after(60):
            await start_all(nodes)
            async with trio.open_nursery() as nursery:
                observer, _ = await member(nursery, nodes[1].url, "observer")
                async with trio.open_nursery() as doomed:
                    ghost, _ = await member(doomed, nodes[0].url, "ghost")
                    mover, members = await member(doomed, nodes[0].url, "mover")
                    assert set(members) == {"observer", "ghost", "mover"}
                    joined = await changes(observer, 1.0)
                    assert [c[:2] for c in joined] == [("join", "ghost"), ("join", "mover")]
                    await nodes[0].stop(signal.SIGKILL)
                    killed = trio.current_time()
                    for ws in (ghost, mover):  # read on until their sockets see the reset
                        doomed.start_soon(drain, ws)
                _, members = await member(nursery, nodes[1].url, "mover")
                assert set(members) == {"observer", "ghost", "mover"}
                seen = await changes(observer, BOUND + 3)
                assert [c[:2] for c in seen] == [("leave", "ghost")]
                assert seen[0][2] - killed <= BOUND + 1
                for ws in OPEN:
                    await ws.aclose()
    finally:
        with trio.move_on_after(5, shield=True):
            for ws in OPEN:
                await ws.aclose()
                # trio-websocket leaves the socket of a connection that broke open
                await trio.aclose_forcefully(ws._stream)
        OPEN.clear()
        for node in nodes:
            await node.aclose()


async def test_sigterm_one_leave_a_grace_after_the_drain(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    extra = ("--presence", "lobby*", "--presence-grace", str(GRACE), "--drain-timeout", "1")
    nodes = make_nodes(redis_server.url, tmp_path, *extra, count=2)
    try:
        with trio.fail_after(60):
            await start_all(nodes)
            async with trio.open_nursery() as nursery:
                observer, _ = await member(nursery, nodes[1].url, "observer")
                async with trio.open_nursery() as doomed:
                    ghost, _ = await member(doomed, nodes[0].url, "ghost")
                    assert [c[:2] for c in await changes(observer, 1.0)] == [("join", "ghost")]
                    doomed.start_soon(drain, ghost)  # it reads its 1012 and never comes back
                    stopped = trio.current_time()
                    assert await nodes[0].stop(signal.SIGTERM) == 0
                seen = await changes(observer, BOUND + 3)
                assert [c[:2] for c in seen] == [("leave", "ghost")]
                # a grace after the drain (its release, or its retired owner's orphaned hold)
                bound = 1 + DEFAULT_OWNER_CHECK_INTERVAL + GRACE + DEFAULT_SWEEP_INTERVAL
                assert seen[0][2] - stopped <= bound + 1
                for ws in OPEN:
                    await ws.aclose()
    finally:
        with trio.move_on_after(5, shield=True):
            for ws in OPEN:
                await ws.aclose()
                await trio.aclose_forcefully(ws._stream)
        OPEN.clear()
        for node in nodes:
            await node.aclose()
