"""Channels on the client (PROTOCOL.md 4.1-4.3): ws.subscribe() against a fake v2 server.

The client runs for real over the memory network; the server is
tests/support/fake_channels.py, written from the protocol page. Virtual time
(``autojump_clock``), ``fail_after`` guards, exact times where the policy
fixes them.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_reconnect as tr
from tests.support.fake_channels import ChannelStore
from tests.support.fake_server import FakeServer
from trio_reconnect._wire import RefusedCode

URL = "ws://channels.test/feed"


def client(server: FakeServer, **options: Any) -> Any:
    options.setdefault("ping_interval", None)
    options.setdefault("random", random.Random(7))
    options.setdefault("backoff", tr.Backoff(initial=1.0, jitter=tr.Jitter.NONE))
    return tr.open_reconnecting_websocket(URL, open_stream=server.open_stream, **options)


def ids(items: list[Any]) -> list[str | None]:
    return [getattr(item, "id", None) for item in items]


async def take(sub: tr.Subscription, count: int) -> list[Any]:
    items = []
    for _ in range(count):
        items.append(await sub.__anext__())
    return items


async def wait_for(store: ChannelStore, predicate: Any) -> None:
    while not predicate():
        await store.arrived.wait()


def frames_of(store: ChannelStore, kind: str) -> list[dict[str, Any]]:
    return [f for _, f in store.received if isinstance(f, dict) and f.get("type") == kind]


async def test_subscribe_iterate_unsubscribe(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server, client_id="me") as ws:
            assert ws.client_id == "me"
            async with ws.subscribe("room:1") as sub:
                assert sub.channel == "room:1"
                assert sub.last_event_id == "100"  # the subscribed id: the channel's start
                assert frames_of(store, "subscribe") == [
                    {"type": "subscribe", "channel": "room:1", "lastEventId": None}
                ]
                for n in range(3):
                    store.publish("room:1", {"n": n})
                items = await take(sub, 3)
                assert items == [tr.ServerEvent(str(101 + n), {"n": n}) for n in range(3)]
                assert sub.last_event_id == "103"
            await wait_for(store, lambda: frames_of(store, "unsubscribe"))
            assert frames_of(store, "unsubscribe") == [{"type": "unsubscribe", "channel": "room:1"}]
            assert store.resumes[0]["clientId"] == "me"


async def test_the_default_client_id_is_128_random_bits_and_sent_in_every_resume(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws:
            await ws.wait_ready()
            await store.kick()
            await trio.sleep(1)
            await ws.wait_ready()
    assert len(ws.client_id) == 32
    int(ws.client_id, 16)
    assert [r["clientId"] for r in store.resumes] == [ws.client_id] * 2
    with pytest.raises(ValueError, match="clientId"):
        tr.ReconnectingWebSocket(URL, client_id="x" * 129)


async def test_n_subscriptions_resume_in_one_frame_with_exactly_what_each_missed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    channels = ["a", "b", "c"]
    with trio.fail_after(30):
        async with client(server) as ws, trio.open_nursery() as inner:
            got: dict[str, list[Any]] = {c: [] for c in channels}
            subs: dict[str, tr.Subscription] = {}

            async def hold(channel: str, task_status: Any) -> None:
                async with ws.subscribe(channel) as sub:
                    subs[channel] = sub
                    task_status.started()
                    async for item in sub:
                        got[channel].append(item)

            for channel in channels:
                await inner.start(hold, channel)
            store.publish("a", "a1")
            store.publish("b", "b1")
            await trio.sleep(0.1)
            await store.kick(1012, 2000)
            # while the client is away
            store.publish("a", "a2")
            store.publish("c", "c1")
            store.publish("c", "c2")
            await trio.sleep(1)
            assert len(store.resumes) == 1  # still away (2 s hint)
            await trio.sleep(2)
            await ws.wait_ready()
            assert store.resumes[1]["channels"] == {"a": "101", "b": "101", "c": "100"}
            await ws.send_message("after the gate")
            store.publish("b", "b2")
            await trio.sleep(0.1)
            inner.cancel_scope.cancel()
    assert {c: [i.data for i in got[c]] for c in channels} == {
        "a": ["a1", "a2"],
        "b": ["b1", "b2"],
        "c": ["c1", "c2"],
    }
    # One resume frame per connection, no subscribe frame after the reconnect.
    assert len(frames_of(store, "subscribe")) == 3
    after = [f for n, f in store.received if n == 2]
    assert after[0] == "after the gate"
    assert [f["type"] for f in after[1:]] == ["unsubscribe"] * 3  # leaving the blocks


@pytest.mark.parametrize("code", ["forbidden", "limit", "invalid", "unavailable"])
async def test_a_refused_subscribe_raises_with_the_code(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, code: str
) -> None:
    store = ChannelStore(refuse={"secret": RefusedCode(code)})
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws:
            with pytest.raises(tr.SubscriptionRefused) as caught:
                async with ws.subscribe("secret"):
                    pytest.fail("entered")  # pragma: no cover
            assert (caught.value.code, caught.value.channel) == (code, "secret")
            assert isinstance(caught.value, tr.ReconnectError)
            # The connection goes on, and the channel can be asked again.
            del store.refuse["secret"]
            async with ws.subscribe("secret") as sub:
                assert sub.last_event_id == "100"


async def test_a_final_refusal_at_a_reconnect_ends_the_iteration(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws, ws.subscribe("room") as sub:
            store.publish("room", 1)
            store.refuse["room"] = RefusedCode.FORBIDDEN
            await trio.sleep(0.1)
            await store.kick()
            items = []
            with pytest.raises(tr.SubscriptionRefused) as caught:
                async for item in sub:
                    items.append(item)
            assert caught.value.code == "forbidden"
            assert ids(items) == ["101"]  # what came before is delivered first
            await ws.wait_ready()
            assert ws.state is tr.ConnectionState.OPEN


async def test_unavailable_at_a_reconnect_is_asked_again_after_the_backoff(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(30):
        async with client(server) as ws, ws.subscribe("room") as sub:
            store.refuse["room"] = RefusedCode.UNAVAILABLE
            await store.kick()  # at 0.0: reconnects at once (hint 0), refused unavailable
            await trio.sleep(0.5)
            await ws.wait_ready()
            store.publish("room", "while down")
            await trio.sleep(0.5)
            del store.refuse["room"]  # the store is back
            subscribes: list[float] = []

            async def watch() -> None:
                await wait_for(store, lambda: frames_of(store, "subscribe")[1:])
                subscribes.append(trio.current_time())

            async with trio.open_nursery() as inner:
                inner.start_soon(watch)
            # Backoff(initial=1, no jitter): asked again 1 s after the refusal.
            assert subscribes == [pytest.approx(1.0, abs=0.001)]
            assert frames_of(store, "subscribe")[-1] == {
                "type": "subscribe",
                "channel": "room",
                "lastEventId": "100",
            }
            assert [i.data for i in await take(sub, 1)] == ["while down"]


async def test_subscribing_while_offline_goes_right_after_ready_before_the_gate(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    server.refuse = lambda n: OSError("down") if n == 1 else None
    entered: list[float] = []
    with trio.fail_after(10):
        async with client(server) as ws, trio.open_nursery() as inner:

            async def sender() -> None:
                await ws.send_message("app")

            async def subscriber() -> None:
                async with ws.subscribe("room", history=5) as sub:
                    entered.append(trio.current_time())
                    assert sub.last_event_id == "100"

            inner.start_soon(subscriber)
            await trio.lowlevel.checkpoint()
            inner.start_soon(sender)
    assert entered == [pytest.approx(1.0)]
    sent = [f for _, f in store.received]
    assert sent[0] == {"type": "subscribe", "channel": "room", "lastEventId": None, "history": 5}
    assert sent[1] == "app"
    assert store.resumes[0]["channels"] == {}


async def test_on_connect_reads_past_the_channel_frames(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The subscribe goes before on_connect; its answer, arriving while
    on_connect reads, goes to the subscription, not to on_connect."""
    store = ChannelStore(echo=True, presence={"room": {"x": {}}})
    server = FakeServer(nursery, store.serve)
    server.refuse = lambda n: OSError("down") if n == 1 else None
    heard: list[str | bytes] = []

    async def on_connect(connection: tr.Connection) -> None:
        await connection.send_message("hello")
        heard.append(await connection.get_message())

    with trio.fail_after(10):
        async with client(server, on_connect=on_connect) as ws, trio.open_nursery() as inner:
            entered = trio.Event()

            async def subscriber() -> None:
                async with ws.subscribe("room") as sub:
                    assert dict(sub.members) == {"x": {}}
                    entered.set()

            inner.start_soon(subscriber)
            await entered.wait()
    assert heard == ["hello"]
    assert [f if isinstance(f, str) else f["type"] for _, f in store.received][:2] == [
        "subscribe",
        "hello",
    ]


