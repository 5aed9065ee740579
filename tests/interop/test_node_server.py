"""Our client against a Node server written from the protocol page alone.

``node/server.mjs`` runs as a real process on 127.0.0.1; the tests steer it
with commands on its stdin and read what it saw on its stdout. Real time with
generous bounds: these are real processes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
import trio

import trio_reconnect as tr
from tests.interop._peers import Line, NodeServer, needs_node

pytestmark = needs_node

#: A short backoff, so that a wait the server asked for stands out.
FAST = tr.Backoff(initial=0.05, max_delay=0.2)

T = TypeVar("T")


def client(server: NodeServer) -> Any:
    return tr.open_reconnecting_websocket(server.url, backoff=FAST, ping_interval=None)


def ev(kind: str, **fields: Any) -> Any:
    """A matcher of the server's lines of one kind (and field values)."""

    def match(line: Line) -> bool:
        return line.get("ev") == kind and all(line.get(k) == v for k, v in fields.items())

    return match


async def take(items: AsyncIterator[T], n: int) -> list[T]:
    return [await anext(items) for _ in range(n)]


async def publish(server: NodeServer, channel: str | None, data: Any) -> str:
    """Have the Node server append one event; its id."""
    before = len(server.events("published"))
    await server.command(cmd="publish", channel=channel, data=data)
    found = await server.wait_for(ev("published"), before + 1)
    return str(found[-1]["id"])


def resumes(server: NodeServer) -> list[Line]:
    return [
        line["frame"] for line in server.events("recv") if line["frame"].get("type") == "resume"
    ]


async def test_our_client_resumes_the_default_stream_and_its_channel(
    node_server: NodeServer,
) -> None:
    server = node_server
    with trio.fail_after(20):
        await publish(server, None, "before")  # a fresh client gets the snapshot
        async with client(server) as ws:
            stream = aiter(ws)
            (snapshot,) = await take(stream, 1)
            assert snapshot == tr.Snapshot(snapshot.id, {"count": 1})
            async with ws.subscribe("room:1") as sub:
                items = aiter(sub)
                ids = [
                    (await publish(server, None, n), await publish(server, "room:1", n))
                    for n in range(2)
                ]
                got = await take(stream, 2), await take(items, 2)
                await server.command(cmd="drop", code=1012, retryAfter=400)
                await server.wait_for(ev("close"))
                ids += [
                    (await publish(server, None, n), await publish(server, "room:1", n))
                    for n in (2, 3)
                ]
                more = await take(stream, 2), await take(items, 2)
    default, channel = got[0] + more[0], got[1] + more[1]
    assert default == [tr.ServerEvent(d, n) for n, (d, _) in enumerate(ids)]
    assert channel == [tr.ServerEvent(c, n) for n, (_, c) in enumerate(ids)]
    first, second = resumes(server)
    assert first == {
        "type": "resume",
        "lastEventId": None,
        "clientId": ws.client_id,
        "channels": {},
    }
    assert second == {
        "type": "resume",
        "lastEventId": ids[1][0],  # per stream and per channel: the last delivered
        "clientId": ws.client_id,
        "channels": {"room:1": ids[1][1]},
    }
    # The last four were published while the client was away: a replay, not live.
    reopened = server.lines.index(server.events("open")[1])
    assert all(server.lines.index(line) < reopened for line in server.events("published"))


def _published(server: NodeServer) -> dict[int, list[Line]]:
    """The server's publish lines by the ``n`` in the data of the frame each answered."""
    frames = {
        (line["conn"], line["frame"].get("msgId")): line["frame"] for line in server.events("recv")
    }
    found: dict[int, list[Line]] = {}
    for line in server.events("publish"):
        found.setdefault(frames[line["conn"], line["msgId"]]["data"]["n"], []).append(line)
    return found


async def test_acks_are_matched_by_msg_id_and_a_drop_applies_nothing_twice(
    node_server: NodeServer,
) -> None:
    server = node_server
    results: dict[int, str] = {}
    with trio.fail_after(20):
        async with client(server) as ws:

            async def publish_n(n: int) -> None:
                results[n] = await ws.publish("acks", {"n": n})

            await server.command(cmd="reverseAcks", count=3)  # answered last to first
            await server.wait_for(ev("reversing"))
            async with trio.open_nursery() as nursery:
                for n in range(3):
                    nursery.start_soon(publish_n, n)
            await server.command(cmd="holdAcks", count=2)  # applied, never answered
            await server.wait_for(ev("holding"))
            async with trio.open_nursery() as nursery:
                for n in (3, 4):
                    nursery.start_soon(publish_n, n)
                await server.wait_for(ev("held"), 2)
                await server.command(cmd="drop")  # a reset: no close frame
                await server.wait_for(ev("close"))
                nursery.start_soon(ws.send_message, "after the publishes")
    # The re-sends come right after ready, before any other message.
    second = [line["frame"] for line in server.events("recv") if line["conn"] == 2]
    assert [frame.get("msgId", frame.get("unparsed")) for frame in second[1:]] == [
        "3",
        "4",
        "after the publishes",
    ]
    published = _published(server)
    for n in range(3):
        (line,) = published[n]
        assert results[n] == line["id"]
        assert not line["repeat"]
    for n in (3, 4):  # sent again after the drop, same msgId: the first append's id
        first, again = published[n]
        assert (first["repeat"], again["repeat"]) == (False, True)
        assert results[n] == first["id"] == again["id"]
        assert first["msgId"] == again["msgId"]
        assert first["conn"] != again["conn"]


