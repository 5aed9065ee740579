"""The resume handshake end to end, over in-memory streams, with raw clients."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from tests.support.server_clients import connect, handshake, ids, receive_json, resumed, until_ready
from trio_reconnect._protocol import HandshakeOutcome, ResumeHandshake, encode_resume
from trio_reconnect.server import ClientState, ReconnectServer, ReplayLog


def make_server(log: ReplayLog, **kwargs: Any) -> ReconnectServer:
    return ReconnectServer(log, rng=random.Random(0), **kwargs)


def filled(n: int, *, max_events: int = 100) -> ReplayLog:
    log = ReplayLog(max_events=max_events, start=1)
    for i in range(n):
        log.append_nowait({"n": i + 1})
    return log


def client_outcome(last_event_id: str | None, frames: list[dict[str, Any]]) -> HandshakeOutcome:
    """Feed the frames to the client's own codec: the two sides must agree."""
    codec = ResumeHandshake(last_event_id)
    for frame in frames:
        codec.receive(json.dumps(frame))
    assert codec.result is not None
    return codec.result.outcome


async def test_fresh(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server(ReplayLog(start=1))
    with trio.fail_after(5):
        _ws, frames = await resumed(nursery, server, None)
    assert frames == [{"type": "ready", "id": None, "lost": False}]
    assert client_outcome(None, frames) is HandshakeOutcome.FRESH
    (client,) = server.clients
    assert client.state is ClientState.READY
    assert client.outcome is HandshakeOutcome.FRESH
    stats = server.statistics()
    assert (stats.clients, stats.ready_clients, stats.fresh) == (1, 1, 1)
    assert trio.current_time() == 0.0


async def test_replay_missed_events(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server(filled(5))
    with trio.fail_after(5):
        _ws, frames = await resumed(nursery, server, "2")
    assert frames == [
        {"type": "event", "id": "3", "data": {"n": 3}},
        {"type": "event", "id": "4", "data": {"n": 4}},
        {"type": "event", "id": "5", "data": {"n": 5}},
        {"type": "ready", "id": "5", "lost": False},
    ]
    assert client_outcome("2", frames) is HandshakeOutcome.REPLAYED
    stats = server.statistics()
    assert (stats.replayed, stats.events_replayed) == (1, 3)
    assert server.clients[0].statistics().replayed == 3


async def test_up_to_date_replays_nothing(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server(filled(5))
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, "5")
    assert frames == [{"type": "ready", "id": "5", "lost": False}]
    assert client_outcome("5", frames) is HandshakeOutcome.REPLAYED
    assert server.statistics().replayed == 1


async def test_replay_exactly_max_replay(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server(filled(5), max_replay=3)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, "2")
    assert ids(frames) == ["3", "4", "5"]


async def test_null_without_snapshot_replays_whole_history(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(filled(3))
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, None)
    assert ids(frames) == ["1", "2", "3"]
    assert frames[-1] == {"type": "ready", "id": "3", "lost": False}
    assert client_outcome(None, frames) is HandshakeOutcome.REPLAYED


async def test_too_far_behind_gets_snapshot(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = filled(5)

    async def snapshot() -> tuple[str | None, Any]:
        return await log.newest(), {"sum": 15}

    server = make_server(log, snapshot=snapshot, max_replay=2)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, "1")
    assert frames == [
        {"type": "snapshot", "id": "5", "data": {"sum": 15}},
        {"type": "ready", "id": "5", "lost": False},
    ]
    assert client_outcome("1", frames) is HandshakeOutcome.SNAPSHOT
    assert server.statistics().snapshots == 1
    assert server.clients[0].outcome is HandshakeOutcome.SNAPSHOT


@pytest.mark.parametrize("last", [None, "abc", "-1", "\u0663", "1", "99"])
async def test_snapshot_for_null_unknown_or_too_old(
    autojump_clock: MockClock, nursery: trio.Nursery, last: str | None
) -> None:
    log = filled(10, max_events=5)  # holds 6..10

    async def snapshot() -> tuple[str | None, Any]:
        return await log.newest(), "state"

    server = make_server(log, snapshot=snapshot)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, last)
    assert frames == [
        {"type": "snapshot", "id": "10", "data": "state"},
        {"type": "ready", "id": "10", "lost": False},
    ]


async def test_snapshot_preferred_for_null_even_if_replayable(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = filled(2)

    async def snapshot() -> tuple[str | None, Any]:
        return await log.newest(), "state"

    server = make_server(log, snapshot=snapshot)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, None)
    assert [frame["type"] for frame in frames] == ["snapshot", "ready"]


async def test_snapshot_on_empty_log(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    async def snapshot() -> tuple[str | None, Any]:
        return None, {"initial": True}

    server = make_server(ReplayLog(start=1), snapshot=snapshot)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, None)
    assert frames == [
        {"type": "snapshot", "id": None, "data": {"initial": True}},
        {"type": "ready", "id": None, "lost": False},
    ]


@pytest.mark.parametrize("last", [None, "abc", "1", "2"])
async def test_lost_without_snapshot(
    autojump_clock: MockClock, nursery: trio.Nursery, last: str | None
) -> None:
    server = make_server(filled(10, max_events=5), max_replay=3)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, last)
    assert frames == [{"type": "ready", "id": "10", "lost": True}]
    assert client_outcome(last, frames) is HandshakeOutcome.LOST
    assert server.statistics().lost == 1


