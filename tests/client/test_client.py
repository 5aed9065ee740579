"""The supervisor end to end: the real client over memory streams, virtual time."""

from __future__ import annotations

import itertools
import json
import random

import pytest
import trio
import trio.testing
import trio_websocket

import trio_reconnect as tr
from tests.support.fake_server import FakeServer, accept_and_resume, send_event, send_ready

SEED = 1234


def seeded() -> random.Random:
    return random.Random(SEED)


async def test_resume_frame_first_then_ready_opens_gate(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    frames: list[object] = []
    ready_sent = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, first = await accept_and_resume(request)
        frames.append(first)
        await trio.sleep(3)  # nothing may arrive before ready
        with trio.move_on_after(0.001) as early:
            frames.append(await ws.get_message())
        assert early.cancelled_caught
        await send_ready(ws, None)
        ready_sent.set()
        frames.append(json.loads(await ws.get_message()))
        frames.append(json.loads(await ws.get_message()))
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(30):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/feed", open_stream=server.open_stream, random=seeded()
        ) as ws:
            assert ws.state.value == "connecting"
            await ws.send_message(json.dumps({"n": 1}))
            assert ready_sent.is_set()
            assert trio.current_time() == 3.001  # 3 s of silence + the 1 ms probe
            assert ws.state is tr.ConnectionState.OPEN
            await ws.send_message(json.dumps({"n": 2}))
            await trio.sleep(1)
    resume: dict[str, object] = {
        "type": "resume",
        "lastEventId": None,
        "clientId": ws.client_id,
        "channels": {},
    }
    assert frames == [resume, {"n": 1}, {"n": 2}]
    assert server.targets[0].resource == "/feed"
    assert ws.state.value == "closed"


def expected_delays(n: int, backoff: tr.Backoff | None = None) -> list[float]:
    """The delays the client must choose, computed independently of it."""
    policy = backoff or tr.Backoff()
    rng = seeded()
    out: list[float] = []
    for retry in range(1, n + 1):
        cap = min(policy.max_delay, policy.initial * policy.factor ** (retry - 1))
        out.append(rng.uniform(0, cap))
    return out


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_exact_backoff_schedule_and_give_up_with_history(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        raise AssertionError("never reached")

    server = FakeServer(nursery, handler, refuse=lambda n: OSError(111, "refused"))
    transitions: list[tr.Transition] = []
    with trio.fail_after(1000), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=server.open_stream,
            random=seeded(),
            max_attempts=8,
            on_transition=transitions.append,
        ) as ws:
            await ws.send_message("never sent")
    assert len(server.connects) == 8
    assert gaps(server.connects) == pytest.approx(expected_delays(7), abs=1e-9)
    failure = info.value
    assert type(failure) is tr.ReconnectFailed
    assert "8 failed attempts" in str(failure)
    assert [a.number for a in failure.history] == list(range(1, 9))
    assert all(isinstance(a.error, OSError) for a in failure.history)
    assert [a.delay for a in failure.history[:7]] == pytest.approx(expected_delays(7))
    assert all(a.delay_source is tr.DelaySource.BACKOFF for a in failure.history)
    assert isinstance(failure.last_error, OSError)
    assert transitions[-1].state is tr.ConnectionState.FAILED
    backing_off = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert [t.attempt for t in backing_off] == list(range(2, 9))  # the attempt waited for
    assert ws.state is tr.ConnectionState.FAILED


async def test_capped_delays_keep_jitter(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        raise AssertionError("never reached")

    server = FakeServer(nursery, handler, refuse=lambda n: OSError("down"))
    with trio.fail_after(10_000), pytest.raises(tr.ReconnectFailed):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, random=seeded()
        ) as ws:
            await ws.wait_ready()
    assert len(server.connects) == tr.DEFAULT_MAX_ATTEMPTS
    delays = gaps(server.connects)
    assert delays == pytest.approx(expected_delays(19), abs=1e-9)
    assert max(delays) <= 30.0
    assert len(set(delays[6:])) == len(delays[6:])  # capped, yet not in lockstep


async def test_give_up_after_seconds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        raise AssertionError("never reached")

    server = FakeServer(nursery, handler, refuse=lambda n: OSError("down"))
    policy = tr.Backoff(jitter=tr.Jitter.NONE)
    with trio.fail_after(1000), pytest.raises(tr.ReconnectFailed, match="within 10"):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=server.open_stream,
            backoff=policy,
            give_up_after=10.0,
            max_attempts=None,
        ):
            await trio.sleep_forever()
    # attempts at 0, 1, 3, 7; the next would be at 15 > 10: give up at 7
    assert server.connects == [0.0, 1.0, 3.0, 7.0]
    assert trio.current_time() == 7.0


