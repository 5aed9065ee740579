"""Presence on the server (PROTOCOL.md 4.4) with raw clients on memory streams, autojump clock."""

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

from tests.support.server_clients import receive_json, until_ready
from trio_reconnect.server import MemoryChannelStore, ReconnectServer, ReplayLog

GRACE = 30.0


def make_server(store: MemoryChannelStore, **kwargs: Any) -> ReconnectServer:
    return ReconnectServer(
        ReplayLog(start=1),
        channels=store,
        rng=random.Random(0),
        presence=("lobby*",),
        presence_grace=GRACE,
        presence_info=lambda principal: {"user": "anon"},
        **kwargs,
    )


async def join(
    nursery: trio.Nursery, server: ReconnectServer, client_id: str, channel: str = "lobby"
) -> tuple[WebSocketConnection, trio.testing.MemoryReceiveStream | Any, dict[str, Any]]:
    """A member: connect, resume with ``channel``, return the socket, its raw stream, its list."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    nursery.start_soon(server.serve_stream, server_stream)
    ws = await trio_websocket.wrap_client_stream(
        nursery, cast(Any, client_stream), "localhost", "/"
    )
    await ws.send_message(
        json.dumps({"type": "resume", "lastEventId": None, "clientId": client_id})
    )
    await until_ready(ws)
    await ws.send_message(
        json.dumps({"type": "subscribe", "channel": channel, "lastEventId": None})
    )
    presence = await receive_json(ws)
    assert presence["type"] == "presence", presence
    assert (await receive_json(ws))["type"] == "subscribed"
    return ws, client_stream, presence["members"]


async def changes(ws: WebSocketConnection, seconds: float) -> list[tuple[str, str]]:
    """The join/leave frames that come within ``seconds``: (type, clientId)."""
    got = []
    with trio.move_on_after(seconds):
        while True:
            frame = await receive_json(ws)
            got.append((frame["type"], frame["clientId"]))
    return got


async def test_list_join_and_leave_at_unsubscribe(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(MemoryChannelStore(start=1))
    with trio.fail_after(300):
        observer, _, members = await join(nursery, server, "obs")
        assert members == {"obs": {"user": "anon"}}
        ada, _, members = await join(nursery, server, "ada")
        assert members == {"obs": {"user": "anon"}, "ada": {"user": "anon"}}
        assert await changes(observer, 1) == [("join", "ada")]
        await ada.send_message(json.dumps({"type": "unsubscribe", "channel": "lobby"}))
        assert (await receive_json(ada))["type"] == "unsubscribed"
        start = trio.current_time()
        frame = await receive_json(observer)
        assert frame == {"type": "leave", "channel": "lobby", "clientId": "ada"}
        assert trio.current_time() - start < 0.1
        assert await changes(observer, GRACE * 2) == []


async def test_a_clean_close_leaves_at_once(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(MemoryChannelStore(start=1))
    with trio.fail_after(300):
        observer, _, _ = await join(nursery, server, "obs")
        ada, _, _ = await join(nursery, server, "ada")
        assert await changes(observer, 1) == [("join", "ada")]
        await ada.aclose(1000)
        assert await changes(observer, 1) == [("leave", "ada")]
        assert await changes(observer, GRACE * 2) == []


async def test_a_drop_then_a_return_within_the_grace_shows_nothing(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    a, b = make_server(store), make_server(store)
    with trio.fail_after(300):
        observer, _, _ = await join(nursery, a, "obs")
        _ada, stream, _ = await join(nursery, a, "ada")
        assert await changes(observer, 1) == [("join", "ada")]
        await stream.aclose()  # the connection drops: no close frame
        assert await changes(observer, GRACE - 5) == []
        _again, _, members = await join(nursery, b, "ada")  # on another node
        assert set(members) == {"obs", "ada"}
        assert await changes(observer, GRACE * 3) == []


async def test_past_the_grace_exactly_one_leave(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(MemoryChannelStore(start=1))
    with trio.fail_after(300):
        observer, _, _ = await join(nursery, server, "obs")
        other, _, _ = await join(nursery, server, "obs2")
        _ada, stream, _ = await join(nursery, server, "ada")
        assert await changes(observer, 1) == [("join", "obs2"), ("join", "ada")]
        assert await changes(other, 0.1) == [("join", "ada")]
        dropped = trio.current_time()
        await stream.aclose()
        frame = await receive_json(observer)
        assert frame == {"type": "leave", "channel": "lobby", "clientId": "ada"}
        waited = trio.current_time() - dropped
        assert GRACE <= waited <= GRACE + 1.5
        assert await changes(other, 0.1) == [("leave", "ada")]
        assert await changes(observer, GRACE * 2) == []


async def test_a_member_with_two_connections_is_one_member(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(MemoryChannelStore(start=1))
    with trio.fail_after(300):
        observer, _, _ = await join(nursery, server, "obs")
        first, _, _ = await join(nursery, server, "ada")
        second, _, members = await join(nursery, server, "ada")
        assert set(members) == {"obs", "ada"}
        assert await changes(observer, 1) == [("join", "ada")]
        await first.aclose(1000)
        assert await changes(observer, 1) == [], "one connection still holds it"
        await second.aclose(1000)
        assert await changes(observer, 1) == [("leave", "ada")]


async def test_a_client_id_of_another_principal_gets_a_key_of_its_own(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    names = iter(["p1", "p2", "p3"])
    server = make_server(
        MemoryChannelStore(start=1),
        authenticate=lambda request: next(names),
    )
    with trio.fail_after(300):
        observer, _, _ = await join(nursery, server, "obs")
        await join(nursery, server, "same")
        _, _, members = await join(nursery, server, "same")
        assert len(members) == 3
        keys = sorted(members)
        assert "same" in keys
        assert [k for k in keys if k.startswith("same~")]
        assert len(await changes(observer, 1)) == 2


async def test_channels_without_presence_send_no_list(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(MemoryChannelStore(start=1))
    with trio.fail_after(300):
        ws, _, _ = await join(nursery, server, "obs")
        await ws.send_message(
            json.dumps({"type": "subscribe", "channel": "room", "lastEventId": None})
        )
        assert (await receive_json(ws))["type"] == "subscribed"


def test_bad_settings() -> None:
    store = MemoryChannelStore()
    with pytest.raises(TypeError, match="sequence of globs"):
        ReconnectServer(ReplayLog(), channels=store, presence="lobby*")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channel store"):
        ReconnectServer(ReplayLog(), presence=("lobby*",))
    with pytest.raises(ValueError, match="presence_grace"):
        ReconnectServer(ReplayLog(), channels=store, presence_grace=0)
