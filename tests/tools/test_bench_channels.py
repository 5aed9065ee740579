"""The channel figures' pieces (issue 18): who subscribes to what, who expects what, the report.

The figures themselves run for real, at a tiny size, in tests/tools/test_bench.py.
Nothing here asserts a speed.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs
import pytest

from trio_reconnect._tools.bench import _crowd
from trio_reconnect._tools.bench._chanfanout import ChannelOptions, _Plan
from trio_reconnect._tools.bench._chanreport import (
    TARGET_RESUME_100_CHANNELS,
    ChannelFigures,
    channel_passes,
    channel_table,
)
from trio_reconnect._tools.bench._chanserve import channel_name
from trio_reconnect._tools.bench._report import align
from trio_reconnect._wire import Subscribe, parse_client_frame, parse_resume_v2


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
        ">= 1.5",
        ">= 1.2",
        "<= 1.5",
        "<= 3",
        "Redis: skipped",
    ):
        assert text in lines, text