async def test_server_hint_honoured_exactly_and_clamped(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    hints = {1: 1375, 2: 10**9}  # ms; the second is absurd and gets clamped

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await trio.sleep(20)  # stable (stable_after = 10)
        if n in hints:
            await ws.aclose(1012, json.dumps({"reason": "restart", "retryAfter": hints[n]}))
        else:
            await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(1000):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=server.open_stream,
            random=seeded(),
            max_server_delay=120.0,
            on_transition=transitions.append,
        ) as ws:
            while len(server.connects) < 3:
                await trio.sleep(1)
            await ws.wait_ready()
    assert server.connects == pytest.approx([0.0, 20.0 + 1.375, 20.0 + 1.375 + 20.0 + 120.0])
    waits = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert [t.delay_source for t in waits] == [tr.DelaySource.SERVER] * 2
    assert waits[0].close_code == 1012
    assert ws.statistics().reconnects == 2
    assert ws.statistics().median_reconnect == pytest.approx((1.375 + 120.0) / 2)


async def test_server_hint_counts_from_the_close_frame_not_the_end_of_the_handshake(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The close frame arrives at t=20; the client's reply takes 0.3 s to go
    # out, so the close handshake ends at 20.3. The wait of 2 s counts from
    # the frame's arrival: the next attempt starts at exactly 22.
    slow_reply = {"armed": False, "sent_at": -1.0}

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n > 1:
            await trio.sleep_forever()
        await trio.sleep(20)
        slow_reply["armed"] = True
        await ws.aclose(1012, json.dumps({"reason": "restart", "retryAfter": 2000}))

    server = FakeServer(nursery, handler)

    async def open_stream(target: tr.Target) -> trio.abc.Stream:
        stream = await server.open_stream(target)
        assert isinstance(stream, trio.StapledStream)
        sender = stream.send_stream
        assert isinstance(sender, trio.testing.MemorySendStream)
        pump = sender.send_all_hook
        assert pump is not None

        async def hook() -> None:
            if slow_reply["armed"]:  # the client's close reply
                slow_reply["armed"] = False
                await trio.sleep(0.3)
                slow_reply["sent_at"] = trio.current_time()
            await pump()

        sender.send_all_hook = hook
        return stream

    transitions: list[tr.Transition] = []
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=open_stream,
            random=seeded(),
            ping_interval=None,
            on_transition=transitions.append,
        ) as ws:
            while len(server.connects) < 2:
                await trio.sleep(0.01)
            await ws.wait_ready()
    assert slow_reply["sent_at"] == pytest.approx(20.3)  # the handshake did take 0.3 s
    assert server.connects == pytest.approx([0.0, 22.0])
    waits = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert [t.delay_source for t in waits] == [tr.DelaySource.SERVER]
    assert waits[0].delay == pytest.approx(1.7)


@pytest.mark.parametrize(
    "reason",
    [
        "not json",
        "[1, 2]",
        '{"retryAfter": -5}',
        '{"retryAfter": NaN}',
        '{"retryAfter": Infinity}',
        '{"retryAfter": true}',
        '{"retryAfter": "1000"}',
        '{"retryAfter": null}',
        '{"other": 1}',
        "",
    ],
)
async def test_bad_hints_are_ignored_and_backoff_applies(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, reason: str
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n == 1:
            await trio.sleep(20)
            await ws.aclose(1012, reason)
        else:
            await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, random=seeded()
        ) as ws:
            while len(server.connects) < 2:
                await trio.sleep(0.5)
            await ws.wait_ready()
    assert gaps(server.connects) == pytest.approx([20.0 + expected_delays(1)[0]])


async def test_hammering_server_gets_backoff_after_two_immediate_retries(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await ws.aclose(1013, json.dumps({"retryAfter": 0}))  # accept, then drop at once

    server = FakeServer(nursery, handler)
    policy = tr.Backoff(jitter=tr.Jitter.NONE)
    with trio.fail_after(1000), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, backoff=policy, max_attempts=7
        ):
            await trio.sleep_forever()
    # retries 1 and 2 honour retryAfter 0; from the 3rd short hint on: max(0, backoff)
    assert gaps(server.connects) == [0.0, 0.0, 4.0, 8.0, 16.0, 30.0]
    sources = [a.delay_source for a in info.value.history[:6]]
    assert sources == [tr.DelaySource.SERVER] * 2 + [tr.DelaySource.SERVER_FLOORED] * 4
    assert all(a.close_code == 1013 for a in info.value.history)


