"""Acknowledged publish on the client (PROTOCOL.md 4.5): ws.publish() against a fake v2 server.

The client runs for real over the memory network; the server is
tests/support/fake_channels.py (which applies a publish once per clientId and
msgId, and whose ``publish_script`` forces answers). Virtual time
(``autojump_clock``), ``fail_after`` guards, exact times where the policy
fixes them; the wire order is read from what the server received.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_reconnect as tr
from tests.client.test_subscriptions import client, frames_of, wait_for
from tests.support.fake_channels import ChannelStore
from tests.support.fake_server import FakeServer
from trio_reconnect._outbox import PendingPublish
from trio_reconnect._wire import NackCode, Publish


def publishes(store: ChannelStore) -> list[tuple[int, str]]:
    """(node, msgId) of every publish frame the server received, in order."""
    return [
        (node, f["msgId"])
        for node, f in store.received
        if isinstance(f, dict) and f.get("type") == "publish"
    ]


def once(*forced: tuple[str, NackCode | str]) -> Any:
    """A publish script: each (msgId, answer) forced the first time only."""
    left = dict(forced)

    def script(frame: Publish) -> NackCode | str | None:
        return left.pop(frame.msg_id, None)

    return script


async def test_publishes_are_acked_in_order_with_counter_msg_ids(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server, client_id="me") as ws:
            assert await ws.publish("room:1", {"n": 0}) == "101"
            async with ws.subscribe("room:1") as sub:
                assert await sub.publish({"n": 1}) == "102"
                assert await sub.__anext__() == tr.ServerEvent("102", {"n": 1})
            assert await ws.publish("room:2", "x") == "101"
            assert ws.outbox_state() == tr.OutboxState("me", "3", ())
    assert frames_of(store, "publish") == [
        {"type": "publish", "channel": "room:1", "msgId": "0", "data": {"n": 0}},
        {"type": "publish", "channel": "room:1", "msgId": "1", "data": {"n": 1}},
        {"type": "publish", "channel": "room:2", "msgId": "2", "data": "x"},
    ]
    assert store.logs == {
        "room:1": [("101", {"n": 0}), ("102", {"n": 1})],
        "room:2": [("101", "x")],
    }


async def test_a_full_outbox_makes_publish_wait_until_an_ack_frees_room(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(ack_delay=1.0)
    server = FakeServer(nursery, store.serve)
    two = 2 * PendingPublish.of(Publish("c", "0", "x" * 20)).size
    returned: dict[int, float] = {}
    with trio.fail_after(10):
        async with client(server, outbox_bytes=two) as ws:
            await ws.wait_ready()
            start = trio.current_time()

            async def one(n: int) -> None:
                await ws.publish("c", "x" * 20)
                returned[n] = trio.current_time() - start

            async with trio.open_nursery() as inner:
                for n in range(3):
                    inner.start_soon(one, n)
                    await trio.lowlevel.checkpoint()
                await trio.sleep(0.5)
                assert ws.outbox_state().publishes == (
                    tr.SavedPublish("c", "0", "x" * 20),
                    tr.SavedPublish("c", "1", "x" * 20),
                )  # the third waits for room, without a msgId
    assert returned == {0: 1.0, 1: 1.0, 2: 2.0}
    assert [at - start for at in store.received_at] == [0.0, 0.0, 1.0]
    assert [m for _, m in publishes(store)] == ["0", "1", "2"]


async def test_a_publish_larger_than_the_outbox_or_not_json_is_refused_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server, outbox_bytes=100) as ws:
            with pytest.raises(ValueError, match="never fits"):
                await ws.publish("c", "x" * 200)
            with pytest.raises(ValueError, match="data"):
                await ws.publish("c", math.nan)
            with pytest.raises(ValueError, match="channel"):
                await ws.publish("", 1)
            assert await ws.publish("c", 1) == "101"
    assert [m for _, m in publishes(store)] == ["0"]


async def test_a_drop_before_the_ack_resends_after_on_connect_before_queued_sends(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(publish_script=once(("0", "apply_and_drop")))
    server = FakeServer(nursery, store.serve)

    async def on_connect(conn: tr.Connection) -> None:
        await conn.send_message("hello from on_connect")

    results: list[str] = []
    offline = trio.Event()

    def on_transition(change: tr.Transition) -> None:
        if change.state is tr.ConnectionState.BACKING_OFF:
            offline.set()

    with trio.fail_after(10):
        async with client(
            server, client_id="me", on_connect=on_connect, on_transition=on_transition
        ) as ws:
            await ws.wait_ready()

            async def publish() -> None:
                results.append(await ws.publish("c", "once"))

            async with trio.open_nursery() as inner:
                inner.start_soon(publish)
                await offline.wait()
                inner.start_soon(ws.send_message, "queued while offline")
                await trio.lowlevel.checkpoint()
                inner.start_soon(publish)  # made offline: goes with the re-sends
    assert results == ["101", "102"]
    assert store.logs["c"] == [("101", "once"), ("102", "once")]  # the re-send applied once
    node2 = [f for node, f in store.received if node == 2]
    assert node2 == [
        "hello from on_connect",
        {"type": "publish", "channel": "c", "msgId": "0", "data": "once"},
        {"type": "publish", "channel": "c", "msgId": "1", "data": "once"},
        "queued while offline",
    ]


async def test_unavailable_resends_after_the_backoff_on_the_same_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(publish_script=once(("0", NackCode.UNAVAILABLE)), ack_delay=0.25)
    server = FakeServer(nursery, store.serve)
    done: dict[str, float] = {}
    with trio.fail_after(10):
        async with client(server) as ws:  # Backoff(initial=1, no jitter): 1 s, then 2 s
            await ws.wait_ready()
            start = trio.current_time()

            async def publish(n: int) -> None:
                await ws.publish("c", n)
                done[str(n)] = trio.current_time() - start

            async with trio.open_nursery() as inner:
                inner.start_soon(publish, 0)
                await trio.lowlevel.checkpoint()
                inner.start_soon(publish, 1)  # sent before the nack: nacked too
                await trio.sleep(0.5)  # the nacks came at 0.25
                assert ws.outbox_state().publishes[0].msg_id == "0"
                inner.start_soon(publish, 2)  # made while "0" is held: not sent before it
            assert len(server.connects) == 1
    # "0" held at 0.25 for 1 s (attempt 1), re-sent from the oldest, in order.
    sent = zip(publishes(store), store.received_at, strict=True)
    assert [(m, at - start) for (_, m), at in sent] == [
        ("0", 0.0),
        ("1", 0.0),
        ("0", 1.25),
        ("1", 1.25),
        ("2", 1.25),
    ]
    assert done == {"0": 1.5, "1": 1.5, "2": 1.5}
    assert [data for _, data in store.logs["c"]] == [0, 1, 2]


async def test_a_second_unavailable_doubles_the_publish_backoff(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    answers = [NackCode.UNAVAILABLE, NackCode.UNAVAILABLE]

    def script(frame: Publish) -> NackCode | None:
        return answers.pop(0) if answers else None

    store = ChannelStore(publish_script=script)
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws:
            await ws.wait_ready()
            start = trio.current_time()
            assert await ws.publish("c", 0) == "101"
            assert trio.current_time() - start == 3.0  # 1 s, then 2 s
    assert [at - start for at in store.received_at] == [0.0, 1.0, 3.0]


async def test_the_next_ready_resends_a_held_publish_before_its_backoff(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(publish_script=once(("0", NackCode.UNAVAILABLE)))
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server, backoff=tr.Backoff(initial=30.0, jitter=tr.Jitter.NONE)) as ws:
            await ws.wait_ready()
            async with trio.open_nursery() as inner:
                inner.start_soon(ws.publish, "c", 0)
                await wait_for(store, lambda: publishes(store))
                await trio.sleep(0.1)
                await store.kick(1012, 0)
            assert trio.current_time() < 30
    assert publishes(store) == [(1, "0"), (2, "0")]


@pytest.mark.parametrize("code", [NackCode.FORBIDDEN, NackCode.INVALID, NackCode.TOO_LARGE])
async def test_a_final_nack_raises_publish_refused(
    code: NackCode, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(publish_script=once(("0", code)))
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws:
            with pytest.raises(tr.PublishRefused) as caught:
                await ws.publish("c", 1)
            assert (caught.value.code, caught.value.channel) == (code, "c")
            assert (caught.value.msg_id, caught.value.reason) == ("0", "scripted")
            assert ws.outbox_state().publishes == ()
            assert await ws.publish("c", 2) == "101"  # nothing held back


async def test_a_version_1_server_refuses_publishes_unsupported(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(v1=True)
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws:
            with pytest.raises(tr.PublishRefused) as before:
                await ws.publish("c", 1)  # made before ready: failed at ready
            assert (before.value.code, before.value.msg_id) == (NackCode.UNSUPPORTED, "0")
            with pytest.raises(tr.PublishRefused) as after:
                await ws.publish("c", 2)  # on the ready v1 connection: at once
            assert (after.value.code, after.value.msg_id) == ("unsupported", None)
            assert ws.outbox_state() == tr.OutboxState(ws.client_id, "1", ())
    assert publishes(store) == []


async def test_giving_up_fails_every_pending_publish_with_the_give_up_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(publish_script=lambda frame: "drop")
    server = FakeServer(nursery, store.serve, refuse=lambda n: OSError("down") if n > 1 else None)
    raised: list[BaseException] = []
    state: list[tr.OutboxState] = []
    with trio.fail_after(60), pytest.raises(tr.ReconnectFailed) as out:
        async with client(server, max_attempts=2) as ws:
            await ws.wait_ready()

            async def publish(n: int) -> None:
                try:
                    await ws.publish("c", n)
                except tr.ReconnectFailed as exc:
                    raised.append(exc)
                    state.append(ws.outbox_state())
                    raise

            async with trio.open_nursery() as inner:
                inner.start_soon(publish, 0)
                inner.start_soon(publish, 1)
    assert raised == [out.value, out.value]
    assert [p.msg_id for p in state[0].publishes] == ["0", "1"]  # kept, to persist


async def test_a_publish_cancelled_before_it_was_sent_is_withdrawn(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve, refuse=lambda n: OSError("down") if n == 1 else None)
    with trio.fail_after(10):
        async with client(server) as ws:
            with trio.move_on_after(0.5):
                await ws.publish("c", "never")  # offline: never sent
            assert ws.outbox_state().publishes == ()
            assert await ws.publish("c", "sent") == "101"
    assert [f["data"] for f in frames_of(store, "publish")] == ["sent"]
    assert store.logs["c"] == [("101", "sent")]


async def test_a_publish_cancelled_as_it_is_called_takes_nothing(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Cancelled at its first schedule point: the outbox keeps nothing, the
    # msgId is not spent, and nothing is sent.
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws:
            await ws.wait_ready()
            with trio.CancelScope() as scope:
                scope.cancel()
                await ws.publish("c", "never")
            assert ws.outbox_state().publishes == ()
            assert ws.outbox_state().next_msg_id == "0"
            assert await ws.publish("c", "sent") == "101"
    assert [f["data"] for f in frames_of(store, "publish")] == ["sent"]


async def test_a_publish_cancelled_after_it_was_sent_stays_and_is_resent(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "trio_reconnect")
    store = ChannelStore(publish_script=once(("0", "silent")))
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws:
            await ws.wait_ready()
            with trio.move_on_after(0.5):
                await ws.publish("c", "kept")
            assert [p.msg_id for p in ws.outbox_state().publishes] == ["0"]
            await store.kick(1012, 0)
            await ws.wait_acked()
            assert ws.outbox_state().publishes == ()
    assert publishes(store) == [(1, "0"), (2, "0")]
    assert store.logs["c"] == [("101", "kept")]
    assert "publish 0 acked as 101" in caplog.text


async def test_bad_answers_from_the_server_change_nothing(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(publish_script=once(("0", "silent")))
    server = FakeServer(nursery, store.serve)
    result: list[str] = []
    with trio.fail_after(10):
        async with client(server) as ws:
            await ws.wait_ready()
            async with trio.open_nursery() as inner:

                async def publish() -> None:
                    result.append(await ws.publish("c", 1))

                inner.start_soon(publish)
                await wait_for(store, lambda: publishes(store))
                for frame in [
                    {"type": "ack", "msgId": "7", "channel": "c", "id": "9"},  # unknown msgId
                    {"type": "ack", "msgId": "0", "channel": "other", "id": "9"},  # wrong channel
                    {"type": "nack", "msgId": "0", "channel": "c", "code": "nope"},  # unknown code
                    {"type": "nack", "msgId": "0", "channel": "other", "code": "forbidden"},
                    {"type": "nack", "msgId": None, "channel": None, "code": "invalid"},
                    {"type": "ack", "msgId": 0, "channel": "c", "id": "9"},  # malformed
                ]:
                    store.send_raw(json.dumps(frame))
                await trio.sleep(1)
                assert result == []
                assert [p.msg_id for p in ws.outbox_state().publishes] == ["0"]
                store.send_raw(json.dumps({"type": "ack", "msgId": "0", "channel": "c", "id": "5"}))
            assert result == ["5"]
            store.send_raw(json.dumps({"type": "ack", "msgId": "0", "channel": "c", "id": "6"}))
            assert await ws.publish("c", 2) == "101"  # the second ack of "0" did nothing


async def test_a_saved_outbox_is_resent_first_after_a_restart_and_applied_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(publish_script=once(("1", "apply_and_drop")))
    server = FakeServer(nursery, store.serve, refuse=lambda n: OSError("gone") if n > 1 else None)
    saved: list[Any] = []
    with trio.fail_after(60), pytest.raises(tr.ReconnectFailed):
        async with client(server, client_id="app-1", max_attempts=1) as ws:
            assert await ws.publish("c", "a") == "101"
            try:
                await ws.publish("c", "b")  # applied, but the ack never came
            finally:
                saved.append(json.dumps(ws.outbox_state().to_json()))
    state = tr.OutboxState.from_json(json.loads(saved[0]))
    assert state == tr.OutboxState("app-1", "2", (tr.SavedPublish("c", "1", "b"),))

    async def on_connect(conn: tr.Connection) -> None:
        await conn.send_message("on_connect")

    server2 = FakeServer(nursery, store.serve)
    before = len(store.received)
    with trio.fail_after(10):
        async with client(server2, outbox=state, on_connect=on_connect) as ws:
            assert ws.client_id == "app-1"
            await ws.send_message("after")
            await ws.wait_acked()
            assert await ws.publish("c", "c") == "103"
    received = [f for _, f in store.received[before:]]
    assert received[:3] == [
        "on_connect",
        {"type": "publish", "channel": "c", "msgId": "1", "data": "b"},
        "after",
    ]
    assert store.logs["c"] == [("101", "a"), ("102", "b"), ("103", "c")]


def test_outbox_options_are_checked() -> None:
    state = tr.OutboxState("me", "2", (tr.SavedPublish("c", "1", "x" * 100),))
    with pytest.raises(ValueError, match="positive"):
        tr.ReconnectingWebSocket("ws://x.test/", outbox_bytes=0)
    with pytest.raises(ValueError, match="belong to clientId 'me'"):
        tr.ReconnectingWebSocket("ws://x.test/", client_id="you", outbox=state)
    with pytest.raises(ValueError, match="never fits"):
        tr.ReconnectingWebSocket("ws://x.test/", outbox=state, outbox_bytes=50)
    two = tr.OutboxState("me", "2", (tr.SavedPublish("c", "0", 1), tr.SavedPublish("c", "1", 2)))
    with pytest.raises(ValueError, match="do not fit"):
        tr.ReconnectingWebSocket("ws://x.test/", outbox=two, outbox_bytes=60)
    with pytest.raises(TypeError, match="OutboxState"):
        tr.ReconnectingWebSocket("ws://x.test/", outbox={"clientId": "me"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not below the counter"):
        tr.OutboxState("me", "1", (tr.SavedPublish("c", "1", 1),))
    with pytest.raises(ValueError, match="channel"):
        tr.OutboxState("me", "2", (tr.SavedPublish("", "1", 1),))
    with pytest.raises(ValueError, match="non-negative"):
        tr.OutboxState("me", "-1")
    bads: list[Any] = [None, {}, {"clientId": "me", "nextMsgId": "0", "publishes": [{}]}, []]
    for bad in bads:
        with pytest.raises(ValueError, match="not a saved outbox state"):
            tr.OutboxState.from_json(bad)
    assert tr.OutboxState.from_json(state.to_json()) == state


async def test_publishing_needs_the_resume_protocol(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore()
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server, resume=False) as ws:
            with pytest.raises(RuntimeError, match="resume"):
                await ws.publish("c", 1)
            with pytest.raises(RuntimeError, match="resume"):
                ws.outbox_state()


async def test_after_the_block_publish_raises_client_closed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    store = ChannelStore(publish_script=once(("0", "silent")))
    server = FakeServer(nursery, store.serve)
    with trio.fail_after(10):
        async with client(server) as ws:
            await ws.wait_ready()
            with trio.move_on_after(0.5):
                await ws.publish("c", "unanswered")
        with pytest.raises(tr.ClientClosedError):
            await ws.publish("c", 1)
        with pytest.raises(tr.ClientClosedError):
            await ws.wait_acked()
        assert [p.data for p in ws.outbox_state().publishes] == ["unanswered"]