async def test_an_unsubscribed_with_a_code_ends_the_iteration(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws, ws.subscribe("room") as sub:
            store.publish("room", 1)
            store.send_raw(
                json.dumps(
                    {"type": "unsubscribed", "channel": "room", "code": "revoked", "reason": "r"}
                )
            )
            with pytest.raises(tr.SubscriptionRefused) as caught:
                async for item in sub:
                    assert item == tr.ServerEvent("101", 1)
            assert (caught.value.code, caught.value.reason) == ("revoked", "r")
            # The channel can be subscribed again.
            async with ws.subscribe("room") as again:
                assert again.last_event_id == "101"


async def test_a_version_1_server_refuses_every_subscription_as_unsupported(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: Any
) -> None:
    store = ChannelStore(v1=True)
    server = FakeServer(nursery, store.serve)
    caplog.set_level(logging.WARNING, "trio_reconnect")
    with trio.fail_after(10):
        async with client(server) as ws:
            for _ in range(2):
                with pytest.raises(tr.SubscriptionRefused) as caught:
                    async with ws.subscribe("room"):
                        pytest.fail("entered")  # pragma: no cover
                assert caught.value.code == "unsupported"
            await ws.send_message("still fine")
            await wait_for(store, lambda: store.received)
    assert store.received == [(1, "still fine")]
    warnings = [r for r in caplog.records if "version 1" in r.getMessage()]
    assert len(warnings) == 1  # once per connection


async def test_a_resume_false_client_has_no_channels(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    async with client(server, resume=False) as ws:
        with pytest.raises(RuntimeError, match="resume"):
            async with ws.subscribe("room"):
                pass  # pragma: no cover


async def test_a_slow_channel_falls_behind_alone_and_catches_up_exactly(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """max_queue=4: the unread channel drops its live events past 4 buffered;
    the others flow; once read down to 2, it asks from its last buffered id
    and the server replays what was dropped: every event once, in order."""
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(30):
        async with (
            client(server, max_queue=4) as ws,
            ws.subscribe("slow") as slow,
            ws.subscribe("fast") as fast,
        ):
            fast_items = []
            for n in range(20):
                store.publish("slow", n)
                store.publish("fast", n)
                await trio.sleep(0.01)
                fast_items += await take(fast, 1)
            assert [i.data for i in fast_items] == list(range(20))
            assert slow.buffered == 4
            assert slow.behind
            assert len(frames_of(store, "subscribe")) == 2
            slow_items = await take(slow, 2)  # down to 2: asks again
            await trio.sleep(0.1)
            assert frames_of(store, "subscribe")[-1] == {
                "type": "subscribe",
                "channel": "slow",
                "lastEventId": "104",
            }
            slow_items += await take(slow, 18)
            assert [i.data for i in slow_items] == list(range(20))
            store.publish("slow", 20)
            assert [i.data for i in await take(slow, 1)] == [20]


async def test_a_node_hop_delivers_each_event_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    nodes = [FakeServer(nursery, store.serve), FakeServer(nursery, store.serve)]
    count = 0

    async def open_stream(target: tr.Target) -> trio.abc.Stream:
        nonlocal count
        count += 1
        return await nodes[count % 2].open_stream(target)

    with trio.fail_after(30):
        async with (
            tr.open_reconnecting_websocket(URL, open_stream=open_stream, ping_interval=None) as ws,
            ws.subscribe("room") as sub,
        ):
            items = []
            for hop in range(3):
                store.publish("room", hop)
                items += await take(sub, 1)
                await store.kick()
                store.publish("room", f"away {hop}")
                await trio.sleep(0.1)
                await ws.wait_ready()
                items += await take(sub, 1)
    assert [i.data for i in items] == [0, "away 0", 1, "away 1", 2, "away 2"]
    assert len(set(ids(items))) == 6
    assert [len(n.connects) for n in nodes] == [2, 2]


async def test_malformed_channel_frames_are_logged_and_dropped(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: Any
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    caplog.set_level(logging.DEBUG, "trio_reconnect")
    with trio.fail_after(10):
        async with client(server) as ws, ws.subscribe("room") as sub:
            store.send_raw(json.dumps({"type": "event", "channel": None, "id": "7"}))
            store.send_raw(json.dumps({"type": "join", "channel": "room", "clientId": 5}))
            store.send_raw(json.dumps({"type": "subscribed", "channel": "room"}))
            store.send_raw("plain text")
            store.publish("room", "fine")
            assert [i.data for i in await take(sub, 1)] == ["fine"]
            assert await ws.get_message() == "plain text"
    malformed = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert [r.levelno for r in malformed] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


async def test_an_unsolicited_subscribed_starts_the_channel_again_with_a_gap(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws, ws.subscribe("room") as sub:
            store.publish("room", 1)
            store.send_raw(
                json.dumps({"type": "subscribed", "channel": "room", "id": "900", "lost": True})
            )
            store.publish("room", 2)  # id 102: a new event after the restart point
            items = await take(sub, 3)
    assert items[0] == tr.ServerEvent("101", 1)
    assert items[1] == tr.Gap("101", "900")
    assert items[2] == tr.ServerEvent("102", 2)


async def test_presence_members_and_changes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(presence={"room": {"me": {"user": "ada"}}})
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server, client_id="me") as ws, ws.subscribe("room") as sub:
            assert dict(sub.members) == {"me": {"user": "ada"}}
            assert await take(sub, 1) == [tr.Join("room", "me", {"user": "ada"})]
            store.send_raw(
                json.dumps({"type": "join", "channel": "room", "clientId": "b", "info": {}})
            )
            store.send_raw(json.dumps({"type": "leave", "channel": "room", "clientId": "me"}))
            assert await take(sub, 2) == [tr.Join("room", "b", {}), tr.Leave("room", "me")]
            assert dict(sub.members) == {"b": {}}
            with pytest.raises(TypeError):
                sub.members["x"] = {}  # type: ignore[index, unused-ignore]


async def test_leaving_the_block_with_subscriptions_open_is_prompt(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws, trio.open_nursery() as inner:

            async def hold(channel: str, task_status: Any) -> None:
                async with ws.subscribe(channel) as sub:
                    task_status.started()
                    async for _ in sub:
                        pass

            await inner.start(hold, "a")
            await inner.start(hold, "b")
            start = trio.current_time()
            inner.cancel_scope.cancel()
        assert trio.current_time() - start < 0.1
    assert sorted(f["channel"] for f in frames_of(store, "unsubscribe")) == ["a", "b"]


async def test_the_iteration_ends_when_the_client_closes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    ended = trio.Event()
    with trio.fail_after(10):
        async with client(server) as ws, trio.open_nursery() as inner:
            entered = trio.Event()

            async def reader() -> None:
                async with ws.subscribe("room") as sub:
                    entered.set()
                    async for _ in sub:
                        pass
                ended.set()

            inner.start_soon(reader)
            await entered.wait()
            hub = ws._sup.channels
            assert hub is not None
            hub.close(tr.ClientClosedError("closed"))
    assert ended.is_set()
    with pytest.raises(ValueError, match="already subscribed"):
        hub = tr.ReconnectingWebSocket(URL)._sup.channels
        assert hub is not None
        hub.add("x", None, None)
        hub.add("x", None, None)
