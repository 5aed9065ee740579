"""The version 2 handshake and per-channel answers (_chandshake.py, _channel.py), in pairs.

A tiny fake server, written from PROTOCOL.md section 4 with the encoders of
trio_reconnect/_wire.py, answers the client's resume frame; the pure client
(:class:`ChannelHandshake`, one :class:`ChannelCursor` per subscription) reads
the answer. No trio, no sockets.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_reconnect import ResumeProtocolError
from trio_reconnect._chandshake import ChannelHandshake
from trio_reconnect._channel import (
    UNSUPPORTED_REASON,
    ChannelAnswer,
    ChannelOutput,
    ChannelReady,
    ChannelState,
    Phase,
)
from trio_reconnect._protocol import (
    Gap,
    HandshakeOutcome,
    HandshakeResult,
    ServerEvent,
    Snapshot,
    encode_event,
    encode_ready,
    encode_snapshot,
)
from trio_reconnect._wire import (
    ChannelItem,
    Join,
    Leave,
    Presence,
    Refused,
    RefusedCode,
    Subscribe,
    Subscribed,
    Unsubscribed,
    encode_channel_event,
    encode_channel_snapshot,
    encode_ready_v2,
    parse_client_frame,
    parse_resume_v2,
    parse_server_frame,
)

# --------------------------------------------------------------------------- the fake server


@attrs.define
class FakeServer:
    """Channels with consecutive decimal ids, as PROTOCOL.md 4.2 describes."""

    logs: dict[str, list[tuple[str, Any]]] = attrs.Factory(dict)
    default: list[tuple[str, Any]] = attrs.Factory(list)
    presence: dict[str, dict[str, dict[str, Any]]] = attrs.Factory(dict)
    forbidden: set[str] = attrs.Factory(set)
    snapshots: set[str] = attrs.Factory(set)
    #: Where each channel's ids start (after a loss, above every earlier id).
    bases: dict[str, int] = attrs.Factory(dict)
    v1: bool = False
    max_replay: int = 50

    def publish(self, channel: str, data: Any) -> str:
        log = self.logs.setdefault(channel, [])
        event_id = str(int(self.newest(channel)) + 1)
        log.append((event_id, data))
        return event_id

    def newest(self, channel: str) -> str:
        log = self.logs.get(channel)
        return log[-1][0] if log else str(self.bases.get(channel, 0))

    def lose(self, channel: str) -> None:
        """The store lost the channel: ids go on above every earlier one."""
        self.bases[channel] = int(self.newest(channel)) + 1000
        self.logs[channel] = []

    def answer_channel(
        self, channel: str, position: str | None, history: int | None = None
    ) -> list[str]:
        if channel in self.forbidden:
            return [Refused(channel, RefusedCode.FORBIDDEN, "no").encode()]
        log = self.logs.get(channel, [])
        ids = [event_id for event_id, _ in log]
        newest = self.newest(channel)
        out: list[str] = []
        lost = False
        if position is None:
            if history:
                out += [encode_channel_event(channel, i, d) for i, d in log[-history:]]
        elif position == newest:
            pass
        elif (
            position in [str(self.bases.get(channel, 0)), *ids]
            and (len(ids) - ids.index(position) - 1 if position in ids else len(ids))
            <= self.max_replay
        ):
            start = ids.index(position) + 1 if position in ids else 0
            out += [encode_channel_event(channel, i, d) for i, d in log[start:]]
        elif channel in self.snapshots:
            out.append(encode_channel_snapshot(channel, newest, {"state": newest}))
        else:
            lost = True
        if channel in self.presence:
            out.append(Presence(channel, self.presence[channel]).encode())
        out.append(Subscribed(channel, newest, lost).encode())
        return out

    def answer(self, resume_text: str) -> list[str]:
        resume, refused = parse_resume_v2(resume_text)
        out = [r.encode() for r in refused]
        active = []
        if not self.v1:
            for channel, position in resume.channels:
                out += self.answer_channel(channel, position)
                if channel not in self.forbidden:
                    active.append(channel)
        ids = [event_id for event_id, _ in self.default]
        last = resume.last_event_id
        start = ids.index(last) + 1 if last in ids else 0
        out += [encode_event(i, d) for i, d in self.default[start:]]
        newest = self.default[-1][0] if self.default else None
        if self.v1:
            out.append(encode_ready(newest, lost=False))
        else:
            out.append(encode_ready_v2(newest, lost=False, channels=active))
        return out

    def subscribe(self, text: str) -> list[str]:
        frame = parse_client_frame(text)
        assert isinstance(frame, Subscribe)
        return self.answer_channel(frame.channel, frame.last_event_id, frame.history)


# --------------------------------------------------------------------------- the pure client


@attrs.define
class FakeClient:
    """What the driver will do with the pure layer: route each frame to its ChannelState."""

    client_id: str = "c"
    window: int = 16
    last_event_id: str | None = None
    states: dict[str, ChannelState] = attrs.Factory(dict)
    delivered: dict[str, list[Any]] = attrs.Factory(dict)
    changes: dict[str, list[Join | Leave]] = attrs.Factory(dict)
    ends: dict[str, list[ChannelReady | Refused | Unsubscribed]] = attrs.Factory(dict)
    default: list[Any] = attrs.Factory(list)

    def add(
        self, channel: str, last_event_id: str | None = None, history: int | None = None
    ) -> None:
        self.states[channel] = ChannelState(channel, self.window, last_event_id, history)
        self.delivered[channel] = []
        self.changes[channel] = []
        self.ends[channel] = []

    def positions(self) -> dict[str, str]:
        return {
            channel: state.position
            for channel, state in self.states.items()
            if state.position is not None
        }

    def connect(self, server: FakeServer) -> ChannelHandshake:
        for state in self.states.values():
            state.connection_lost()
        positions = self.positions()
        for channel in positions:
            self.states[channel].resumed()
        handshake = ChannelHandshake(self.last_event_id, self.client_id, positions)
        for message in server.answer(handshake.frame()):
            for output in handshake.receive(message):
                if isinstance(output, ServerEvent | Snapshot | Gap):
                    self.default.append(output)
                else:
                    assert output.channel is not None
                    self.hand_on(output.channel, self.states[output.channel].apply(output))
        assert handshake.result is not None
        self.last_event_id = handshake.result.default.ready_id or self.last_event_id
        # Subscriptions never answered go out as subscribe frames after ready.
        for channel, state in self.states.items():
            if state.phase is Phase.PENDING:
                for message in server.subscribe(state.subscribe().encode()):
                    frame = parse_server_frame(message)
                    assert isinstance(frame, ChannelItem | Refused | Presence | Subscribed)
                    assert frame.channel == channel
                    self.hand_on(channel, state.receive(frame))
        return handshake

    def hand_on(self, channel: str, outputs: list[ChannelOutput]) -> None:
        for output in outputs:
            if isinstance(output, ServerEvent | Snapshot | Gap):
                self.delivered[channel].append(output)
            elif isinstance(output, Join | Leave):
                self.changes[channel].append(output)
            else:
                self.ends[channel].append(output)

    @property
    def refused(self) -> dict[str, Refused]:
        return {
            channel: ends[-1]
            for channel, ends in self.ends.items()
            if ends and isinstance(ends[-1], Refused)
        }


def ids_of(items: list[Any]) -> list[str | None]:
    return [item.id if isinstance(item, ServerEvent | Snapshot) else "gap" for item in items]


# --------------------------------------------------------------------------- the handshake


def test_a_client_without_channels() -> None:
    hs = ChannelHandshake(None, "c")
    assert json.loads(hs.frame()) == {
        "type": "resume",
        "lastEventId": None,
        "clientId": "c",
        "channels": {},
    }
    assert hs.receive(encode_ready_v2(None, lost=False, channels=[])) == ()
    assert hs.result is not None
    assert hs.result.v2
    assert hs.result.channels == ()
    assert hs.result.default == HandshakeResult(HandshakeOutcome.FRESH, 0, None)


def test_every_outcome_of_a_resume_with_channels_in_one_round_trip() -> None:
    server = FakeServer(forbidden={"secret"}, snapshots={"board"})
    for n in range(1, 6):
        server.publish("room:1", {"n": n})
        server.publish("board", {"n": n})
        server.publish("feed", {"n": n})
    server.presence["room:1"] = {"ada": {"user": "ada"}, "c": {"user": "me"}}
    hs = ChannelHandshake(
        None, "c", {"room:1": "3", "board": "old", "feed": "old", "secret": "1", "empty": "0"}
    )
    outputs = [out for message in server.answer(hs.frame()) for out in hs.receive(message)]
    assert outputs == [
        ChannelItem("room:1", ServerEvent("4", {"n": 4})),
        ChannelItem("room:1", ServerEvent("5", {"n": 5})),
        Presence("room:1", {"ada": {"user": "ada"}, "c": {"user": "me"}}),
        ChannelReady(Subscribed("room:1", "5"), HandshakeResult(HandshakeOutcome.REPLAYED, 2, "5")),
        ChannelItem("board", Snapshot("5", {"state": "5"})),
        ChannelReady(Subscribed("board", "5"), HandshakeResult(HandshakeOutcome.SNAPSHOT, 0, "5")),
        ChannelReady(
            Subscribed("feed", "5", lost=True),
            HandshakeResult(HandshakeOutcome.LOST, 0, "5"),
            Gap("old", "5"),
        ),
        Refused("secret", RefusedCode.FORBIDDEN, "no"),
        ChannelReady(Subscribed("empty", "0"), HandshakeResult(HandshakeOutcome.REPLAYED, 0, "0")),
    ]
    assert hs.result is not None
    assert hs.result.channels == ("room:1", "board", "feed", "empty")


def test_a_version_1_server_refuses_every_channel_as_unsupported() -> None:
    server = FakeServer(v1=True, default=[("1", "a"), ("2", "b")])
    hs = ChannelHandshake("1", "c", {"room:1": "3", "room:2": "4"})
    outputs = [out for message in server.answer(hs.frame()) for out in hs.receive(message)]
    assert outputs == [
        ServerEvent("2", "b"),
        Refused("room:1", RefusedCode.UNSUPPORTED, UNSUPPORTED_REASON),
        Refused("room:2", RefusedCode.UNSUPPORTED, UNSUPPORTED_REASON),
    ]
    assert hs.result is not None
    assert not hs.result.v2
    assert hs.result.default == HandshakeResult(HandshakeOutcome.REPLAYED, 1, "2")


def test_a_version_1_gap_comes_before_the_unsupported_refusals() -> None:
    hs = ChannelHandshake("1", "c", {"a": "1"})
    assert hs.receive(encode_ready("9", lost=True)) == (
        Gap("1", "9"),
        Refused("a", RefusedCode.UNSUPPORTED, UNSUPPORTED_REASON),
    )


def test_the_default_stream_replays_after_the_channels() -> None:
    server = FakeServer(default=[("1", "x"), ("2", "y")])
    server.publish("a", 1)
    hs = ChannelHandshake(None, "c", {"a": "0"})
    outputs = [out for message in server.answer(hs.frame()) for out in hs.receive(message)]
    assert outputs[0] == ChannelItem("a", ServerEvent("1", 1))
    assert outputs[2:] == [ServerEvent("1", "x"), ServerEvent("2", "y")]
    assert hs.result is not None
    assert hs.result.default.outcome is HandshakeOutcome.REPLAYED


def test_live_frames_of_an_answered_channel_may_come_before_ready() -> None:
    hs = ChannelHandshake(None, "c", {"a": "1", "b": "1"})
    frames = [
        Subscribed("a", "1").encode(),
        encode_channel_event("a", "2", "live"),
        Join("a", "k", {}).encode(),
        encode_channel_event("b", "2", "replayed"),
        Subscribed("b", "2").encode(),
        Leave("a", "k").encode(),
        Unsubscribed("a", "forbidden", "revoked").encode(),
        encode_ready_v2(None, lost=False, channels=["b"]),
    ]
    outputs = [out for message in frames for out in hs.receive(message)]
    assert outputs[1:3] == [ChannelItem("a", ServerEvent("2", "live")), Join("a", "k", {})]
    assert outputs[5:] == [Leave("a", "k"), Unsubscribed("a", "forbidden", "revoked")]
    assert hs.result is not None
    assert hs.result.channels == ("b",)


def test_the_handshake_checks_what_the_client_sends() -> None:
    with pytest.raises(ValueError, match="clientId"):
        ChannelHandshake(None, "x" * 129)
    with pytest.raises(ValueError, match="channel name"):
        ChannelHandshake(None, "c", {"": "1"})


def test_replays_beyond_max_replay_are_a_protocol_error() -> None:
    hs = ChannelHandshake(None, "c", {"a": "0"}, max_replay=2)
    hs.receive(encode_channel_event("a", "1", None))
    hs.receive(encode_channel_event("a", "2", None))
    with pytest.raises(ResumeProtocolError, match="max_replay=2"):
        hs.receive(encode_channel_event("a", "3", None))


E = encode_channel_event
READY_A = encode_ready_v2(None, lost=False, channels=["a"])
READY_AB = encode_ready_v2(None, lost=False, channels=["a", "b"])
SUB_A = Subscribed("a", "5").encode()
SUB_B = Subscribed("b", "5").encode()

OUT_OF_ORDER = {
    "not JSON": ["{nope"],
    "unknown type": ['{"type": "hello"}'],
    "a malformed subscribed": ['{"type": "subscribed", "channel": "a", "id": null}'],
    "a malformed refused": ['{"type": "refused", "channel": "a", "code": "nope"}'],
    "a refused without channel": ['{"type": "refused", "channel": null, "code": "invalid"}'],
    "interleaved channels": [E("a", "1", 0), E("b", "1", 0)],
    "an event after the member list": [Presence("a", {}).encode(), E("a", "1", 0)],
    "a second member list": [Presence("a", {}).encode(), Presence("a", {}).encode()],
    "a snapshot after events": [E("a", "1", 0), encode_channel_snapshot("a", "2", 0)],
    "a second snapshot": [encode_channel_snapshot("a", "2", 0)] * 2,
    "refused after events": [E("a", "1", 0), Refused("a", RefusedCode.LIMIT).encode()],
    "a channel not asked for": [E("z", "1", 0)],
    "a second answer": [SUB_A, SUB_A],
    "a subscribed inside another channel's answer": [E("a", "1", 0), SUB_B],
    "a subscribed of a channel not asked for": [Subscribed("z", "5").encode()],
    "a snapshot after subscribed": [SUB_A, encode_channel_snapshot("a", "6", 0)],
    "a join before subscribed": [Join("a", "k", {}).encode()],
    "a leave before subscribed": [E("a", "1", 0), Leave("a", "k").encode()],
    "an ack before ready": ['{"type": "ack", "msgId": "1", "channel": "a", "id": "2"}'],
    "a nack before ready": ['{"type": "nack", "msgId": "1", "channel": "a", "code": "invalid"}'],
    "a channel after the default stream": [encode_event("1", 0), SUB_A],
    "the default stream inside a channel's answer": [E("a", "1", 0), encode_event("1", 0)],
    "ready inside a channel's answer": [E("a", "1", 0), READY_A],
    "ready before every channel was answered": [SUB_A, READY_A],
    "ready listing a refused channel": [SUB_A, Refused("b", RefusedCode.LIMIT).encode(), READY_AB],
    "ready missing an active channel": [SUB_A, SUB_B, READY_A],
    "ready listing a channel twice": [
        SUB_A,
        SUB_B,
        '{"type": "ready", "id": null, "channels": ["a", "a"]}',
    ],
    "ready with channels not a list": [
        SUB_A,
        SUB_B,
        '{"type": "ready", "id": null, "channels": "a"}',
    ],
    "ready without channels after answers": [SUB_A, SUB_B, encode_ready(None, lost=False)],
    "a v1 snapshot after v1 events": [SUB_A, SUB_B, encode_event("1", 0), encode_snapshot("2", 0)],
    "a malformed ready": [SUB_A, SUB_B, '{"type": "ready", "lost": false, "channels": ["a", "b"]}'],
    "a message after ready": [SUB_A, SUB_B, READY_AB, "hello"],
}


@pytest.mark.parametrize("frames", OUT_OF_ORDER.values(), ids=OUT_OF_ORDER.keys())
def test_malformed_or_out_of_order_handshakes_fail_clearly(frames: list[str]) -> None:
    hs = ChannelHandshake(None, "c", {"a": "0", "b": "0"})
    with pytest.raises(ResumeProtocolError) as caught:
        for message in frames:
            hs.receive(message)
    assert len(str(caught.value)) < 300


def test_a_channel_answer_read_after_ready() -> None:
    answer = ChannelAnswer("a", None)
    assert answer.receive(Refused("a", RefusedCode.LIMIT)) == Refused("a", RefusedCode.LIMIT)
    assert answer.done
    with pytest.raises(ResumeProtocolError, match="after its answer ended"):
        answer.receive(Subscribed("a", "1"))
    fresh = ChannelAnswer("a", None)
    ready = fresh.receive(Subscribed("a", "9"))
    assert ready == ChannelReady(
        Subscribed("a", "9"), HandshakeResult(HandshakeOutcome.FRESH, 0, "9")
    )
    with pytest.raises(ResumeProtocolError, match="unsubscribed"):
        ChannelAnswer("a", None).receive(Unsubscribed("a"))


# --------------------------------------------------------------------------- pairs over reconnects


def test_a_subscription_across_reconnects_gets_each_event_once() -> None:
    server = FakeServer()
    for n in range(3):
        server.publish("room", n)
    client = FakeClient()
    client.add("room")  # fresh: starts at the channel's newest id, "3"
    client.connect(server)
    assert client.states["room"].position == "3"
    assert client.delivered["room"] == []
    server.publish("room", 3)
    server.publish("room", 4)
    client.connect(server)  # resumed in the resume frame's map
    assert ids_of(client.delivered["room"]) == ["4", "5"]
    client.connect(server)  # nothing missed
    assert ids_of(client.delivered["room"]) == ["4", "5"]
    server.lose("room")
    server.publish("room", "after")
    client.connect(server)
    assert client.delivered["room"][2:] == [Gap("5", "1006")]
    assert client.states["room"].position == "1006"


def test_a_fresh_subscription_with_history() -> None:
    server = FakeServer()
    for n in range(10):
        server.publish("room", n)
    client = FakeClient()
    client.add("room", history=3)
    client.connect(server)
    assert ids_of(client.delivered["room"]) == ["8", "9", "10"]
    server.publish("room", 10)
    client.connect(server)
    assert ids_of(client.delivered["room"]) == ["8", "9", "10", "11"]


def test_a_resubscribes_member_list_changes_only_what_changed() -> None:
    server = FakeServer(presence={"lobby": {"ada": {"n": 1}, "bob": {"n": 2}}})
    client = FakeClient()
    client.add("lobby")
    client.connect(server)
    assert client.changes["lobby"] == [
        Join("lobby", "ada", {"n": 1}),
        Join("lobby", "bob", {"n": 2}),
    ]
    client.connect(server)  # a reconnect within the grace: the same list
    assert len(client.changes["lobby"]) == 2
    server.presence["lobby"] = {"bob": {"n": 2}, "cy": {"n": 3}}
    client.connect(server)
    assert client.changes["lobby"][2:] == [Leave("lobby", "ada"), Join("lobby", "cy", {"n": 3})]
    assert dict(client.states["lobby"].members) == {"bob": {"n": 2}, "cy": {"n": 3}}


def test_a_refused_subscription_stays_out_of_the_map() -> None:
    server = FakeServer(forbidden={"secret"})
    client = FakeClient()
    client.add("secret")
    client.connect(server)
    assert client.refused["secret"] == Refused("secret", RefusedCode.FORBIDDEN, "no")
    assert client.positions() == {}


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.sampled_from("abc"), st.integers(1, 8)),
            st.tuples(st.just("lose"), st.sampled_from("abc"), st.just(0)),
            st.tuples(st.just("reconnect"), st.just(""), st.just(0)),
        ),
        max_size=25,
    ),
    st.integers(1, 6),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_per_channel_delivery_is_in_order_and_once(
    script: list[tuple[str, str, int]], max_replay: int
) -> None:
    """Whatever the server's log does, each channel gets its events once, in order, or a gap."""
    server = FakeServer(snapshots={"c"}, max_replay=max_replay)
    client = FakeClient()
    for channel in "abc":
        client.add(channel)
    client.connect(server)
    start = {channel: server.newest(channel) for channel in "abc"}
    for op, channel, count in script:
        if op == "publish":
            for _ in range(count):
                server.publish(channel, None)
        elif op == "lose":
            server.lose(channel)
        else:
            client.connect(server)
    client.connect(server)
    for channel in "abc":
        items = client.delivered[channel]
        events = [int(item.id) for item in items if isinstance(item, ServerEvent)]
        assert events == sorted(set(events))  # in order, each once
        assert client.states[channel].position == server.newest(channel)
        if not any(isinstance(item, Gap | Snapshot) for item in items):
            assert events == list(range(int(start[channel]) + 1, int(server.newest(channel)) + 1))