async def test_too_far_behind_without_snapshot_is_lost(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(filled(10), max_replay=3)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, "6")
    assert frames == [{"type": "ready", "id": "10", "lost": True}]


async def test_unknown_id_on_empty_log_is_lost(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # A client that saw "57" before the server lost its in-memory log.
    server = make_server(ReplayLog(start=1))
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, "57")
    assert frames == [{"type": "ready", "id": None, "lost": True}]


async def test_failing_snapshot_reports_lost(
    autojump_clock: MockClock, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def snapshot() -> tuple[str | None, Any]:
        raise RuntimeError("database down")

    server = make_server(filled(3), snapshot=snapshot)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, None)
    assert frames == [{"type": "ready", "id": "3", "lost": True}]
    assert "snapshot for client 1 failed" in caplog.text


@pytest.mark.parametrize("bad", [(5, "x"), ("1", {1, 2})])
async def test_malformed_snapshot_reports_lost(
    autojump_clock: MockClock, nursery: trio.Nursery, bad: Any
) -> None:
    async def snapshot() -> tuple[str | None, Any]:
        return bad  # type: ignore[no-any-return]

    server = make_server(filled(3), snapshot=snapshot)
    with trio.fail_after(5):
        _, frames = await resumed(nursery, server, None)
    assert frames == [{"type": "ready", "id": "3", "lost": True}]


