"""The channel figures' pieces (issue 18): who subscribes to what, who expects what, the report.

The figures themselves run for real, at a tiny size, in tests/tools/test_bench.py;
the client processes run here too, against a server in this process.
Nothing here asserts a speed.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs
import pytest
import trio

from trio_reconnect._frames import encode_channel_event
from trio_reconnect._tools.bench import _chanworker, _crowd
from trio_reconnect._tools.bench._chanclients import open_clients
from trio_reconnect._tools.bench._chanfanout import ChannelOptions, _Plan
from trio_reconnect._tools.bench._chanreport import (
    TARGET_RESUME_100_CHANNELS,
    ChannelFigures,
    channel_passes,
    channel_table,
)
from trio_reconnect._tools.bench._chanserve import channel_name
from trio_reconnect._tools.bench._crowd import FanoutError
from trio_reconnect._tools.bench._report import align
from trio_reconnect._wire import Subscribe, parse_client_frame, parse_resume_v2
from trio_reconnect.server import MemoryChannelStore, ReconnectServer, ReplayLog


def test_the_issues_sizes_give_every_channel_twenty_subscribers() -> None:
    options = ChannelOptions()
    assert (options.clients, options.count, options.subscriptions) == (2000, 1000, 10)
    per_channel: collections.Counter[int] = collections.Counter()
    for client in range(options.clients):
        channels = options.channels_of(client)
        assert len(set(channels)) == 10  # ten different channels each
        per_channel.update(channels)
    assert set(per_channel) == set(range(1000))
    assert set(per_channel.values()) == {20}


def test_a_publish_is_expected_by_the_subscribers_of_its_channels() -> None:
    plan = _Plan(ChannelOptions(clients=4, count=10, subscriptions=2))
    # Client i holds channels i and i + 5.
    assert [plan.options.channels_of(i) for i in range(4)] == [[0, 5], [1, 6], [2, 7], [3, 8]]
    assert plan.expected(0, 10) == [2, 2, 2, 2]
    assert plan.expected(0, 20) == [4, 4, 4, 4]
    assert plan.expected(5, 1) == [1, 0, 0, 0]
    assert plan.expected(4, 1) == [0, 0, 0, 0]  # nobody holds channel 4
    assert plan.expected(8, 4) == [1, 1, 0, 1]  # channels 8, 9, then 0, 1: it wraps
    # A latency sample always has a subscriber.
    assert all(any(plan.expected(plan.latency_channel(k), 1)) for k in range(20))


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"clients": 0}, "channel clients must be"),
        ({"count": -1}, "channel count must be"),
        ({"resume_repetitions": 1.5}, "channel resume_repetitions must be"),
        ({"subscriptions": True}, "channel subscriptions must be"),
        ({"count": 5, "subscriptions": 6}, "must not exceed the channel count"),
    ],
)
def test_bad_channel_options_are_refused(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ChannelOptions(**options)


def test_a_channel_hello_is_a_v2_resume_then_subscribes() -> None:
    hello = _crowd.channel_hello(7, [channel_name(1), channel_name(999)])
    assert hello.answers == 3  # ready, and two subscribed
    resume, refusals = parse_resume_v2(hello.frames[0].decode())
    assert (resume.client_id, resume.channels, refusals) == ("bench-7", (), ())
    frames = [parse_client_frame(frame.decode(), max_data_bytes=1000) for frame in hello.frames[1:]]
    assert frames == [Subscribe("c00001", None), Subscribe("c00999", None)]
    # Each fits the short frame header the clients write by hand.
    assert all(len(frame) < 126 for frame in hello.frames)


def test_expect_waits_only_for_the_clients_given_a_count() -> None:
    crowd = _crowd.Crowd("plain")
    for index in range(3):
        client = _crowd._Client(crowd, None, bytearray(), index=index, target=0)  # type: ignore[arg-type]
        crowd.clients.append(client)
    crowd.expect([0, 2, 0])
    assert crowd.pending == 1
    assert [c.waiting for c in crowd.clients] == [False, True, False]
    crowd.expect([0, 0, 0])
    assert crowd.done.is_set()  # nothing to wait for
    with pytest.raises(ValueError, match="zip"):
        crowd.expect([1, 1])  # one count per client


def _figures(**changes: Any) -> ChannelFigures:
    values: dict[str, Any] = {field.name: 1.0 for field in attrs.fields(ChannelFigures)}
    values.update(
        channel_fanout_memory_ratios=(1.0,),
        channel_fanout_redis_ratios=(1.0,),
        channel_redis_note=None,
        channel_clients=2000,
        channel_count=1000,
        channel_subscriptions=10,
        channel_events=2000,
        channel_rounds=5,
        channel_latency_events=5,
        resume_channels=100,
        resume_repetitions=30,
    )
    values.update(changes)
    return ChannelFigures(**values)


def test_the_verdicts_follow_the_targets() -> None:
    good = _figures(
        channel_fanout_memory_ratio=1.5,
        channel_fanout_redis_ratio=1.2,
        server_memory_ratio=1.5,
        resume_100_channels_ratio=TARGET_RESUME_100_CHANNELS,
    )
    assert set(channel_passes(good).values()) == {True}
    bad = _figures(
        channel_fanout_memory_ratio=1.49,
        channel_fanout_redis_ratio=1.19,
        server_memory_ratio=1.51,
        resume_100_channels_ratio=3.01,
    )
    assert set(channel_passes(bad).values()) == {False}
    unmeasured = _figures(
        channel_fanout_redis_ratio=None,
        resume_100_channels_ratio=None,
        resume_many_channels_ms=None,
    )
    passes = channel_passes(unmeasured)
    assert passes["channel_fanout_redis"] is None
    assert passes["resume_100_channels"] is None
    assert set(channel_passes(None).values()) == {None}


def test_the_table_names_every_figure() -> None:
    lines = "\n".join(channel_table(_figures(channel_redis_note="skipped"), align))
    for text in (
        "2000 clients per server, each subscribed to 10 of 1000 channels",
        "events delivered/s",
        "publish->delivery p99, ms",
        "server CPU us per delivery",
        "clients' CPU us per delivery",
        "server RSS KiB per client",
        "channel fan-out, memory / plain",
        "channel fan-out, Redis / plain",
        "server memory per client, memory / plain",
        "resume to ready, 100 channels / 1 (Redis)",
        "resume to ready, RESUMING -> OPEN",
        "reconnect, reconnect_now() -> OPEN",
        ">= 1.5",
        ">= 1.2",
        "<= 1.5",
        "<= 3",
        "Redis: skipped",
    ):
        assert text in lines, text


# The client processes (_chanworker): what they count, and what they check off the clock.


def _frame(text: str | bytes, opcode: int = 0x1) -> bytes:
    """A server's (unmasked) frame."""
    body = text.encode() if isinstance(text, str) else text
    if len(body) < 126:
        return bytes([0x80 | opcode, len(body)]) + body
    return bytes([0x80 | opcode, 126]) + len(body).to_bytes(2, "big") + body