async def test_members_and_presence_changes_from_the_node_server(node_server: NodeServer) -> None:
    server = node_server
    with trio.fail_after(20):
        async with client(server) as ws, ws.subscribe("pres:room") as sub:
            assert dict(sub.members) == {ws.client_id: {"via": "node"}}
            items = aiter(sub)
            await server.command(cmd="join", channel="pres:room", clientId="ada", info={"u": 1})
            while (item := await anext(items)) != tr.Join("pres:room", "ada", {"u": 1}):
                assert isinstance(item, tr.Join)
                assert item.client_id == ws.client_id
            assert dict(sub.members) == {ws.client_id: {"via": "node"}, "ada": {"u": 1}}
            await server.command(cmd="leave", channel="pres:room", clientId="ada")
            assert await anext(items) == tr.Leave("pres:room", "ada")
            assert dict(sub.members) == {ws.client_id: {"via": "node"}}
        (closed,) = await server.wait_for(ev("close"))
    assert (closed["code"], closed["clean"]) == (1000, True)  # the application left


async def test_a_close_with_retry_after_is_honoured(node_server: NodeServer) -> None:
    server = node_server
    with trio.fail_after(20):
        async with client(server) as ws:
            await ws.wait_ready()
            await server.command(cmd="drop", code=1012, retryAfter=1500)
            (opened,) = await server.wait_for(ev("open", conn=2))
    (dropped,) = server.events("dropped")
    waited = (opened["t"] - dropped["t"]) / 1000
    assert 1.4 <= waited < 4.0, waited  # the backoff alone: under 0.2 s


@pytest.mark.parametrize(
    ("retry_after", "chunked"),
    [("1", False), ({"inMs": 2000}, True)],  # delta-seconds; an HTTP-date, a chunked body
)
async def test_a_503_with_retry_after_is_honoured(
    node_server: NodeServer, retry_after: Any, chunked: bool
) -> None:
    server = node_server
    with trio.fail_after(20):
        async with client(server) as ws:
            await ws.wait_ready()
            await server.command(
                cmd="refuse", count=1, status=503, retryAfter=retry_after, chunked=chunked
            )
            await server.wait_for(ev("refusing"))
            await server.command(cmd="drop")
            (opened,) = await server.wait_for(ev("open", conn=2))
            await ws.wait_ready()
    (refused,) = server.events("refused")
    waited = (opened["t"] - refused["t"]) / 1000
    assert 0.9 <= waited < 3.5, waited


async def test_a_subscription_made_offline_goes_out_after_ready(node_server: NodeServer) -> None:
    server = node_server
    with trio.fail_after(20):
        async with client(server) as ws, ws.subscribe("room:a"):
            await server.command(cmd="drop", code=1012, retryAfter=300)
            await server.wait_for(ev("close"))
            async with ws.subscribe("room:b") as late:  # offline: waits for the next ready
                assert late.channel == "room:b"
    frames = [line["frame"] for line in server.events("recv") if line["conn"] == 2]
    assert frames[0]["type"] == "resume"
    assert set(frames[0]["channels"]) == {"room:a"}  # only what was once subscribed
    assert frames[1] == {"type": "subscribe", "channel": "room:b", "lastEventId": None}


async def test_a_channel_snapshot_and_a_channel_gap(node_server: NodeServer) -> None:
    server = node_server
    with trio.fail_after(20):
        snap_id = await publish(server, "snap:1", "x")
        gap_id = await publish(server, "room:g", "y")
        async with client(server) as ws:
            async with ws.subscribe("snap:1", last_event_id="unknown") as sub:
                assert await anext(aiter(sub)) == tr.Snapshot(snap_id, {"count": 1})
            async with ws.subscribe("room:g", last_event_id="unknown") as sub:
                assert await anext(aiter(sub)) == tr.Gap("unknown", gap_id)
                assert sub.last_event_id == gap_id