async def test_live_events_after_ready(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    server = make_server(ReplayLog(start=1))
    with trio.fail_after(5):
        ws, _ = await resumed(nursery, server, None)
        assert await server.publish({"price": 42}) == "1"
        assert await server.publish([1, 2]) == "2"
        assert await receive_json(ws) == {"type": "event", "id": "1", "data": {"price": 42}}
        assert await receive_json(ws) == {"type": "event", "id": "2", "data": [1, 2]}
    stats = server.statistics()
    assert stats.events_published == 2
    assert stats.events_replayed == 0
    assert server.clients[0].statistics().events_sent == 2


async def test_publish_rejects_non_json_before_logging(autojump_clock: MockClock) -> None:
    log = ReplayLog(start=1)
    server = make_server(log)
    with pytest.raises(TypeError):
        await server.publish({1, 2, 3})
    with pytest.raises(ValueError, match="JSON"):
        await server.publish({"price": float("nan")})
    assert len(log) == 0
    assert server.statistics().events_published == 0


async def test_reconnect_resumes_where_it_left_off(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(ReplayLog(start=1))
    with trio.fail_after(5):
        ws, _ = await resumed(nursery, server, None)
        await server.publish("a")
        last = (await receive_json(ws))["id"]
        await ws.aclose()
        await server.publish("b")
        await server.publish("c")
        _, frames = await resumed(nursery, server, last)
    assert ids(frames) == ["2", "3"]


# -- events published while a handshake is running ---------------------------


async def test_publish_during_replay_no_loss_no_duplicate(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(filled(300, max_events=1_000))
    received: list[dict[str, Any]] = []

    async def publisher() -> None:
        for i in range(200):
            await server.publish({"n": 301 + i})

    with trio.fail_after(10):
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume("100"))
        # The publisher runs while the replay is being written.
        nursery.start_soon(publisher)
        while not received or received[-1].get("id") != "500":
            received.append(await receive_json(ws))
    event_ids = ids(received)
    assert event_ids == [str(n) for n in range(101, 501)]
    ready_at = next(i for i, f in enumerate(received) if f["type"] == "ready")
    # Everything before ready came from the log, up to the point of registration.
    assert received[ready_at]["id"] == received[ready_at - 1]["id"]
    # The publisher really ran during the handshake: some events were live.
    assert 300 <= int(received[ready_at]["id"]) < 500
    assert [f["data"]["n"] for f in received if f["type"] == "event"] == list(range(101, 501))


async def test_snapshot_covering_queued_events_drops_them(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = filled(3)
    started, gate = trio.Event(), trio.Event()

    async def snapshot() -> tuple[str | None, Any]:
        started.set()
        await gate.wait()
        newest = await log.newest()
        return newest, {"upto": newest}

    server = make_server(log, snapshot=snapshot)
    with trio.fail_after(5):
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume(None))
        await started.wait()
        for i in range(3):  # queued for the client: 4, 5, 6
            await server.publish(i)
        await wait_all_tasks_blocked()  # the fan-out has read them from the log
        assert server.clients[0].statistics().queued == 3
        gate.set()  # the snapshot is taken after all three: it covers them
        frames = await until_ready(ws)
        assert frames == [
            {"type": "snapshot", "id": "6", "data": {"upto": "6"}},
            {"type": "ready", "id": "6", "lost": False},
        ]
        await server.publish("live")
        assert await receive_json(ws) == {"type": "event", "id": "7", "data": "live"}


async def test_snapshot_in_the_middle_of_queued_events(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = filled(3)
    started, gate = trio.Event(), trio.Event()
    taken_at: list[str | None] = []

    async def snapshot() -> tuple[str | None, Any]:
        started.set()
        await gate.wait()
        return taken_at[0], "state"

    server = make_server(log, snapshot=snapshot)
    with trio.fail_after(5):
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume(None))
        await started.wait()
        await server.publish("four")
        taken_at.append(await server.publish("five"))
        await server.publish("six")
        await wait_all_tasks_blocked()  # the fan-out has queued 4, 5 and 6
        (client,) = server.clients
        await client.send("app message queued between events")  # kept, in order
        await server.publish("seven")
        gate.set()
        frames = await until_ready(ws)
        assert frames == [
            {"type": "snapshot", "id": "5", "data": "state"},
            {"type": "ready", "id": "5", "lost": False},
        ]
        assert await receive_json(ws) == {"type": "event", "id": "6", "data": "six"}
        assert await ws.get_message() == "app message queued between events"
        assert await receive_json(ws) == {"type": "event", "id": "7", "data": "seven"}


async def test_stale_snapshot_is_followed_by_the_missing_events(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = filled(5)
    started, gate = trio.Event(), trio.Event()

    async def snapshot() -> tuple[str | None, Any]:
        started.set()
        await gate.wait()
        return "2", "state as of 2"  # older than the log's newest at registration

    server = make_server(log, snapshot=snapshot)
    with trio.fail_after(5):
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume(None))
        await started.wait()
        await server.publish("six")  # queued
        gate.set()
        frames = await until_ready(ws)
        assert frames == [
            {"type": "snapshot", "id": "2", "data": "state as of 2"},
            {"type": "event", "id": "3", "data": {"n": 3}},
            {"type": "event", "id": "4", "data": {"n": 4}},
            {"type": "event", "id": "5", "data": {"n": 5}},
            {"type": "ready", "id": "5", "lost": False},
        ]
        assert client_outcome(None, frames) is HandshakeOutcome.SNAPSHOT
        assert await receive_json(ws) == {"type": "event", "id": "6", "data": "six"}
    assert server.statistics().events_replayed == 3


async def test_snapshot_the_log_cannot_place_reports_lost(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = filled(5)

    async def snapshot() -> tuple[str | None, Any]:
        return "elsewhere-17", "state"

    server = make_server(log, snapshot=snapshot)
    with trio.fail_after(5):
        _ws, frames = await resumed(nursery, server, None)
    # Not sent: a snapshot next to lost: true would contradict the Gap.
    assert frames == [{"type": "ready", "id": "5", "lost": True}]
    assert client_outcome(None, frames) is HandshakeOutcome.LOST
    assert server.statistics().lost == 1


async def test_many_clients_resuming_while_publishing(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = filled(50, max_events=1_000)

    async def snapshot() -> tuple[str | None, Any]:
        await trio.sleep(0.01)
        return await log.newest(), "state"

    server = make_server(log, snapshot=snapshot, max_replay=20)
    total = 150
    results: dict[str, list[str]] = {}

    async def client(last: str | None) -> None:
        ws = await connect(nursery, server)
        frames = await handshake(ws, last)
        have = frames[-1]["id"]
        seen = ids(frames)
        while have != str(total):
            frame = await receive_json(ws)
            seen.append(frame["id"])
            have = frame["id"]
        results[str(last)] = seen

    async def publisher() -> None:
        for i in range(total - 50):
            await server.publish(i)
            await trio.sleep(0.001)

    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            for last in [None, "1", "10", "40", "50", "nope"]:
                inner.start_soon(client, last)
            inner.start_soon(publisher)
    for last, seen in results.items():
        assert len(seen) == len(set(seen)), last
        numbers = [int(x) for x in seen]
        assert numbers == sorted(numbers), last
        assert numbers == list(range(numbers[0], total + 1)) if numbers else True, last
    # Replayed clients have every event after their lastEventId.
    assert results["40"][0] == "41"
    assert results["50"][0] == "51"