def _event(channel: str, event_id: str) -> bytes:
    return _frame(encode_channel_event(channel, event_id, "e" * 100))


def test_a_round_robin_publish_gives_each_channel_its_share() -> None:
    assert _chanworker.per_channel(0, 10, 10) == [1] * 10
    assert _chanworker.per_channel(8, 4, 10) == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    assert _chanworker.per_channel(3, 1, 5) == [0, 0, 0, 1, 0]
    assert _chanworker.per_channel(0, 2000, 1000) == [2] * 1000
    assert _chanworker.per_channel(2, 23, 10) == [2, 2, 3, 3, 3, 2, 2, 2, 2, 2]


def test_every_event_frame_ends_with_the_counted_bytes_and_has_them_nowhere_else() -> None:
    for channel, event_id in (("c00012", "1733000000000000"), ("c00999", "1733000000000-17")):
        frame = _event(channel, event_id)
        assert frame.endswith(_chanworker.EVENT_END)
        assert frame.count(_chanworker.EVENT_END) == 1


_A, _B = "c00001", "c00002"


@pytest.mark.parametrize(
    ("frames", "expected", "wrong"),
    [
        ([_event(_A, "1"), _event(_B, "2"), _event(_A, "3")], {_A: 2, _B: 1}, None),
        ([], {_A: 0, _B: 0}, None),
        ([_event(_A, "1")], {_A: 1, _B: 1}, f"channel {_B}: 0 events"),  # one lost
        ([_event(_A, "1"), _event(_A, "1")], {_A: 2}, "(1 ids), 2 due"),  # a duplicate
        ([_event(_A, "1"), _event(_A, "2")], {_A: 1}, "2 events"),  # one too many
        ([_event("c00003", "1")], {_A: 1}, "not an event of its channels"),
        ([_frame('{"type": "subscribed", "channel": "c00001", "id": "1"}')], {_A: 1}, "not an"),
        ([_frame("[1]")], {_A: 1}, "not an event frame"),
        ([_frame(b"\x03\xf4bye", opcode=0x8)], {_A: 1}, "opcode 8 (1012"),
        ([_event(_A, "1")[:-1]], {_A: 1}, "bytes after the last whole frame"),
    ],
)
def test_every_frame_a_client_got_is_checked(
    frames: list[bytes], expected: dict[str, int], wrong: str | None
) -> None:
    _, found = _chanworker.check_frames(b"".join(frames), expected)
    if wrong is None:
        assert found is None
    else:
        assert found is not None
        assert wrong in found


