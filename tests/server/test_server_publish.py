"""Acknowledged publish on the server (PROTOCOL 4.5): exactly once, in order, R3, bad input.

Raw websocket clients over memory streams, the autojump clock, a
MemoryChannelStore (wrapped by tests/support/faulty_store.py to inject
faults between the append and the ack). The same on Redis, and a stopped
Redis: tests/redis/test_redis_publish_server.py.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import trio
from trio.testing import MockClock
from trio_websocket import WebSocketConnection

from tests.support.faulty_store import FaultyStore, log_of
from tests.support.server_clients import connect, receive_json, until_ready
from trio_reconnect import _tws
from trio_reconnect.server import (
    ChannelStore,
    MemoryChannelStore,
    ReconnectServer,
    ReplayLog,
)
from trio_reconnect.server._pubplan import GATHER_BATCH, MAX_BATCH


def node(store: ChannelStore, **kwargs: Any) -> ReconnectServer:
    return ReconnectServer(ReplayLog(start=1), channels=store, rng=random.Random(0), **kwargs)


async def v2(
    nursery: trio.Nursery, server: ReconnectServer, client_id: str = "c1"
) -> WebSocketConnection:
    ws = await connect(nursery, server)
    await ws.send_message(
        json.dumps({"type": "resume", "lastEventId": None, "clientId": client_id})
    )
    await until_ready(ws)
    return ws


async def publish(
    ws: WebSocketConnection, msg_id: Any, data: Any = None, channel: Any = "room"
) -> None:
    frame = {"type": "publish", "channel": channel, "msgId": msg_id, "data": data}
    await ws.send_message(json.dumps(frame))


async def answers(ws: WebSocketConnection, n: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < n:
        frame = await receive_json(ws)
        if frame["type"] in ("ack", "nack"):
            got.append(frame)
    return got


def ack(msg_id: str, event_id: str, channel: str = "room") -> dict[str, Any]:
    return {"type": "ack", "msgId": msg_id, "channel": channel, "id": event_id}


def codes(frames: list[dict[str, Any]]) -> list[str]:
    return [
        f"{f['msgId']}={f['id']}" if f["type"] == "ack" else f"{f['msgId']}!{f['code']}"
        for f in frames
    ]


async def test_a_duplicate_re_send_gets_the_same_id_and_no_second_event(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "m1", {"v": 1})
        assert await answers(ws, 1) == [ack("m1", "1")]
        await publish(ws, "m2", {"v": 2})
        await publish(ws, "m1", {"v": 1})
        assert await answers(ws, 2) == [ack("m2", "2"), ack("m1", "1")]
        # the same msgId from another clientId is another publish
        other = await v2(nursery, server, client_id="c2")
        await publish(other, "m1", {"v": 3})
        assert await answers(other, 1) == [ack("m1", "3")]
        assert await log_of(store, "room") == [("1", {"v": 1}), ("2", {"v": 2}), ("3", {"v": 3})]
    stats = server.statistics()
    assert (stats.publishes_acked, stats.publishes_duplicate) == (4, 1)


async def test_many_pipelined_publishes_are_batched_applied_and_acked_in_order(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = FaultyStore(MemoryChannelStore(start=1))
    server = node(store)
    n = 2_000
    with trio.fail_after(60):
        ws = await v2(nursery, server)
        for i in range(n):
            await publish(ws, str(i), i, channel="room" if i % 3 else "other")
        got = await answers(ws, n)
    assert [f["msgId"] for f in got] == [str(i) for i in range(n)]
    assert all(f["type"] == "ack" for f in got)
    for channel in ("room", "other"):
        held = await log_of(store, channel)
        assert [d for _, d in held][-10:] == [
            i for i in range(n) if (i % 3 != 0) == (channel == "room")
        ][-10:]
    ids = [int(f["id"]) for f in got if f["channel"] == "room"]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert sum(store.calls) == n
    assert max(store.calls) > 1  # pipelined publishes share store calls
    assert max(store.calls) <= MAX_BATCH


async def test_r3_unavailable_then_every_later_publish_until_the_re_send(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = FaultyStore(MemoryChannelStore(start=1), fail_next=1)
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "a", "a")
        assert codes(await answers(ws, 1)) == ["a!unavailable"]
        # the store is back, but b and c must not overtake a
        await publish(ws, "b", "b")
        await publish(ws, "c", "c")
        assert codes(await answers(ws, 2)) == ["b!unavailable", "c!unavailable"]
        # the re-send starts with a: from there everything is applied, in order
        for m in "abcd":
            await publish(ws, m, m)
        assert codes(await answers(ws, 4)) == ["a=1", "b=2", "c=3", "d=4"]
    assert await log_of(store, "room") == [("1", "a"), ("2", "b"), ("3", "c"), ("4", "d")]
    stats = server.statistics()
    assert (stats.publishes_acked, stats.nacks_unavailable) == (4, 3)


async def test_a_batch_that_fails_midway_acks_its_prefix_only(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    inner = MemoryChannelStore(start=1)
    hold = trio.Event()
    store = FaultyStore(inner, hold=hold)
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "first", 0)
        await store.applied.wait()  # the worker holds "first"; the rest queue behind it
        for m in ("a", "b", "c"):
            await publish(ws, m, m, channel="bad" if m == "b" else "room")
        await trio.testing.wait_all_tasks_blocked()
        inner.break_channel("bad")
        store.hold = None
        hold.set()
        got = await answers(ws, 4)
        assert store.calls == [1, 3]  # a, b, c in one call, which stopped at b
        assert codes(got) == ["first=1", "a=2", "b!unavailable", "c!unavailable"]
        inner.break_channel("bad", broken=False)
        for m in ("b", "c"):
            await publish(ws, m, m, channel="bad" if m == "b" else "room")
        assert codes(await answers(ws, 2)) == ["b=1", "c=3"]
    assert await log_of(inner, "room") == [("1", 0), ("2", "a"), ("3", "c")]


async def test_applied_but_connection_dropped_before_the_ack_same_node(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    inner = MemoryChannelStore(start=1)
    store = FaultyStore(inner, hold=trio.Event())
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "m1", {"v": 1})
        await store.applied.wait()  # appended: the ack is not sent yet
        assert await log_of(inner, "room") == [("1", {"v": 1})]
        await ws.aclose()  # the connection drops before the ack
        await trio.testing.wait_all_tasks_blocked()
        assert server.clients == ()  # its worker, stalled in the store call, went with it
        store.hold = None
        again = await v2(nursery, server)  # same clientId, new connection
        await publish(again, "m1", {"v": 1})
        assert await answers(again, 1) == [ack("m1", "1")]
    assert await log_of(inner, "room") == [("1", {"v": 1})]


async def test_applied_but_connection_dropped_before_the_ack_other_node(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    inner = MemoryChannelStore(start=1)
    store = FaultyStore(inner, hold=trio.Event())
    first, second = node(store), node(inner)  # two nodes, one store
    with trio.fail_after(10):
        ws = await v2(nursery, first)
        await publish(ws, "m1", {"v": 1})
        await publish(ws, "m2", {"v": 2})
        await store.applied.wait()
        await ws.aclose()
        other = await v2(nursery, second)
        for m in ("m1", "m2", "m3"):
            await publish(other, m, {"v": int(m[1])})
        got = await answers(other, 3)
        assert [f["type"] for f in got] == ["ack"] * 3
        assert store.hold is not None
        store.hold.set()  # the first node's stalled call ends: its client is gone
    held = await log_of(inner, "room")
    assert sorted(d["v"] for _, d in held) == [1, 2, 3]  # each once
    assert [d["v"] for _, d in held] == [1, 2, 3]  # in the client's order
    assert {f["msgId"]: f["id"] for f in got} == {f"m{d['v']}": i for i, d in held}


async def test_an_unknown_outcome_is_unavailable_and_the_re_send_finds_the_record(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    inner = MemoryChannelStore(start=1)
    store = FaultyStore(inner, unknown_next=1)
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "m1", "x")
        assert codes(await answers(ws, 1)) == ["m1!unavailable"]  # applied, not acked
        await publish(ws, "m1", "x")
        assert await answers(ws, 1) == [ack("m1", "1")]
    assert await log_of(inner, "room") == [("1", "x")]
    assert server.statistics().publishes_duplicate == 1


# --------------------------------------------------------------------------- bad input


async def test_a_10_kb_msg_id_is_invalid_and_never_reaches_the_store(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = FaultyStore(MemoryChannelStore(start=1))
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "x" * 10_000, 1)
        [nack] = await answers(ws, 1)
    assert (nack["type"], nack["code"], nack["msgId"]) == ("nack", "invalid", "x" * 10_000)
    assert store.calls == []
    assert server.statistics().nacks_invalid == 1


@pytest.mark.parametrize(
    ("frame", "msg_id", "channel"),
    [
        ({"type": "publish", "channel": "room", "data": 1}, None, "room"),
        ({"type": "publish", "channel": "room", "msgId": 7, "data": 1}, None, "room"),
        ({"type": "publish", "channel": "room", "msgId": None, "data": 1}, None, "room"),
        ({"type": "publish", "msgId": "m", "data": 1}, "m", None),
        ({"type": "publish", "channel": 5, "msgId": "m", "data": 1}, "m", None),
        ({"type": "publish", "channel": "", "msgId": "m", "data": 1}, "m", ""),
        ({"type": "publish", "channel": "room", "msgId": "\ud800", "data": 1}, "\ud800", "room"),
    ],
)
async def test_a_malformed_publish_is_nacked_invalid_with_what_it_echoes(
    autojump_clock: MockClock,
    nursery: trio.Nursery,
    frame: dict[str, Any],
    msg_id: str | None,
    channel: str | None,
) -> None:
    store = FaultyStore(MemoryChannelStore(start=1))
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await ws.send_message(json.dumps(frame))
        [nack] = await answers(ws, 1)
        # the connection goes on
        await publish(ws, "ok", 1)
        assert await answers(ws, 1) == [ack("ok", "1")]
    assert (nack["code"], nack["msgId"], nack["channel"]) == ("invalid", msg_id, channel)
    assert store.calls == [1]


async def test_forbidden_and_too_large(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    def authorize(principal: Any, channel: str, action: str) -> bool:
        return not channel.startswith("private:")

    store = FaultyStore(MemoryChannelStore(start=1))
    server = node(store, authorize=authorize, max_message_size=5_000)
    # 1E2 re-encodes as 100.0: the compact data is larger than the message
    grows = "[" + ",".join(["1E2"] * 1_000) + "]"
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "f", 1, channel="private:x")
        await ws.send_message(
            '{"type": "publish", "channel": "room", "msgId": "big", "data": ' + grows + "}"
        )
        await publish(ws, "ok", 1)
        got = await answers(ws, 3)
    assert codes(got) == ["f!forbidden", "big!too_large", "ok=1"]
    assert store.calls == [1]
    stats = server.statistics()
    assert (stats.nacks_forbidden, stats.nacks_too_large, stats.publishes_acked) == (1, 1, 1)


async def test_100000_unacked_publishes_stay_bounded_and_the_node_goes_on(
    autojump_clock: MockClock, nursery: trio.Nursery, write_path: str
) -> None:
    """A client pipelines 100,000 publishes without reading while the store stalls."""
    if write_path != "batched":
        pytest.skip("~40 s; the write path does not bear on the queue's bound")
    inner = MemoryChannelStore(start=1, channel_max_len=100)
    store = FaultyStore(inner, hold=trio.Event())
    server = node(store)
    n = 100_000
    with trio.fail_after(600):
        ws = await v2(nursery, server)
        for i in range(n):
            await publish(ws, str(i), i)
        await trio.testing.wait_all_tasks_blocked()
        (hostile,) = server.clients
        publisher = server._parts.channels.publisher  # type: ignore[union-attr]
        assert publisher.queued(hostile) <= 16_384 + 1
        assert store.hold is not None
        store.hold.set()
        store.hold = None
        got = await answers(ws, n)
        # the node goes on: another client publishes
        other = await v2(nursery, server, client_id="c2")
        await publish(other, "x", "x")
        [done] = await answers(other, 1)
    assert done["type"] == "ack"
    assert sorted(int(f["msgId"]) for f in got) == list(range(n))  # each answered once
    acked = [int(f["msgId"]) for f in got if f["type"] == "ack"]
    nacked = {f["code"] for f in got if f["type"] == "nack"}
    assert acked == list(range(len(acked)))  # a prefix, in order
    assert 16_384 <= len(acked) < n
    assert nacked == {"unavailable"}
    assert server.statistics().nacks_unavailable == n - len(acked)


async def test_the_dedupe_window_is_the_servers_dedupe_ttl(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    server = node(store, dedupe_ttl=30)
    with trio.fail_after(100):
        ws = await v2(nursery, server)
        await publish(ws, "m1", "x")
        assert await answers(ws, 1) == [ack("m1", "1")]
        await trio.sleep(29)
        await publish(ws, "m1", "x")
        assert await answers(ws, 1) == [ack("m1", "1")]
        await trio.sleep(1.5)
        # past the window (from the first append): applied again, as documented
        await publish(ws, "m1", "x")
        assert await answers(ws, 1) == [ack("m1", "2")]


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), "600"])
def test_dedupe_ttl_is_validated(ttl: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="dedupe_ttl"):
        node(MemoryChannelStore(), dedupe_ttl=ttl)
    assert node(MemoryChannelStore()).dedupe_ttl == 600


async def test_publishes_received_together_share_one_store_call(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # The worker lets what the connection already received join the batch
    # (_pubplan.gather_more): a client that pipelines gets full batches,
    # not one store call per publish or two.
    store = FaultyStore(MemoryChannelStore(start=1))
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        frames = [
            json.dumps({"type": "publish", "channel": "room", "msgId": str(i), "data": i})
            for i in range(128)
        ]
        await _tws.write_batch(ws, frames)  # as the client's outbox pump writes them
        got = await answers(ws, 128)
        assert [f["msgId"] for f in got] == [str(i) for i in range(128)]
        assert sum(store.calls) == 128
        # A few calls (trio's scheduling varies the cut: [64, 64], [57, 58, 13]...);
        # cut at once, it was one call per one to three publishes.
        assert len(store.calls) <= 4
        assert max(store.calls) >= 32
        # A lone publish still goes alone, a few scheduler passes later (no clock).
        start = trio.current_time()
        await publish(ws, "alone", 0)
        assert codes(await answers(ws, 1)) == ["alone=129"]
        assert trio.current_time() == start
        assert store.calls[-1] == 1


async def test_what_arrives_while_a_call_is_in_flight_goes_in_one_call(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # A group commit: the first publish's call is held; 200 more arrive (one a
    # re-send of a msgId among them); the next call takes them all, in order.
    store = FaultyStore(MemoryChannelStore(start=1), hold=trio.Event())
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "first", 0)
        await store.applied.wait()
        ids = [str(i) for i in range(199)] + ["5"]
        frames = [
            json.dumps({"type": "publish", "channel": "room", "msgId": m, "data": n})
            for n, m in enumerate(ids, start=1)
        ]
        await _tws.write_batch(ws, frames)
        await trio.testing.wait_all_tasks_blocked()
        assert store.hold is not None
        store.hold.set()
        got = await answers(ws, 201)
    assert store.calls == [1, 200]
    assert GATHER_BATCH < 200
    assert codes(got) == ["first=1"] + [f"{i}={i + 2}" for i in range(199)] + ["5=7"]
    assert [d for _, d in await log_of(store, "room")] == list(range(200))  # the re-send: once


async def test_a_failed_group_commit_answers_every_publish_in_it_unavailable(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = FaultyStore(MemoryChannelStore(start=1), hold=trio.Event())
    server = node(store)
    with trio.fail_after(10):
        ws = await v2(nursery, server)
        await publish(ws, "first", 0)
        await store.applied.wait()
        frames = [
            json.dumps({"type": "publish", "channel": "room", "msgId": str(i), "data": i})
            for i in range(100)
        ]
        await _tws.write_batch(ws, frames)
        await trio.testing.wait_all_tasks_blocked()
        store.fail_next = 1
        assert store.hold is not None
        store.hold.set()
        got = await answers(ws, 101)
        assert codes(got) == ["first=1"] + [f"{i}!unavailable" for i in range(100)]
        assert store.calls == [1, 100]
        # The re-send from the first one not applied: all applied once, in order.
        await _tws.write_batch(ws, frames)
        assert codes(await answers(ws, 100)) == [f"{i}={i + 2}" for i in range(100)]
    assert [d for _, d in await log_of(store, "room")] == [0, *range(100)]
