"""A Node client written from the protocol page alone, against our ``serve``.

Each test runs one scenario of ``node/client.mjs`` (real processes, loopback)
and judges the JSON lines it printed: what ``serve`` sent, frame by frame.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.interop._peers import Line, NodeClient, Serve, needs_node, one, run_client, serving

pytestmark = needs_node

#: Presence grace of the shared ``serve``, seconds.
GRACE = 1.0


@pytest.fixture(scope="module")
def serve() -> Iterator[Serve]:
    """One ``serve`` for the module: a tick every 0.1 s, presence on ``pres:*``."""
    yield from serving(
        "--interval", "0.1", "--presence", "pres:*", "--presence-grace", str(GRACE)
    )  # fmt: skip


def bare(frames: list[Line]) -> list[Line]:
    """Frames without the time the Node client received them."""
    return [{k: v for k, v in frame.items() if k != "t"} for frame in frames]


def line_with(lines: list[Line], key: str) -> Line:
    (found,) = [line for line in lines if key in line]
    return found


def test_v1_fresh_connect_then_resume_replays_exactly_the_missed_events(serve: Serve) -> None:
    lines = run_client("v1-resume", serve.url)
    fresh = one(lines, "fresh")
    assert bare(fresh["frames"]) == bare([fresh["ready"]])  # ticks only after ready
    assert fresh["ready"]["lost"] is False
    assert "channels" not in fresh["ready"]  # a v1 client sees no v2 key

    run = line_with(lines, "resumed")
    *replay, ready = bare(run["resumed"]["frames"])
    assert ready == {"type": "ready", "id": replay[-1]["id"], "lost": False}
    observed = bare(run["observer"])  # a connection that stayed up all along
    ids = [event["id"] for event in observed]
    missed = observed[ids.index(run["from"]) + 1 : ids.index(ready["id"]) + 1]
    assert replay == missed
    assert len(replay) >= 2  # 0.6 s away from a 0.1 s ticker

    # An id no log issued: no snapshot in serve, so the third case: lost.
    unknown = one(lines, "unknown")
    assert one(lines, "pong") == "are you there"
    assert bare(unknown["frames"]) == [
        {"type": "ready", "id": unknown["ready"]["id"], "lost": True}
    ]


def test_replay_and_live_events_meet_without_a_gap_or_a_duplicate(serve: Serve) -> None:
    lines = run_client("v2-race", serve.url)
    run = line_with(lines, "ids")
    start, last = int(run["start"]), int(run["last"])
    assert [int(i) for i in run["ids"]] == list(range(start + 1, last + 1))
    assert run["data"] == list(range(300))


def _groups(frames: list[Line]) -> dict[str, list[Line]]:
    """Handshake frames per channel; each channel's answer ends at its ``subscribed``."""
    groups: dict[str, list[Line]] = {}
    current: list[Line] = []
    for frame in frames:
        current.append(frame)
        if frame["type"] == "subscribed":
            groups[frame["channel"]] = current
            current = []
    assert current == [], current
    return groups


def test_v2_identity_and_resume_with_channels(serve: Serve) -> None:
    lines = run_client("v2-resume", serve.url)
    first = one(lines, "first")
    assert bare(first["frames"]) == [{**bare([first["ready"]])[0], "channels": []}]
    run = line_with(lines, "resumed")
    room, empty, acks = run["room"], run["empty"], run["acks"]
    room_start = one(lines, "subscribeRoom")["match"]
    empty_start = one(lines, "subscribeEmpty")["match"]
    # "the id just before the first one it will issue", then consecutive integers
    assert [int(ack["id"]) for ack in acks[:5]] == [int(room_start["id"]) + n for n in range(1, 6)]
    assert [int(ack["id"]) for ack in acks[5:]] == [int(empty_start["id"]) + n for n in (1, 2)]
    assert bare(run["live"]) == [
        {"type": "event", "channel": room, "id": ack["id"], "data": {"n": n}}
        for n, ack in enumerate(acks[:3])
    ]
    sent = run["resumed"]["sent"]
    assert sent["clientId"] == first["sent"]["clientId"]
    assert sent["channels"] == {room: acks[2]["id"], empty: empty_start["id"]}
    *answers, ready = bare(run["resumed"]["frames"])
    assert ready["type"] == "ready"
    assert ready["lost"] is False
    assert sorted(ready["channels"]) == sorted([room, empty])

    def events(channel: str, numbers: range) -> list[Line]:
        return [
            {"type": "event", "channel": channel, "id": acks[n]["id"], "data": {"n": n}}
            for n in numbers
        ]

    def subscribed(channel: str, last: int) -> Line:
        return {"type": "subscribed", "channel": channel, "id": acks[last]["id"], "lost": False}

    assert _groups(answers) == {
        room: [*events(room, range(3, 5)), subscribed(room, 4)],
        empty: [*events(empty, range(5, 7)), subscribed(empty, 6)],
    }