VALID_SCRIPT = FakeServer(
    logs={"a": [("1", 1), ("2", 2)], "b": [("7", 7)]},
    default=[("1", "x")],
    presence={"a": {"k": {}}},
    forbidden={"c"},
).answer(ChannelHandshake(None, "c", {"a": "0", "b": "6", "c": "1"}).frame())


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_a_mangled_server_script_finishes_or_fails_clearly(data: st.DataObject) -> None:
    frames = list(VALID_SCRIPT)
    mutation = data.draw(st.sampled_from(["drop", "duplicate", "swap", "replace"]))
    index = data.draw(st.integers(0, len(frames) - 1))
    if mutation == "drop":
        del frames[index]
    elif mutation == "duplicate":
        frames.insert(index, frames[index])
    elif mutation == "swap" and index + 1 < len(frames):
        frames[index], frames[index + 1] = frames[index + 1], frames[index]
    elif mutation == "replace":
        frames[index] = data.draw(st.sampled_from([*VALID_SCRIPT, "{}", "null", '{"type": 1}']))
    hs = ChannelHandshake(None, "c", {"a": "0", "b": "6", "c": "1"})
    try:
        for message in frames:
            hs.receive(message)
    except ResumeProtocolError:
        return
    # If it finished, it finished consistently.
    if hs.result is not None:
        assert set(hs.result.channels or ()) <= {"a", "b"}