async def test_unstable_connection_does_not_reset_backoff(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await trio.sleep(5 if n < 4 else 10)  # ready, but up for less than stable_after
        await ws.aclose(1011)

    server = FakeServer(nursery, handler)
    policy = tr.Backoff(jitter=tr.Jitter.NONE)
    with trio.fail_after(1000):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, backoff=policy
        ):
            while len(server.connects) < 5:
                await trio.sleep(0.5)
    # up 5 s then 1, 2, 4 s of backoff; the 4th stays 10 s = stable: back to 1 s
    assert gaps(server.connects) == [6.0, 7.0, 9.0, 11.0]


async def test_fatal_close_raises_bare_with_code_and_reason(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await trio.sleep(1)
        await ws.aclose(4003, "forbidden topic")

    server = FakeServer(nursery, handler)
    with trio.fail_after(100), pytest.raises(tr.FatalCloseError) as info:
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            async for _ in ws:
                pass
    assert info.value.code == 4003
    assert info.value.reason == "forbidden topic"
    assert len(server.connects) == 1
    assert ws.state is tr.ConnectionState.FAILED


async def test_should_reconnect_overrides_fatal_close(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    asked: list[tr.Disconnect] = []

    def should_reconnect(d: tr.Disconnect) -> bool:
        asked.append(d)
        return d.close_code == 4001

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await ws.aclose(4001 if n == 1 else 1000)

    server = FakeServer(nursery, handler)
    with trio.fail_after(100), pytest.raises(tr.FatalCloseError) as info:
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=server.open_stream,
            should_reconnect=should_reconnect,
            random=seeded(),
        ):
            await trio.sleep_forever()
    assert [d.close_code for d in asked] == [4001, 1000]
    assert [d.default for d in asked] == [False, True]
    assert info.value.code == 1000
    assert len(server.connects) == 2


async def test_refused_503_with_retry_after_seconds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        if n == 1:
            await request.reject(503, extra_headers=[(b"Retry-After", b"7")])
            return
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, on_transition=transitions.append
        ) as ws:
            await ws.wait_ready()
    assert server.connects == [0.0, 7.0]
    waits = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert waits[0].status_code == 503
    assert waits[0].delay == 7.0
    assert waits[0].delay_source is tr.DelaySource.SERVER


