"""The resume handshake codec (trio_reconnect/_protocol.py; PROTOCOL.md section 2). Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_reconnect import ResumeProtocolError
from trio_reconnect._exceptions import AttemptError, ReconnectError
from trio_reconnect._protocol import (
    Gap,
    HandshakeOutcome,
    HandshakeResult,
    RecentIds,
    ResumeHandshake,
    ServerEvent,
    Snapshot,
    encode_event,
    encode_ready,
    encode_resume,
    encode_snapshot,
    parse_live,
    parse_resume,
)

HUGE = "x" * 1_000_000
#: An error message quotes at most 80 characters of a frame (plus its own words
#: and a "(N long)" suffix), so it stays well under this length.
MESSAGE_LIMIT = 200


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def finish(handshake: ResumeHandshake, *frames: str) -> list[ServerEvent | Snapshot | Gap | None]:
    return [handshake.receive(f) for f in frames]


# --------------------------------------------------------------------------- the four outcomes


def test_fresh() -> None:
    hs = ResumeHandshake(None)
    assert hs.frame() == encode_resume(None)
    assert json.loads(hs.frame()) == {"type": "resume", "lastEventId": None}
    assert hs.result is None
    assert hs.receive(encode_ready(None, lost=False)) is None
    assert hs.result == HandshakeResult(HandshakeOutcome.FRESH, 0, None)


def test_replayed_n_events() -> None:
    hs = ResumeHandshake("41")
    assert json.loads(hs.frame()) == {"type": "resume", "lastEventId": "41"}
    items = finish(
        hs,
        encode_event("42", {"n": 42}),
        encode_event("43", [1, 2]),
        encode_event("44", None),
        encode_ready("44", lost=False),
    )
    assert items == [
        ServerEvent("42", {"n": 42}),
        ServerEvent("43", [1, 2]),
        ServerEvent("44", None),
        None,
    ]
    assert hs.result == HandshakeResult(HandshakeOutcome.REPLAYED, 3, "44")


def test_replayed_from_nothing() -> None:
    # No lastEventId, but the server replays its (short) log: replayed, not fresh.
    hs = ResumeHandshake(None)
    assert finish(hs, encode_event("1", "a"), encode_ready("1", lost=False)) == [
        ServerEvent("1", "a"),
        None,
    ]
    assert hs.result == HandshakeResult(HandshakeOutcome.REPLAYED, 1, "1")


def test_replayed_zero_when_up_to_date() -> None:
    hs = ResumeHandshake("41")
    assert hs.receive(encode_ready("41", lost=False)) is None
    assert hs.result == HandshakeResult(HandshakeOutcome.REPLAYED, 0, "41")


def test_snapshot() -> None:
    hs = ResumeHandshake("3")
    assert hs.receive(encode_snapshot("57", {"state": [1, 2, 3]})) == Snapshot(
        "57", {"state": [1, 2, 3]}
    )
    assert hs.result is None
    assert hs.receive(encode_ready("57", lost=False)) is None
    assert hs.result == HandshakeResult(HandshakeOutcome.SNAPSHOT, 0, "57")


def test_snapshot_of_an_empty_log() -> None:
    hs = ResumeHandshake(None)
    assert hs.receive(encode_snapshot(None, {})) == Snapshot(None, {})
    assert hs.receive(encode_ready(None, lost=False)) is None
    assert hs.result == HandshakeResult(HandshakeOutcome.SNAPSHOT, 0, None)


def test_events_after_a_snapshot_are_accepted() -> None:
    hs = ResumeHandshake("3")
    items = finish(
        hs,
        encode_snapshot("57", "s"),
        encode_event("58", "e58"),
        encode_event("59", "e59"),
        encode_ready("59", lost=False),
    )
    assert items == [Snapshot("57", "s"), ServerEvent("58", "e58"), ServerEvent("59", "e59"), None]
    assert hs.result == HandshakeResult(HandshakeOutcome.SNAPSHOT, 2, "59")


def test_lost_gives_a_gap_with_the_last_id() -> None:
    hs = ResumeHandshake("41")
    assert hs.receive(encode_ready("90", lost=True)) == Gap("41", "90")
    assert hs.result == HandshakeResult(HandshakeOutcome.LOST, 0, "90")


def test_lost_without_a_previous_id() -> None:
    hs = ResumeHandshake(None)
    assert hs.receive(encode_ready("90", lost=True)) == Gap(None, "90")
    assert hs.result == HandshakeResult(HandshakeOutcome.LOST, 0, "90")


def test_lost_wins_over_events_and_snapshot() -> None:
    hs = ResumeHandshake("1")
    finish(hs, encode_snapshot("50", None), encode_event("51", None))
    assert hs.receive(encode_ready("51", lost=True)) == Gap("1", "51")
    assert hs.result == HandshakeResult(HandshakeOutcome.LOST, 1, "51")


def test_lenient_but_specified_frame_shapes() -> None:
    # lost absent means false; data absent means null; unknown keys are ignored;
    # key order and whitespace do not matter.
    hs = ResumeHandshake("1")
    assert hs.receive('{"id": "2", "type": "event", "extra": 1}') == ServerEvent("2", None)
    assert hs.receive(' { "type" : "ready" , "id" : "2" } ') is None
    assert hs.result == HandshakeResult(HandshakeOutcome.REPLAYED, 1, "2")
    hs = ResumeHandshake(None)
    assert hs.receive('{"type": "snapshot", "id": null}') == Snapshot(None, None)
    assert hs.receive('{"type": "ready", "id": null, "lost": false}') is None


def test_unicode_escaped_type_is_read_during_the_handshake() -> None:
    hs = ResumeHandshake(None)
    assert hs.receive('{"type": "\\u0065vent", "id": "1"}') == ServerEvent("1", None)


# --------------------------------------------------------------------------- malformed frames


def ready() -> str:
    return encode_ready("1", lost=False)


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ("not json", "not a JSON object"),
        ("", "not a JSON object"),
        ("{", "not a JSON object"),
        ("[" * 100_000, "not a JSON object"),
        (b'{"type": "ready", "id": null, "lost": false}', "not a JSON object"),
        (b"", "not a JSON object"),
        ("[]", "not a JSON object"),
        ('[{"type": "ready", "id": null}]', "not a JSON object"),
        ('"ready"', "not a JSON object"),
        ("null", "not a JSON object"),
        ("42", "not a JSON object"),
        ("{}", "unknown frame type"),
        ('{"id": "1"}', "unknown frame type"),
        ('{"type": null, "id": "1"}', "unknown frame type"),
        ('{"type": "EVENT", "id": "1"}', "unknown frame type"),
        ('{"type": "resume", "lastEventId": null}', "unknown frame type"),
        ('{"type": "message", "data": 1}', "unknown frame type"),
        ('{"type": ["event"], "id": "1"}', "unknown frame type"),
        ('{"type": "event"}', "event without a string id"),
        ('{"type": "event", "id": null}', "event without a string id"),
        ('{"type": "event", "id": 42}', "event without a string id"),
        ('{"type": "event", "id": ["42"]}', "event without a string id"),
        ('{"type": "event", "id": true}', "event without a string id"),
        ('{"type": "snapshot", "data": {}}', "snapshot without an id"),
        ('{"type": "snapshot", "id": 57}', "snapshot without an id"),
        ('{"type": "snapshot", "id": {}}', "snapshot without an id"),
        ('{"type": "ready", "lost": false}', "malformed ready frame"),
        ('{"type": "ready", "id": 1, "lost": false}', "malformed ready frame"),
        ('{"type": "ready", "id": null, "lost": "yes"}', "malformed ready frame"),
        ('{"type": "ready", "id": null, "lost": 0}', "malformed ready frame"),
        ('{"type": "ready", "id": null, "lost": null}', "malformed ready frame"),
    ],
)
def test_malformed_frames_raise(message: str | bytes, match: str) -> None:
    hs = ResumeHandshake("0")
    with pytest.raises(ResumeProtocolError, match=match):
        hs.receive(message)
    assert hs.result is None


def test_resume_protocol_error_is_an_attempt_error() -> None:
    assert issubclass(ResumeProtocolError, AttemptError)
    assert issubclass(ResumeProtocolError, ReconnectError)


def test_second_snapshot_raises() -> None:
    hs = ResumeHandshake(None)
    hs.receive(encode_snapshot("1", None))
    with pytest.raises(ResumeProtocolError, match="snapshot after a snapshot"):
        hs.receive(encode_snapshot("2", None))


def test_snapshot_after_events_raises() -> None:
    hs = ResumeHandshake("0")
    hs.receive(encode_event("1", None))
    with pytest.raises(ResumeProtocolError, match="snapshot after a snapshot or replayed events"):
        hs.receive(encode_snapshot("2", None))


@pytest.mark.parametrize(
    "message",
    [
        encode_event("2", None),
        encode_snapshot("2", None),
        encode_ready("2", lost=False),
        "not json",
        b"bytes",
        '{"type": "message"}',
    ],
)
def test_any_message_after_ready_raises(message: str | bytes) -> None:
    hs = ResumeHandshake("1")
    hs.receive(ready())
    result = hs.result
    with pytest.raises(ResumeProtocolError, match="handshake already finished"):
        hs.receive(message)
    assert hs.result is result


@pytest.mark.parametrize(
    "message",
    [
        HUGE,
        HUGE.encode(),
        "[" + HUGE,
        json.dumps({"type": "nope", "data": HUGE}),
        json.dumps({"type": "event", "id": 1, "data": HUGE}),
        json.dumps({"type": "snapshot", "data": HUGE}),
        json.dumps({"type": "ready", "id": None, "lost": "yes", "data": HUGE}),
        json.dumps({"type": "ready", "data": HUGE}),
    ],
)
def test_error_messages_never_quote_a_huge_frame(message: str | bytes) -> None:
    hs = ResumeHandshake(None)
    with pytest.raises(ResumeProtocolError) as info:
        hs.receive(message)
    text = str(info.value)
    assert len(text) <= MESSAGE_LIMIT
    assert f"({len(message)} long)" in text
    assert "x" * 80 not in text


def test_error_message_quotes_a_short_frame_whole() -> None:
    with pytest.raises(ResumeProtocolError) as info:
        ResumeHandshake(None).receive('{"type": "nope"}')
    assert str(info.value) == 'unknown frame type before ready: \'{"type": "nope"}\''


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
_ids = st.one_of(st.none(), st.text(max_size=4), st.integers(), st.booleans())
_frames = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=40),
    st.builds(
        lambda kind, fid, lost, data, drop: json.dumps(
            {
                k: v
                for k, v in {"type": kind, "id": fid, "lost": lost, "data": data}.items()
                if k not in drop
            }
        ),
        st.sampled_from(["event", "snapshot", "ready", "resume", "Event", ""]) | _json,
        _ids,
        st.one_of(st.booleans(), st.none(), st.text(max_size=3), st.integers()),
        _json,
        st.sets(st.sampled_from(["type", "id", "lost", "data"])),
    ),
)


@given(st.one_of(st.none(), st.text(max_size=5)), st.lists(_frames, max_size=6))
@settings(max_examples=300, deadline=None)
def test_handshake_receive_returns_an_item_or_raises_protocol_error(
    last: str | None, frames: list[str | bytes]
) -> None:
    hs = ResumeHandshake(last)
    error: ResumeProtocolError | None = None
    for message in frames:
        try:
            item = hs.receive(message)
        except ResumeProtocolError as exc:
            error = exc
            break
        assert item is None or isinstance(item, ServerEvent | Snapshot | Gap)
        if isinstance(item, Gap):
            assert item.last_id == last
            assert hs.result is not None
            assert hs.result.outcome is HandshakeOutcome.LOST
        if hs.result is not None:
            assert isinstance(hs.result.replayed, int)
    if error is not None:
        assert len(str(error)) <= MESSAGE_LIMIT


# --------------------------------------------------------------------------- parse_live


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (encode_event("42", {"a": 1}), ServerEvent("42", {"a": 1})),
        ('{"type": "event", "id": "7"}', ServerEvent("7", None)),
        ('{"type":"event","id":"","data":[]}', ServerEvent("", [])),
        ('{"data": "x", "id": "8", "type": "event", "extra": true}', ServerEvent("8", "x")),
    ],
)
def test_parse_live_event(message: str, expected: ServerEvent) -> None:
    assert parse_live(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "hello",
        "",
        "event",
        '"event"',
        '["event"]',
        '["event", {"type": "event", "id": "1"}]',
        '{"type": "message", "data": "event"}',
        '{"type": "message", "note": "\\"event\\""}',
        '{"type": "event"}',
        '{"type": "event", "id": 42}',
        '{"type": "event", "id": null}',
        '{"type": "event", "id": ["1"]}',
        '{"type": "snapshot", "id": "1", "note": "event"}',
        '{"type": "ready", "id": "1", "lost": false, "x": "event"}',
        '{"type": "event", "id": "1"',
        '{"type": "event", "id": "1"}garbage',
        '"event"' + "[" * 100_000,
        b'{"type": "event", "id": "1"}',
        b"",
        b"\xff\x00",
    ],
)
def test_parse_live_returns_other_messages_unchanged(message: str | bytes) -> None:
    assert parse_live(message) is message


def test_parse_live_unicode_escaped_type() -> None:
    assert parse_live('{"type": "\\u0065vent", "id": "1"}') == ServerEvent("1", None)


@given(st.one_of(st.text(max_size=80), st.binary(max_size=40), _frames))
@settings(max_examples=300, deadline=None)
def test_parse_live_never_raises(message: str | bytes) -> None:
    result = parse_live(message)
    if isinstance(result, ServerEvent):
        assert isinstance(message, str)
        assert isinstance(result.id, str)
    else:
        assert result is message


# --------------------------------------------------------------------------- encoders, parse_resume


@pytest.mark.parametrize("last", [None, "", "41", "é-ü", '"quoted"', "x" * 1000])
def test_resume_round_trip(last: str | None) -> None:
    assert parse_resume(encode_resume(last)) == last
    assert parse_resume(ResumeHandshake(last).frame()) == last


@given(st.one_of(st.none(), st.text()))
@settings(max_examples=100, deadline=None)
def test_resume_round_trip_property(last: str | None) -> None:
    assert parse_resume(encode_resume(last)) == last


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b'{"type": "resume", "lastEventId": null}', "expected a resume frame"),
        ("", "expected a resume frame"),
        ("resume", "expected a resume frame"),
        ("[" * 100_000, "expected a resume frame"),
        ('["resume"]', "expected a resume frame"),
        ("null", "expected a resume frame"),
        ("{}", "expected a resume frame"),
        ('{"lastEventId": "1"}', "expected a resume frame"),
        ('{"type": "Resume", "lastEventId": "1"}', "expected a resume frame"),
        ('{"type": "event", "id": "1"}', "expected a resume frame"),
        ('{"type": "resume"}', "needs lastEventId"),
        ('{"type": "resume", "lasteventid": "1"}', "needs lastEventId"),
        ('{"type": "resume", "lastEventId": 41}', "needs lastEventId"),
        ('{"type": "resume", "lastEventId": ["41"]}', "needs lastEventId"),
        ('{"type": "resume", "lastEventId": false}', "needs lastEventId"),
    ],
)
def test_parse_resume_bad_inputs(message: str | bytes, match: str) -> None:
    with pytest.raises(ResumeProtocolError, match=match):
        parse_resume(message)


def test_parse_resume_error_does_not_quote_a_huge_frame() -> None:
    with pytest.raises(ResumeProtocolError) as info:
        parse_resume(json.dumps({"type": "resume", "lastEventId": 1, "pad": HUGE}))
    assert len(str(info.value)) <= MESSAGE_LIMIT
    assert "x" * 80 not in str(info.value)
    with pytest.raises(ResumeProtocolError) as info:
        parse_resume(HUGE)
    assert len(str(info.value)) <= MESSAGE_LIMIT
    assert "x" * 80 not in str(info.value)


# What encode_event accepts: JSON has no NaN or infinity (they are refused).
_finite_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(st.text(max_size=8), _finite_json)
@settings(max_examples=150, deadline=None)
def test_event_round_trip(event_id: str, data: Any) -> None:
    text = encode_event(event_id, data)
    live = parse_live(text)
    assert isinstance(live, ServerEvent)
    assert live.id == event_id
    assert json.dumps(live.data) == json.dumps(data)
    got = ResumeHandshake(None).receive(text)
    assert isinstance(got, ServerEvent)
    assert got.id == event_id
    assert json.dumps(got.data) == json.dumps(data)


def test_encoders_produce_the_spec_frames() -> None:
    assert json.loads(encode_event("42", {"a": 1})) == {
        "type": "event",
        "id": "42",
        "data": {"a": 1},
    }
    assert json.loads(encode_snapshot("57", [1])) == {"type": "snapshot", "id": "57", "data": [1]}
    assert json.loads(encode_snapshot(None, None)) == {"type": "snapshot", "id": None, "data": None}
    assert json.loads(encode_ready("57", lost=False)) == {
        "type": "ready",
        "id": "57",
        "lost": False,
    }
    assert json.loads(encode_ready(None, lost=True)) == {"type": "ready", "id": None, "lost": True}
    assert json.loads(encode_resume("41")) == {"type": "resume", "lastEventId": "41"}


def test_snapshot_and_ready_round_trip_through_the_handshake() -> None:
    hs = ResumeHandshake("9")
    assert hs.receive(encode_snapshot("57", {"k": ["v"]})) == Snapshot("57", {"k": ["v"]})
    assert hs.receive(encode_ready("57", lost=True)) == Gap("9", "57")
    assert hs.result == HandshakeResult(HandshakeOutcome.LOST, 0, "57")


# --------------------------------------------------------------------------- RecentIds


def test_recent_ids_detects_duplicates() -> None:
    recent = RecentIds(3)
    assert recent.add("a") is True
    assert recent.add("b") is True
    assert recent.add("a") is False
    assert recent.add("b") is False
    assert recent.add("c") is True
    assert len(recent) == 3


def test_recent_ids_evicts_oldest_first() -> None:
    recent = RecentIds(2)
    assert recent.add("a")
    assert recent.add("b")
    assert recent.add("c")  # evicts a
    assert len(recent) == 2
    assert recent.add("b") is False
    assert recent.add("c") is False
    assert recent.add("a") is True  # forgotten, so new again; evicts b
    assert recent.add("c") is False
    assert recent.add("b") is True


def test_recent_ids_duplicate_does_not_refresh_its_position() -> None:
    # Eviction follows delivery order; a dropped duplicate is not a delivery.
    recent = RecentIds(2)
    recent.add("a")
    recent.add("b")
    assert recent.add("a") is False
    recent.add("c")  # evicts a (the oldest delivery), not b
    assert recent.add("b") is False
    assert recent.add("a") is True


def test_recent_ids_size_one() -> None:
    recent = RecentIds(1)
    assert recent.add("a")
    assert not recent.add("a")
    assert recent.add("b")
    assert recent.add("a")
    assert len(recent) == 1


def test_recent_ids_bounded() -> None:
    recent = RecentIds(1024)
    for n in range(5000):
        assert recent.add(str(n))
    assert len(recent) == 1024
    assert recent.add("3976") is False
    assert recent.add("3975") is True


@pytest.mark.parametrize("size", [0, -1, -1024])
def test_recent_ids_size_validation(size: int) -> None:
    with pytest.raises(ValueError, match="size must be at least 1"):
        RecentIds(size)