def test_v2_subscribe_history_unsubscribe_and_refusals(serve: Serve) -> None:
    lines = run_client("v2-subscribe", serve.url)
    acks = one(lines, "acks")
    room = acks[0]["channel"]

    def from_(first: int) -> list[Line]:
        replay = [
            {"type": "event", "channel": room, "id": acks[n]["id"], "data": n}
            for n in range(first, 5)
        ]
        return [
            *replay,
            {"type": "subscribed", "channel": room, "id": acks[4]["id"], "lost": False},
        ]

    assert bare(one(lines, "history")) == from_(2)  # history 3: the newest three
    assert bare(one(lines, "again")) == from_(2)  # a re-subscribe from acks[1]
    assert bare(one(lines, "unsubscribe")) == [{"type": "unsubscribed", "channel": room}]
    assert one(lines, "afterUnsubscribe") == []
    for line in lines:
        if "badName" in line:
            (refused,) = line["answer"]
            assert (refused["type"], refused["code"]) == ("refused", "invalid"), line
    (missing,) = one(lines, "missingChannel")
    assert (missing["type"], missing["code"]) == ("refused", "invalid")
    assert one(lines, "stillOpen") is True
    limit = one(lines, "limit")
    assert set(limit) == {"subscribed", "refused:limit"}  # some accepted, the rest: limit
    assert limit["subscribed"] + limit["refused:limit"] == 3000
    assert one(lines, "stillOpenAfterLimit") is True


def test_v2_acknowledged_publish_is_applied_once_and_bad_frames_are_nacked(serve: Serve) -> None:
    lines = run_client("v2-publish", serve.url)
    run = line_with(lines, "first")
    first, repeat, again = run["first"], run["repeat"], run["afterReconnect"]
    assert first["id"] == repeat["id"] == again["id"]  # the same msgId: the first append's id
    assert int(run["second"]["id"]) == int(first["id"]) + 1
    other = run["otherClient"]  # the same msgId from another clientId is its own publish
    assert other["id"] not in (first["id"], run["second"]["id"])
    assert [(event["id"], event["data"]) for event in run["read"]] == [
        (first["id"], {"hello": "wörld"}),
        (run["second"]["id"], "two"),
        (other["id"], {"hello": "wörld"}),
    ]

    def nack(key: str) -> Line:
        (frame,) = bare(one(lines, key))
        assert (frame["type"], frame["code"]) == ("nack", "invalid"), frame
        return frame

    assert nack("badChannel")["msgId"] == "b1"
    assert nack("noData")["msgId"] == "b2"
    nack("noMsgId")
    nack("numericMsgId")
    # After ready, a frame that is not the protocol's is the application's message.
    assert one(lines, "notJson") == one(lines, "unknownType") == []
    assert one(lines, "stillOpen") is True


def test_presence_joins_leaves_and_no_flapping(serve: Serve) -> None:
    lines = run_client("presence", serve.url)
    ids = one(lines, "ids")
    a, b = ids["a"], ids["b"]
    presence, subscribed = bare(one(lines, "aSubscribe"))
    room = subscribed["channel"]
    assert presence == {"type": "presence", "channel": room, "members": {a: {}}}
    assert bare(one(lines, "bSubscribe"))[0]["members"] == {a: {}, b: {}}
    assert bare(one(lines, "aSeesJoin")) == [
        {"type": "join", "channel": room, "clientId": b, "info": {}}
    ]
    # b drops without a close and resumes within the grace: nobody sees it flap.
    resumed = one(lines, "bResumed")
    assert [frame["type"] for frame in resumed["frames"]] == ["presence", "subscribed", "ready"]
    assert set(resumed["frames"][0]["members"]) == {a, b}
    assert one(lines, "aDuringHop") == []

    def leave(key: str, who: str) -> float:
        line = line_with(lines, key)
        (frame,) = line[key]
        assert bare([frame]) == [{"type": "leave", "channel": room, "clientId": who}]
        return float(frame["t"] - line["start"]) / 1000

    assert leave("aAfterUnsubscribe", b) < 0.5  # at once
    assert leave("aAfterCleanClose", one(lines, "c")) < 0.5  # a clean close: at once
    assert GRACE * 0.8 <= leave("aAfterDrop", one(lines, "d")) < GRACE + 3  # after the grace


@pytest.fixture
def draining() -> Iterator[Serve]:
    yield from serving("--interval", "0.1", "--drain-timeout", "3")


def test_sigterm_drain_closes_with_1012_and_a_hint_and_refuses_with_503(draining: Serve) -> None:
    client = NodeClient.start("drain", draining.url)
    try:
        client.read_until("ready")
        status, output = draining.stop()
        lines = client.finish()
    finally:
        client.close()
    assert status == 0, output
    closes: list[dict[str, Any]] = one(lines, "closes")
    assert len(closes) == 2
    hints = []
    for close in closes:
        assert close["code"] in (1012, 1001)
        assert len(close["reason"].encode()) <= 123
        hint = json.loads(close["reason"])
        assert isinstance(hint, dict)
        assert isinstance(hint["retryAfter"], int | float)
        assert hint["retryAfter"] >= 0
        hints.append(hint["retryAfter"])
    # Section 1c with serve's defaults (base 0.25 s, window max(2 s, N / 1000)):
    # one client per slot, 250 + (slot + u) * 2000 / 2 ms.
    first, second = sorted(hints)
    assert 250 <= first < 1250 <= second < 2250, hints
    refused = one(lines, "duringDrain")
    assert refused["status"] == 503, refused
    assert int(refused["headers"]["retry-after"]) >= 1  # delta-seconds