async def test_refused_503_with_http_date(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import email.utils

    import trio_reconnect._supervisor as client_module

    wall = 1_800_000_000.0
    monkeypatch.setattr(client_module, "_wall_clock", lambda: wall)
    date = email.utils.formatdate(wall + 42, usegmt=True).encode()

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        if n == 1:
            await request.reject(503, extra_headers=[(b"Retry-After", date)])
            return
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            await ws.wait_ready()
    assert server.connects == [0.0, 42.0]


async def test_refused_401_is_fatal_with_status_and_headers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        await request.reject(401, extra_headers=[(b"WWW-Authenticate", b"Bearer")], body=b"no")

    server = FakeServer(nursery, handler)
    with trio.fail_after(100), pytest.raises(tr.HandshakeRejectedError) as info:
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            await ws.send_message("x")
    assert info.value.status_code == 401
    assert (b"www-authenticate", b"Bearer") in info.value.headers
    assert info.value.body == b"no"
    assert len(server.connects) == 1
    assert isinstance(info.value, tr.ReconnectFailed)


async def test_replay_snapshot_and_lost_delivered_in_place(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    resumes: list[object] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        resumes.append(frame["lastEventId"])
        if n == 1:  # fresh: a snapshot, then live events
            await ws.send_message(json.dumps({"type": "snapshot", "id": "2", "data": {"s": 2}}))
            await send_ready(ws, "2")
            await send_event(ws, "3", "c")
            await ws.send_message("plain text")
            await ws.send_message(b"\x00binary")
        elif n == 2:  # replay the missed 4 and 5, one duplicate live event
            await send_event(ws, "4", "d")
            await send_event(ws, "5", "e")
            await send_ready(ws, "5")
            await send_event(ws, "5", "e")
            await send_event(ws, "6", "f")
        else:  # too far behind and no snapshot: lost
            await send_ready(ws, "99", lost=True)
            await send_event(ws, "100", "z")
        await trio.sleep(20)
        await ws.aclose(1012, '{"retryAfter": 0}')

    server = FakeServer(nursery, handler)
    items: list[object] = []
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            async for item in ws:
                items.append(item)
                if item == tr.ServerEvent("100", "z"):
                    break
            stats = ws.statistics()
            assert ws.last_event_id == "100"
    assert items == [
        tr.Snapshot("2", {"s": 2}),
        tr.ServerEvent("3", "c"),
        "plain text",
        b"\x00binary",
        tr.ServerEvent("4", "d"),
        tr.ServerEvent("5", "e"),
        tr.ServerEvent("6", "f"),
        tr.Gap("6", "99"),
        tr.ServerEvent("100", "z"),
    ]
    assert resumes == [None, "3", "6"]
    assert (stats.fresh, stats.snapshots, stats.replayed, stats.lost) == (0, 1, 1, 1)
    assert stats.replayed_events == 2
    assert stats.connects == 3
    assert stats.reconnects == 2


async def test_fresh_outcome_and_resume_from_given_id(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    resumes: list[object] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        resumes.append(frame["lastEventId"])
        await send_ready(ws, None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            await ws.wait_ready()
            assert ws.statistics().fresh == 1
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, last_event_id="41"
        ) as ws:
            await ws.wait_ready()
            assert ws.statistics().replayed == 1
    assert resumes == [None, "41"]


@pytest.mark.parametrize(
    "frames",
    [
        ["not json"],
        ["[1]"],
        ['{"type": "bogus"}'],
        ['{"type": "event", "data": 1}'],
        ['{"type": "event", "id": 5, "data": 1}'],
        ['{"type": "snapshot", "data": 1}'],
        ['{"type": "ready"}'],
        ['{"type": "ready", "id": null, "lost": "yes"}'],
        ['{"type": "event", "id": "1"}', '{"type": "snapshot", "id": "1", "data": 0}'],
        [b"binary"],
    ],
)
async def test_malformed_handshake_fails_the_attempt_not_the_client(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, frames: list[str | bytes]
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        if n == 1:
            for frame in frames:
                await ws.send_message(frame)
        else:
            await send_ready(ws, None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=server.open_stream,
            on_transition=transitions.append,
            random=seeded(),
        ) as ws:
            await ws.wait_ready()
    errors = [t.error for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert len(errors) == 1
    assert isinstance(errors[0], tr.ResumeProtocolError)
    assert server.connects == pytest.approx([0.0, expected_delays(1)[0]])


async def test_resume_timeout_then_backoff(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        if n > 1:
            await send_ready(ws, None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    policy = tr.Backoff(jitter=tr.Jitter.NONE)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=server.open_stream,
            backoff=policy,
            resume_timeout=4.0,
            on_transition=transitions.append,
        ) as ws:
            await ws.wait_ready()
    assert server.connects == [0.0, 5.0]
    errors = [t.error for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert isinstance(errors[0], tr.ResumeTimeout)


async def test_stalled_websocket_handshake_bounded_by_connect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A server that accepts TCP and never answers (TRIO_NOTES' hang)."""
    silent_ends: list[trio.abc.Stream] = []
    connects: list[float] = []

    async def open_stream(target: tr.Target) -> trio.abc.Stream:
        connects.append(trio.current_time())
        client, server = trio.testing.memory_stream_pair()
        silent_ends.append(server)  # never read, never answered
        return client

    policy = tr.Backoff(jitter=tr.Jitter.NONE)
    with trio.fail_after(100), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=open_stream,
            backoff=policy,
            connect_timeout=3.0,
            max_attempts=3,
        ):
            await trio.sleep_forever()
    assert connects == [0.0, 4.0, 9.0]
    assert trio.current_time() == 12.0
    assert all(isinstance(a.error, tr.ConnectTimeout) for a in info.value.history)


async def test_slow_open_stream_bounded_by_connect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def open_stream(target: tr.Target) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError

    with trio.fail_after(100), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=open_stream, connect_timeout=2.5, max_attempts=1
        ):
            await trio.sleep_forever()
    assert trio.current_time() == 2.5
    assert isinstance(info.value.last_error, tr.ConnectTimeout)


async def test_server_closing_tcp_during_handshake_fails_fast(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def open_stream(target: tr.Target) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await server.aclose()
        return client

    with trio.fail_after(100), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=open_stream, max_attempts=1
        ):
            await trio.sleep_forever()
    assert trio.current_time() == 0.0
    assert info.value.history[0].close_code == 1006
