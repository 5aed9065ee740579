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

import trio_reconnect as tr
from tests.support.server_clients import receive_json, until_ready
from trio_reconnect import Join, Leave
from trio_reconnect.server import MemoryChannelStore, ReconnectServer, ReplayLog
from trio_reconnect.testing import MemoryNetwork

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
        ReconnectServer(ReplayLog(), channels=store, presence="lobby*")
    with pytest.raises(ValueError, match="channel store"):
        ReconnectServer(ReplayLog(), presence=("lobby*",))
    with pytest.raises(ValueError, match="presence_grace"):
        ReconnectServer(ReplayLog(), channels=store, presence_grace=0)


async def test_library_clients_see_no_flap_across_a_restart(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    """The client's ``sub.members`` (trio_reconnect/_presence.py) against this server."""
    network = MemoryNetwork(random=random.Random(0))
    server = make_server(MemoryChannelStore(start=1))
    await nursery.start(server.serve_listeners, [network.listen("n0")])
    seen: list[Join | Leave] = []

    async def collect(sub: tr.Subscription) -> None:
        async for item in sub:
            if isinstance(item, Join | Leave):
                seen.append(item)

    with trio.fail_after(300):
        async with (
            tr.open_reconnecting_websocket(
                "ws://n0/", open_stream=network.client("bob"), ping_interval=None
            ) as bob,
            tr.open_reconnecting_websocket(
                "ws://n0/", open_stream=network.client("ada"), ping_interval=None
            ) as ada,
            bob.subscribe("lobby") as bob_sub,
            trio.open_nursery() as inner,
        ):
            inner.start_soon(collect, bob_sub)
            async with ada.subscribe("lobby"):
                await trio.sleep(1)
                assert [(type(i).__name__, i.client_id) for i in seen] == [
                    ("Join", bob.client_id),
                    ("Join", ada.client_id),
                ]
                assert set(bob_sub.members) == {bob.client_id, ada.client_id}
                opened = bob.statistics().reconnects + ada.statistics().reconnects
                await server.restart()  # 1012 to both: they come back within the grace
                await trio.sleep(GRACE * 2)
                assert bob.statistics().reconnects + ada.statistics().reconnects == opened + 2
                assert len(seen) == 2, seen
                assert set(bob_sub.members) == {bob.client_id, ada.client_id}
            await trio.sleep(1)  # ada unsubscribed: one leave at once
            assert [(type(i).__name__, i.client_id) for i in seen[2:]] == [("Leave", ada.client_id)]
            inner.cancel_scope.cancel()


async def test_a_missed_change_is_repaired_by_the_difference(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    server = make_server(store)
    presence = store.presence_store()
    with trio.fail_after(300):
        observer, _, _ = await join(nursery, server, "obs")
        ada = presence.join_nowait("lobby", "p", "ada", {"user": "ada"}, "elsewhere\n1")
        assert await changes(observer, 1) == [("join", "ada")]
        notify, presence.notify = presence.notify, lambda change: None
        presence.join_nowait("lobby", "p", "zed", {}, "elsewhere\n2")  # its notification is lost
        presence.release_nowait("lobby", ada, grace=None)  # and this one
        presence.notify = notify
        presence.join_nowait("lobby", "p", "yan", {}, "elsewhere\n3")  # a jump: repaired
        assert await changes(observer, 1) == [("leave", "ada"), ("join", "zed"), ("join", "yan")]
        assert await changes(observer, 5) == []


async def test_after_lost_notifications_every_list_is_repaired(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    server = make_server(store)
    presence = store.presence_store()
    with trio.fail_after(300):
        observer, _, _ = await join(nursery, server, "obs")
        store.lose_notifications()
        presence.join_nowait("lobby", "p", "zed", {}, "elsewhere\n1")  # in no live stream
        assert await changes(observer, 1) == [("join", "zed")]
        assert await changes(observer, 5) == []


async def test_an_owner_found_lapsed_holds_its_members_again(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    server = make_server(store)
    presence = store.presence_store()
    with trio.fail_after(300):
        observer, _, _ = await join(nursery, server, "obs")
        await join(nursery, server, "ada")
        assert await changes(observer, 1) == [("join", "ada")]
        members = server._parts.members
        assert members is not None
        # its liveness lapsed (a stalled store) and a sweeper orphaned its holds
        presence._orphan(members.owner, trio.current_time() + GRACE)
        assert await changes(observer, GRACE * 3) == []
        assert server._parts.sweeper is not None
        assert server._parts.sweeper.lapses == 1
