"""Acknowledged publish through server nodes on a real redis-server (PROTOCOL 4.5).

Real time, real Redis; raw websocket clients over memory streams. The
faults: a connection dropped between the append and the ack (re-sent on
another node sharing the Redis), Redis frozen under a stream of publishes
(SIGSTOP: commands time out, and the scripts sent before it run after
SIGCONT: outcomes the node could not know), and Redis back empty.
"""

from __future__ import annotations

import json
import os
import random
import signal
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from tests.support.faulty_store import FaultyStore, log_of
from tests.support.server_clients import connect, receive_json, until_ready
from trio_reconnect.server import ChannelStore, ReconnectServer, ReplayLog
from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._redis_server import RedisServer

GUARD = 30.0


def node(store: ChannelStore) -> ReconnectServer:
    return ReconnectServer(ReplayLog(start=1), channels=store, rng=random.Random(0))


async def v2(
    nursery: trio.Nursery, server: ReconnectServer, client_id: str = "c1"
) -> WebSocketConnection:
    ws = await connect(nursery, server)
    await ws.send_message(
        json.dumps({"type": "resume", "lastEventId": None, "clientId": client_id})
    )
    await until_ready(ws)
    return ws


async def publish(ws: WebSocketConnection, msg_id: str, data: Any) -> None:
    await ws.send_message(
        json.dumps({"type": "publish", "channel": "room", "msgId": msg_id, "data": data})
    )


async def answer(ws: WebSocketConnection) -> dict[str, Any]:
    while True:
        frame = await receive_json(ws)
        if frame["type"] in ("ack", "nack"):
            return frame


async def until_all_acked(
    ws: WebSocketConnection, msg_ids: list[str]
) -> tuple[dict[str, str], int]:
    """A client's outbox: send all, re-send from the oldest unacked after a nack; the acks' ids."""
    acked: dict[str, str] = {}
    nacks = 0
    while len(acked) < len(msg_ids):
        pending = [m for m in msg_ids if m not in acked]
        for m in pending:
            await publish(ws, m, int(m))
        for _ in pending:
            frame = await answer(ws)
            if frame["type"] == "ack":
                acked[frame["msgId"]] = frame["id"]
            else:
                assert frame["code"] == "unavailable", frame
                nacks += 1
        if len(acked) < len(msg_ids):
            await trio.sleep(0.05)  # the client's backoff
    return acked, nacks


async def test_applied_on_one_node_re_sent_on_another_is_acked_once(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    with trio.fail_after(GUARD):
        async with (
            RedisChannelStore(redis_server.url) as a,
            RedisChannelStore(redis_server.url) as b,
        ):
            faulty = FaultyStore(a, hold=trio.Event())
            first, second = node(faulty), node(b)
            ws = await v2(nursery, first)
            await publish(ws, "1", 1)
            await faulty.applied.wait()  # in Redis, not acked
            await ws.aclose()
            other = await v2(nursery, second)
            await publish(other, "1", 1)
            await publish(other, "2", 2)
            got = [await answer(other), await answer(other)]
            held = await log_of(b, "room")
    assert [f["type"] for f in got] == ["ack", "ack"]
    assert [d for _, d in held] == [1, 2]
    assert [f["id"] for f in got] == [i for i, _ in held]
    assert second.statistics().publishes_duplicate == 1


async def test_redis_frozen_under_publishes_then_each_applied_exactly_once(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    pid = redis_server.pid
    assert pid is not None
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, timeout=0.3) as store:
            server = node(store)
            ws = await v2(nursery, server)
            before, _ = await until_all_acked(ws, [str(i) for i in range(50)])
            # freeze Redis, then publish: the first batch's script waits in
            # Redis's socket, the node times out on it (outcome unknown to it)
            os.kill(pid, signal.SIGSTOP)
            try:
                for i in range(50, 100):
                    await publish(ws, str(i), i)
                frozen = [await answer(ws) for _ in range(50)]
            finally:
                os.kill(pid, signal.SIGCONT)
            assert {(f["type"], f["code"]) for f in frozen} == {("nack", "unavailable")}
            after, _ = await until_all_acked(ws, [str(i) for i in range(50, 100)])
            held = await log_of(store, "room")
    assert [d for _, d in held] == list(range(100))  # each once, in the client's order
    ids = {str(d): i for i, d in held}
    assert {**before, **after} == ids  # every ack carries the id the publish got
    assert server.statistics().nacks_unavailable >= 50
    # the script that waited in the frozen Redis ran after SIGCONT: its re-send was a duplicate
    assert server.statistics().publishes_duplicate >= 1


async def test_redis_back_empty_a_re_send_is_applied_again_in_the_new_incarnation(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    """What exactly-once means when Redis loses everything (docs/explanation/wire-v2.md).

    Logs, counters and dedupe records go together: a re-sent msgId is then
    applied once more, under an id above every old one, and every
    subscriber's old position reads as not held (it is told ``lost``).
    """
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, timeout=1.0) as store:
            server = node(store)
            ws = await v2(nursery, server)
            old, _ = await until_all_acked(ws, ["1"])
            redis_server.restart()  # empty
            new, _ = await until_all_acked(ws, ["1"])
            again, _ = await until_all_acked(ws, ["1"])
            held = await log_of(store, "room")
    assert int(new["1"]) > int(old["1"])
    assert again == new  # within the new incarnation: once
    assert held == [(new["1"], 1)]


async def test_redis_stopped_under_publishes_unavailable_then_applied_once(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, timeout=0.5) as store:
            server = node(store)
            ws = await v2(nursery, server)
            await until_all_acked(ws, [str(i) for i in range(20)])
            redis_server.stop()
            for i in range(20, 60):
                await publish(ws, str(i), i)
            down = [await answer(ws) for _ in range(40)]
            assert {(f["type"], f["code"]) for f in down} == {("nack", "unavailable")}
            redis_server.start()  # back, empty (no persistence)
            acked, _ = await until_all_acked(ws, [str(i) for i in range(20, 60)])
            held = await log_of(store, "room")
    # the new incarnation holds each re-sent publish once, in order, under the acked ids
    assert [d for _, d in held] == list(range(20, 60))
    assert {str(d): i for i, d in held} == acked
    assert server.statistics().nacks_unavailable >= 40
