"""Channels on the server (protocol v2, PROTOCOL.md section 4), with raw clients."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel
from trio.testing import MockClock, wait_all_tasks_blocked
from trio_websocket import WebSocketConnection

from tests.support.server_clients import (
    closed_with,
    connect,
    receive_json,
    refused_with,
    until_ready,
)
from trio_reconnect._exceptions import ResumeProtocolError
from trio_reconnect._hints import MAX_CLOSE_REASON_BYTES
from trio_reconnect._wire import resume_refusal
from trio_reconnect.server import (
    ChannelEvent,
    ChannelRead,
    ChannelRequest,
    MemberChange,
    MemoryChannelStore,
    ReconnectServer,
    Refuse,
    ReplayLog,
)


def make_server(store: MemoryChannelStore | None = None, **kwargs: Any) -> ReconnectServer:
    return ReconnectServer(
        ReplayLog(start=1),
        channels=store if store is not None else MemoryChannelStore(start=1),
        rng=random.Random(0),
        **kwargs,
    )


def resume_frame(channels: dict[str, Any] | None = None, client_id: str = "c1") -> str:
    frame: dict[str, Any] = {"type": "resume", "lastEventId": None, "clientId": client_id}
    if channels is not None:
        frame["channels"] = channels
    return json.dumps(frame)


async def v2(
    nursery: trio.Nursery, server: ReconnectServer, channels: dict[str, Any] | None = None
) -> tuple[WebSocketConnection, list[dict[str, Any]]]:
    ws = await connect(nursery, server)
    await ws.send_message(resume_frame(channels))
    return ws, await until_ready(ws)


async def send(ws: WebSocketConnection, **frame: Any) -> None:
    await ws.send_message(json.dumps(frame))


async def frames_until(ws: WebSocketConnection, kind: str) -> list[dict[str, Any]]:
    got = []
    while True:
        frame = await receive_json(ws)
        got.append(frame)
        if frame["type"] == kind:
            return got


async def no_more_frames(ws: WebSocketConnection) -> None:
    with trio.move_on_after(1):
        frame = await ws.get_message()
        raise AssertionError(f"unexpected frame {frame!r}")


def event(channel: str, event_id: int, data: Any) -> dict[str, Any]:
    return {"type": "event", "channel": channel, "id": str(event_id), "data": data}


def subscribed(channel: str, event_id: int, lost: bool = False) -> dict[str, Any]:
    return {"type": "subscribed", "channel": channel, "id": str(event_id), "lost": lost}


async def test_without_client_id_the_server_is_v1(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server()
    ws = await connect(nursery, server)
    await send(ws, type="resume", lastEventId=None)
    assert await until_ready(ws) == [{"type": "ready", "id": None, "lost": False}]
    message = json.dumps({"type": "subscribe", "channel": "a", "lastEventId": None})
    await ws.send_message(message)
    _client, received = await server.messages().receive()
    assert received == message


async def test_without_a_store_ready_has_no_channels(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = ReconnectServer(ReplayLog(start=1))
    ws = await connect(nursery, server)
    await ws.send_message(resume_frame())
    assert await until_ready(ws) == [{"type": "ready", "id": None, "lost": False}]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (
            {"type": "resume", "lastEventId": None, "clientId": "é" * 65},
            "resume frame: a clientId must be 0 to 128 bytes of UTF-8, got 130",
        ),
        (
            {"type": "resume", "lastEventId": None, "clientId": "x" * 300},
            "resume frame: a clientId must be at most 128 bytes of UTF-8, got 300 characters",
        ),
        (
            {"type": "resume", "lastEventId": None, "channels": {"a": "1"}},
            "resume frame: channels without a clientId",
        ),
        (
            {"type": "resume", "lastEventId": None, "clientId": "c1", "channels": ["a"]},
            "resume frame: channels is not an object",
        ),
        (
            {"type": "resume", "lastEventId": 5, "clientId": "c1"},
            "resume frame needs lastEventId as a string or null",
        ),
        ({"type": "hello", "note": "é" * 200}, "expected a resume frame"),
    ],
)
async def test_a_bad_resume_frame_is_closed_with_its_error(
    autojump_clock: MockClock,
    nursery: trio.Nursery,
    frame: dict[str, Any],
    reason: str,
) -> None:
    server = make_server()
    with trio.fail_after(5):
        ws = await connect(nursery, server)
        await ws.send_message(json.dumps(frame))
        close = await closed_with(ws)
    assert (close.code, close.reason) == (1002, reason)  # the frame's own quote left out
    assert server.statistics().protocol_errors == 1


def test_a_resume_refusal_fits_in_a_close_frame() -> None:
    long = ResumeProtocolError("resume frame: " + "é" * 200)
    reason = resume_refusal(long, "{}")
    assert len(reason.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES
    assert reason.startswith("resume frame: éé")
    assert reason.endswith("é...")
    # An error that is not the parser's keeps its text (a quote of another frame included).
    assert resume_refusal(ResumeProtocolError("odd: 'x'"), "{}") == "odd: 'x'"


async def test_the_whole_handshake_with_channels(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    for i in range(1, 6):
        store.append_nowait("a", {"a": i})

    def authorize(principal: Any, channel: str, action: str) -> bool:
        return channel != "secret"

    server = make_server(store, authorize=authorize)
    with trio.fail_after(5):
        _ws, frames = await v2(
            nursery, server, {"a": "2", "b": "0", "secret": "1", "\x00bad": "1", "c": 7}
        )
    assert frames[:2] == [
        {
            "type": "refused",
            "channel": "\x00bad",
            "code": "invalid",
            "reason": "a channel name must not hold control characters",
        },
        {
            "type": "refused",
            "channel": "c",
            "code": "invalid",
            "reason": "the position must be a string id",
        },
    ]
    assert frames[2:] == [
        event("a", 3, {"a": 3}),
        event("a", 4, {"a": 4}),
        event("a", 5, {"a": 5}),
        subscribed("a", 5),
        subscribed("b", 0),
        {"type": "refused", "channel": "secret", "code": "forbidden", "reason": "not authorized"},
        {"type": "ready", "id": None, "lost": False, "channels": ["a", "b"]},
    ]


async def test_resume_from_a_trimmed_position_is_lost(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1, channel_max_len=3)
    for i in range(1, 11):
        store.append_nowait("a", i)
    server = make_server(store)
    with trio.fail_after(5):
        _ws, frames = await v2(nursery, server, {"a": "2"})
    assert frames == [
        subscribed("a", 10, lost=True),
        {"type": "ready", "id": None, "lost": False, "channels": ["a"]},
    ]


async def test_subscribe_live_and_unsubscribe(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    for i in range(1, 4):
        store.append_nowait("room", i)
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server)
        await send(ws, type="subscribe", channel="room", lastEventId=None, history=2)
        assert await frames_until(ws, "subscribed") == [
            event("room", 2, 2),
            event("room", 3, 3),
            subscribed("room", 3),
        ]
        assert await server.publish("room", {"x": 1}) == "4"
        assert await receive_json(ws) == event("room", 4, {"x": 1})
        await send(ws, type="unsubscribe", channel="room")
        assert await receive_json(ws) == {"type": "unsubscribed", "channel": "room"}
        await server.publish("room", 5)
        await send(ws, type="unsubscribe", channel="never")
        assert await receive_json(ws) == {"type": "unsubscribed", "channel": "never"}


async def test_fresh_subscribe_without_history_starts_at_the_newest(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    store.append_nowait("room", 1)
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server)
        await send(ws, type="subscribe", channel="room", lastEventId=None)
        assert await receive_json(ws) == subscribed("room", 1)
        await send(ws, type="subscribe", channel="new", lastEventId=None, history=5)
        assert await receive_json(ws) == subscribed("new", 0)


async def test_resubscribe_answers_from_the_given_id(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server, {"room": "0"})
        for i in range(1, 4):
            await server.publish("room", i)
        assert [await receive_json(ws) for _ in range(3)] == [
            event("room", i, i) for i in (1, 2, 3)
        ]
        await send(ws, type="subscribe", channel="room", lastEventId="1")
        assert await frames_until(ws, "subscribed") == [
            event("room", 2, 2),
            event("room", 3, 3),
            subscribed("room", 3),
        ]
        await server.publish("room", 4)
        assert await receive_json(ws) == event("room", 4, 4)
        await no_more_frames(ws)


async def test_channel_snapshot_for_fresh_and_lost(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1, channel_max_len=2)
    for i in range(1, 6):
        store.append_nowait("room", i)

    async def snapshot(channel: str) -> tuple[str, Any] | None:
        await trio.lowlevel.checkpoint()
        return None if channel == "plain" else ("4", {"state": channel})

    server = make_server(store, channel_snapshot=snapshot)
    with trio.fail_after(5):
        ws, frames = await v2(nursery, server, {"room": "1"})
        assert frames[:3] == [
            {"type": "snapshot", "channel": "room", "id": "4", "data": {"state": "room"}},
            event("room", 5, 5),
            subscribed("room", 5),
        ]
        await send(ws, type="subscribe", channel="plain", lastEventId=None)
        assert await receive_json(ws) == subscribed("plain", 0)


async def test_limit_and_bounded_memory(
    autojump_clock: MockClock, nursery: trio.Nursery, write_path: str
) -> None:
    if write_path != "batched":
        pytest.skip("100,000 frames once is enough (about 20 s)")
    server = make_server(max_subscriptions=3)
    n = 100_000
    with trio.fail_after(600):
        ws, _ = await v2(nursery, server)

        async def flood() -> None:
            for i in range(n):
                await send(ws, type="subscribe", channel=f"ch{i}", lastEventId=None)

        nursery.start_soon(flood)
        answers = [await receive_json(ws) for _ in range(n)]
    assert [a["type"] for a in answers[:3]] == ["subscribed"] * 3
    assert all(a["type"] == "refused" and a["code"] == "limit" for a in answers[3:])
    frames = server._parts.channels
    assert frames is not None
    (client,) = server.clients
    session = frames.session(client)
    assert session is not None
    assert len(session.subscriptions) == 3


@pytest.mark.parametrize(
    ("frame", "answer"),
    [
        (
            {"type": "subscribe", "channel": None},
            {"type": "refused", "channel": None, "code": "invalid"},
        ),
        (
            {"type": "subscribe", "channel": "x" * 257},
            {"type": "refused", "channel": "x" * 257, "code": "invalid"},
        ),
        (
            {"type": "subscribe", "channel": "a", "history": -1},
            {"type": "refused", "channel": "a", "code": "invalid"},
        ),
        (
            {"type": "unsubscribe"},
            {"type": "refused", "channel": None, "code": "invalid"},
        ),
        (
            {"type": "publish", "channel": "a"},
            {"type": "nack", "msgId": None, "channel": "a", "code": "invalid"},
        ),
    ],
)
async def test_malformed_frames_are_answered(
    autojump_clock: MockClock, nursery: trio.Nursery, frame: dict[str, Any], answer: dict[str, Any]
) -> None:
    server = make_server()
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server)
        await ws.send_message(json.dumps(frame))
        got = await receive_json(ws)
    got.pop("reason")
    assert got == answer
    assert not server.clients[0].closing


async def test_publish_frame_is_acked_and_delivered(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server()
    with trio.fail_after(5):
        reader, _ = await v2(nursery, server, {"room": "0"})
        writer, _ = await v2(nursery, server)
        await send(writer, type="publish", channel="room", msgId="m1", data={"hi": 1})
        assert await receive_json(writer) == {
            "type": "ack",
            "msgId": "m1",
            "channel": "room",
            "id": "1",
        }
        assert await receive_json(reader) == event("room", 1, {"hi": 1})


async def test_authentication_and_authorization(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    seen: list[tuple[Any, str, str]] = []

    async def authenticate(request: Any) -> str:
        token = dict(request.headers).get(b"authorization")
        if token != b"Bearer good":
            raise Refuse(401, "bad token")
        return "ada"

    def authorize(principal: Any, channel: str, action: str) -> bool:
        seen.append((principal, channel, action))
        return channel.startswith("public:")

    server = make_server(authenticate=authenticate, authorize=authorize)
    rejection = await refused_with(server)
    assert rejection.status_code == 401
    assert server.clients == ()


async def test_authorize_on_every_path(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    seen: list[tuple[Any, str, str]] = []

    def authorize(principal: Any, channel: str, action: str) -> bool:
        seen.append((principal, channel, action))
        return channel.startswith("public:")

    server = make_server(authenticate=lambda request: "ada", authorize=authorize)
    with trio.fail_after(5):
        await server.publish("private:x", "secret")
        ws, frames = await v2(nursery, server, {"private:x": "0", "public:y": "0"})
        assert frames[0]["code"] == "forbidden"
        assert frames[-1]["channels"] == ["public:y"]
        for history in (None, 5):
            await send(ws, type="subscribe", channel="private:x", lastEventId=None, history=history)
            assert (await receive_json(ws))["code"] == "forbidden"
        await send(ws, type="subscribe", channel="private:x", lastEventId="0")
        assert (await receive_json(ws))["code"] == "forbidden"
        await send(ws, type="publish", channel="private:x", msgId="1", data=1)
        assert (await receive_json(ws))["code"] == "forbidden"
        await server.publish("private:x", "more")
        await no_more_frames(ws)
    assert server.clients[0].principal == "ada"
    assert ("ada", "private:x", "publish") in seen
    assert ("ada", "public:y", "subscribe") in seen


class GatedStore(MemoryChannelStore):
    """A store whose reads wait at a gate the test opens (register first, read second)."""

    gate: trio.Event | None = None
    at_gate: trio.Event | None = None

    async def read(
        self, requests: Sequence[ChannelRequest], *, max_replay: int
    ) -> Sequence[ChannelRead]:
        if self.gate is not None:
            assert self.at_gate is not None
            self.at_gate.set()
            await self.gate.wait()
        return await super().read(requests, max_replay=max_replay)


async def test_events_appended_between_registration_and_read(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = GatedStore(start=1)
    store.append_nowait("a", 1)
    store.gate, store.at_gate = trio.Event(), trio.Event()
    server = make_server(store)
    with trio.fail_after(5):
        ws = await connect(nursery, server)
        await ws.send_message(resume_frame({"a": "0"}))
        await store.at_gate.wait()
        for i in range(2, 5):
            await server.publish("a", i)  # the feed buffers them: the read covers them
        await wait_all_tasks_blocked()
        store.gate.set()
        frames = await until_ready(ws)
        store.gate = None
        await server.publish("a", 5)
        frames.append(await receive_json(ws))
        await no_more_frames(ws)
    assert [f["id"] for f in frames if f["type"] == "event"] == ["1", "2", "3", "4", "5"]


class LossyStore(MemoryChannelStore):
    """A store whose live stream skips the notifications the test names."""

    skip: frozenset[str] = frozenset()

    @asynccontextmanager
    async def listen(
        self, *, wanted: Callable[[str], bool] | None = None
    ) -> AsyncIterator[AsyncIterator[Sequence[ChannelEvent | MemberChange]]]:
        async with super().listen(wanted=wanted) as stream:
            yield self._filtered(stream)

    async def _filtered(
        self, stream: AsyncIterator[Sequence[ChannelEvent | MemberChange]]
    ) -> AsyncIterator[Sequence[ChannelEvent | MemberChange]]:
        async for batch in stream:
            kept = [e for e in batch if not (isinstance(e, ChannelEvent) and e.id in self.skip)]
            if kept:
                yield kept


async def test_a_gap_in_one_channel_is_repaired(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = LossyStore(start=1)
    store.skip = frozenset({"2", "3"})
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server, {"a": "0"})
        for i in range(1, 6):
            await server.publish("a", i)
            await wait_all_tasks_blocked()
        got = [await receive_json(ws) for _ in range(5)]
        await no_more_frames(ws)
    assert got == [event("a", i, i) for i in range(1, 6)]


async def test_an_unrepairable_channel_is_resynced_alone(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = LossyStore(start=1, channel_max_len=2)
    store.skip = frozenset(str(i) for i in range(2, 6))
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server, {"a": "0", "b": "0"})
        await server.publish("a", 1)
        for i in range(2, 6):
            store.append_nowait("a", i)  # skipped live, and trimmed past "1"
        await server.publish("b", "b1")
        await server.publish("a", 6)
        got = [await receive_json(ws) for _ in range(3)]
        await server.publish("a", 7)
        got.append(await receive_json(ws))
        await no_more_frames(ws)
    # "a" starts again at its newest id; "b" went on untouched.
    assert got == [
        event("a", 1, 1),
        event("b", 1, "b1"),
        subscribed("a", 6, lost=True),
        event("a", 7, 7),
    ]


async def test_notifications_lost_are_repaired(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1, listener_buffer=2)
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server, {"a": "0", "b": "0"})
        for i in range(1, 11):
            store.append_nowait("a", i)  # no checkpoint: the buffer overflows
            store.append_nowait("b", -i)
        got = [await receive_json(ws) for _ in range(20)]
        await no_more_frames(ws)
    assert [f["id"] for f in got if f["channel"] == "a"] == [str(i) for i in range(1, 11)]
    assert [f["id"] for f in got if f["channel"] == "b"] == [str(i) for i in range(1, 11)]


async def test_clients_hopping_between_nodes_see_a_gap_free_run(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = MemoryChannelStore(start=1)
    nodes = [make_server(store), make_server(store)]
    channels = ["x", "y"]
    positions = dict.fromkeys(channels, "0")
    seen: dict[str, list[int]] = {c: [] for c in channels}
    done = trio.Event()

    async def publisher() -> None:
        for i in range(200):
            await nodes[i % 2].publish(channels[i % 2], i)
            await trio.sleep(0.01)
        done.set()

    nursery.start_soon(publisher)
    with trio.fail_after(60):
        hop = 0
        while not done.is_set():
            async with trio.open_nursery() as conn:
                ws, frames = await v2(conn, nodes[hop % 2], dict(positions))
                with trio.move_on_after(0.35):
                    while True:
                        frames.append(await receive_json(ws))
                for frame in frames:
                    if frame["type"] == "event":
                        seen[frame["channel"]].append(int(frame["id"]))
                        positions[frame["channel"]] = frame["id"]
                    assert not (frame["type"] == "subscribed" and frame["lost"])
                conn.cancel_scope.cancel()
            hop += 1
        async with trio.open_nursery() as conn:
            ws, frames = await v2(conn, nodes[hop % 2], dict(positions))
            for frame in frames:
                if frame["type"] == "event":
                    seen[frame["channel"]].append(int(frame["id"]))
            conn.cancel_scope.cancel()
    for channel in channels:
        assert seen[channel] == list(range(1, 101)), channel


async def test_a_subscribe_after_ready_registers_before_it_reads(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = GatedStore(start=1)
    store.append_nowait("a", 1)
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server)
        store.gate, store.at_gate = trio.Event(), trio.Event()
        await send(ws, type="subscribe", channel="a", lastEventId="0")
        await store.at_gate.wait()
        for i in range(2, 5):
            await server.publish("a", i)
        await wait_all_tasks_blocked()
        store.gate.set()
        got = await frames_until(ws, "subscribed")
        store.gate = None
        await server.publish("a", 5)
        got.append(await receive_json(ws))
        await no_more_frames(ws)
    assert got == [event("a", i, i) for i in range(1, 5)] + [subscribed("a", 4), event("a", 5, 5)]


async def test_notifications_lost_while_a_subscription_answers(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    store = GatedStore(start=1, listener_buffer=2)
    server = make_server(store)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server)
        store.gate, store.at_gate = trio.Event(), trio.Event()
        await send(ws, type="subscribe", channel="a", lastEventId="0")
        await store.at_gate.wait()
        gate = store.gate
        store.gate = None  # the feed's repair reads pass
        for i in range(1, 4):
            store.append_nowait("a", i)  # overflows the feed's buffer: lost
        await wait_all_tasks_blocked()
        gate.set()
        got = await frames_until(ws, "subscribed")
        for i in range(4, 7):
            await server.publish("a", i)
        got += [await receive_json(ws) for _ in range(3)]
        await no_more_frames(ws)
    ids = [int(f["id"]) for f in got if f["type"] == "event"]
    assert ids == list(range(1, 7))


async def test_unsubscribe_stops_frames_queued_later(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server()
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server, {"a": "0", "b": "0"})
        await send(ws, type="unsubscribe", channel="a")
        assert await receive_json(ws) == {"type": "unsubscribed", "channel": "a"}
        await server.publish("a", 1)
        await server.publish("b", 1)
        assert await receive_json(ws) == event("b", 1, 1)
        await no_more_frames(ws)


async def test_a_closed_client_leaves_no_subscription(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server()
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server, {"a": "0", "b": "0"})
        frames = server._parts.channels
        assert frames is not None
        feed = frames.answerer.feed
        assert feed.held() == 2
        await ws.aclose()
        while server.clients:
            await trio.sleep(0.1)
        assert feed.held() == 0


async def test_the_resume_map_counts_against_the_limit(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    server = make_server(max_subscriptions=2)
    with trio.fail_after(5):
        ws, frames = await v2(nursery, server, {"a": "0", "b": "0", "c": "0"})
        assert [f["type"] for f in frames] == ["subscribed", "subscribed", "refused", "ready"]
        assert frames[2]["code"] == "limit"
        assert frames[-1]["channels"] == ["a", "b"]
        await send(ws, type="subscribe", channel="a", lastEventId="0")  # renewing is no new one
        assert await receive_json(ws) == subscribed("a", 0)
        await send(ws, type="unsubscribe", channel="b")
        assert (await receive_json(ws))["type"] == "unsubscribed"
        await send(ws, type="subscribe", channel="c", lastEventId=None)
        assert await receive_json(ws) == subscribed("c", 0)


async def test_refuse_403_and_a_failing_authorize(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    def authenticate(request: Any) -> None:
        raise Refuse(403, "banned")

    assert (await refused_with(make_server(authenticate=authenticate))).status_code == 403

    async def authorize(principal: Any, channel: str, action: str) -> bool:
        await trio.sleep(1)
        if channel == "boom":
            raise RuntimeError("the policy service is down")
        return True

    server = make_server(authorize=authorize)
    with trio.fail_after(10):
        _ws, frames = await v2(nursery, server, {"boom": "0", "ok": "0"})
    assert [(f["type"], f.get("channel")) for f in frames] == [
        ("refused", "boom"),
        ("subscribed", "ok"),
        ("ready", None),
    ]
    assert frames[0]["code"] == "forbidden"


async def test_a_revoked_right_refuses_the_resubscribe_and_ends_the_feed(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    allowed = {"room"}

    def authorize(principal: Any, channel: str, action: str) -> bool:
        return channel in allowed

    server = make_server(authorize=authorize)
    with trio.fail_after(5):
        ws, _ = await v2(nursery, server, {"room": "0"})
        await server.publish("room", 1)
        assert await receive_json(ws) == event("room", 1, 1)
        allowed.clear()
        await send(ws, type="subscribe", channel="room", lastEventId="1")
        assert (await receive_json(ws))["code"] == "forbidden"
        await server.publish("room", 2)
        await no_more_frames(ws)
        # ... and the next resume does not get it back either.
        _ws2, frames = await v2(nursery, server, {"room": "1"})
        assert [f["type"] for f in frames] == ["refused", "ready"]