def test_the_subscribers_of_a_channel_must_agree() -> None:
    agreement = _chanworker._Agreement()
    assert agreement.check(0, {_A: ["1", "2"], _B: ["3"]}) is None
    assert agreement.check(1, {_A: ["1", "2"]}) is None
    found = agreement.check(2, {_B: ["3"], _A: ["2", "1"]})  # the same ids, not the same order
    assert found == f"channel {_A}: client 2 got ['2', '1'], client 0 ['1', '2']"


def test_a_closed_connection_says_its_close() -> None:
    close = _frame(b"\x03\xf4restarting", opcode=0x8)
    assert _chanworker.closed(_event(_A, "1") + close) == "closed by the server: 1012 restarting"
    assert _chanworker.closed(_event(_A, "1")) == (
        "the server closed the connection (no close frame)"
    )


async def test_client_processes_share_the_clients_and_see_a_close() -> None:
    # A real server in this process, two client processes of two clients each:
    # every client subscribed, every event counted and checked, and a restart's
    # close (1012) fails the wait with its code.
    server = ReconnectServer(ReplayLog(start=1), channels=MemoryChannelStore())
    options = ChannelOptions(clients=4, count=10, subscriptions=2, events=10)
    with trio.fail_after(60):
        async with trio.open_nursery() as serving:
            listener = await serving.start(server.serve, "127.0.0.1", 0)
            async with open_clients(
                "memory",
                listener.port,
                clients=options.clients,
                count=options.count,
                subscriptions=options.subscriptions,
                processes=2,
                at_once=2,
            ) as clients:
                assert len(clients.children) == 2
                for start, count in ((0, 10), (3, 1)):
                    await clients.expect(start, count)
                    for number in range(start, start + count):
                        await server.publish(channel_name(number % 10), "e" * 100)
                    arrivals, cpu = await clients.wait("a burst")
                    waiting = sum(1 for due in _Plan(options).expected(start, count) if due)
                    assert len(arrivals) == waiting
                    assert cpu >= 0
                await clients.expect(0, 10)
                await server.publish(channel_name(0), "e" * 100)
                serving.start_soon(server.restart)
                with pytest.raises(FanoutError, match="closed by the server: 1012"):
                    await clients.wait("a burst")
            serving.cancel_scope.cancel()