async def test_a_version_1_ready_fails_channels_as_unsupported(node_server: NodeServer) -> None:
    server = node_server
    with trio.fail_after(20):
        await server.command(cmd="v1")
        await server.wait_for(ev("v1"))
        async with client(server) as ws:
            with pytest.raises(tr.SubscriptionRefused) as refused:
                async with ws.subscribe("room:1"):
                    pass
            assert refused.value.code == "unsupported"
            with pytest.raises(tr.PublishRefused) as nacked:
                await ws.publish("room:1", 1)
            assert nacked.value.code == "unsupported"
            await ws.send_message("still up")
            await server.wait_for(ev("message"))
    (resume,) = resumes(server)
    assert resume["clientId"] == ws.client_id


async def test_hints_shorter_than_the_backoff_cannot_make_the_client_hammer(
    node_server: NodeServer,
) -> None:
    server = node_server
    backoff = tr.Backoff(initial=0.3, jitter=tr.Jitter.NONE)  # 0.3, 0.6, 1.2, 2.4 s
    with trio.fail_after(20):
        await server.command(cmd="failHandshakes", count=4, code=1013, retryAfter=0)
        await server.wait_for(ev("failing"))
        async with tr.open_reconnecting_websocket(server.url, backoff=backoff) as ws:
            await ws.wait_ready()
    opened = [line["t"] / 1000 for line in server.events("open")]
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert len(gaps) == 4
    # The hint (0 ms) after the first two failures; after the third, max(hint,
    # backoff), the backoff where its attempt counter stands (1.2 s, then 2.4 s).
    assert all(gap < 0.25 for gap in gaps[:2]), gaps
    assert 1.1 <= gaps[2] < 2.0, gaps
    assert 2.2 <= gaps[3] < 3.5, gaps


@pytest.mark.parametrize("code", [1008, 4001])
async def test_a_fatal_close_code_stops_the_client(node_server: NodeServer, code: int) -> None:
    server = node_server
    with trio.fail_after(20), pytest.raises(tr.FatalCloseError) as raised:
        async with client(server) as ws:
            await ws.wait_ready()
            await server.command(cmd="drop", code=code, retryAfter=0)
            async for _ in ws:
                pass
    assert raised.value.code == code
    assert json.loads(raised.value.reason or "") == {"reason": "restarting", "retryAfter": 0}
    assert len(server.events("open")) == 1  # no reconnect


async def test_a_403_refusal_is_final_with_its_status(node_server: NodeServer) -> None:
    server = node_server
    with trio.fail_after(20):
        await server.command(cmd="refuse", count=5, status=403, retryAfter="1")
        await server.wait_for(ev("refusing"))
        with pytest.raises(tr.HandshakeRejectedError) as raised:
            async with client(server) as ws:
                await ws.wait_ready()
    assert raised.value.status_code == 403
    assert len(server.events("refused")) == 1  # not retried


async def test_1014_is_retried_with_backoff(node_server: NodeServer) -> None:
    server = node_server
    with trio.fail_after(20):
        async with client(server) as ws:
            await ws.wait_ready()
            await server.command(cmd="drop", code=1014, retryAfter=5000)
            (opened,) = await server.wait_for(ev("open", conn=2))
    (dropped,) = server.events("dropped")
    assert (opened["t"] - dropped["t"]) / 1000 < 2.0  # its hint cannot be read: the backoff


async def test_unavailable_at_a_resume_is_not_final(node_server: NodeServer) -> None:
    server = node_server
    with trio.fail_after(20):
        async with client(server) as ws, ws.subscribe("room:u") as sub:
            items = aiter(sub)
            await server.command(cmd="unavailable", channel="room:u", count=1)
            await server.wait_for(ev("storeDown"))
            await server.command(cmd="drop", code=1012, retryAfter=100)
            await server.wait_for(ev("close"))
            missed = await publish(server, "room:u", "while away")
            (refused,) = await server.wait_for(ev("unavailable"))
            # The subscription stays and is asked for again with a subscribe.
            assert await anext(items) == tr.ServerEvent(missed, "while away")
    asked = [line for line in server.events("recv") if line["frame"].get("type") == "subscribe"]
    assert [line["frame"]["lastEventId"] for line in asked] == [
        None,
        resumes(server)[1]["channels"]["room:u"],
    ]
    assert asked[1]["conn"] == refused["conn"] == 2


async def test_an_unsubscribed_from_the_server_ends_the_subscription(
    node_server: NodeServer,
) -> None:
    server = node_server
    with trio.fail_after(20):
        async with client(server) as ws:
            with pytest.raises(tr.SubscriptionRefused) as refused:
                async with ws.subscribe("room:r") as sub:
                    await server.command(cmd="revoke", channel="room:r")
                    async for _ in sub:
                        pass
            assert (refused.value.code, refused.value.reason) == ("forbidden", "revoked")
