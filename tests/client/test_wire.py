"""The version 2 frames (trio_reconnect/_wire.py; PROTOCOL.md section 4). Pure: no trio."""

from __future__ import annotations

import json
import random
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_reconnect import ResumeProtocolError
from trio_reconnect._protocol import Gap, ServerEvent, Snapshot
from trio_reconnect._wire import (
    MAX_CHANNEL_BYTES,
    MAX_CLIENT_ID_BYTES,
    MAX_MSG_ID_BYTES,
    Ack,
    ChannelItem,
    Join,
    Leave,
    Malformed,
    Nack,
    NackCode,
    Presence,
    Publish,
    Refused,
    RefusedCode,
    ResumeFrame,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    channel_problem,
    client_id_problem,
    compact_json,
    encode_channel_event,
    encode_channel_snapshot,
    encode_ready_v2,
    handshake_frame,
    handshake_server_frame,
    handshake_subscribed,
    id_problem,
    msg_id_problem,
    new_client_id,
    parse_client_frame,
    parse_ready_channels,
    parse_resume_v2,
    parse_server_frame,
)

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# --------------------------------------------------------------------------- strategies

names = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60)
ids = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
infos = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
#: Anything a hostile peer may put in a field.
hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.text(min_size=300, max_size=400),
    st.just("x" * 10_000),
    st.just("\ud800"),
    st.just("a\x00b"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)


def frame(**fields: Any) -> str:
    return json.dumps(fields)


# --------------------------------------------------------------------------- names and ids


def test_a_default_client_id_is_128_random_bits_in_hex() -> None:
    first = new_client_id(random.Random(1))
    assert first == new_client_id(random.Random(1))
    assert len(first) == 32
    assert int(first, 16) < 2**128
    assert first != new_client_id(random.Random(2))
    assert client_id_problem(first) is None
    assert len(new_client_id(random.SystemRandom())) == 32


def test_a_client_id_with_leading_zero_bits_keeps_its_32_digits() -> None:
    class Zero:
        def getrandbits(self, k: int, /) -> int:
            return 5

    assert new_client_id(Zero()) == "0" * 31 + "5"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a", True),
        ("room:1", True),
        ("é" * 128, True),  # 256 bytes
        ("é" * 128 + "a", False),  # 257 bytes
        ("x" * MAX_CHANNEL_BYTES, True),
        ("x" * (MAX_CHANNEL_BYTES + 1), False),
        ("x" * 10_000, False),
        ("", False),
        ("a\x00", False),
        ("a\nb", False),
        ("a\x7f", False),
        ("a\x85", False),  # C1 control
        ("a\u200bb", True),  # a format character, not a control one
        ("\ud800", False),  # a lone surrogate has no UTF-8 form
        (None, False),
        (17, False),
        (["a"], False),
    ],
)
def test_channel_names(value: object, ok: bool) -> None:
    problem = channel_problem(value)
    assert (problem is None) is ok
    if problem is not None:
        assert len(problem) < 120  # never the whole value


@pytest.mark.parametrize("check", [client_id_problem, msg_id_problem])
def test_client_ids_and_msg_ids(check: Any) -> None:
    assert MAX_CLIENT_ID_BYTES == MAX_MSG_ID_BYTES == 128
    assert check("") is None
    assert check("x" * 128) is None
    assert check("€" * 42) is None  # 126 bytes
    assert check("€" * 43) is not None  # 129 bytes
    assert check("x" * 129) is not None
    assert check("x" * 10_240) is not None
    assert check("a\nb") is None  # the page forbids control characters in names only
    assert check("\udfff") is not None
    assert check(17) is not None
    assert check(None) is not None


def test_ids_a_client_sends() -> None:
    assert id_problem("1796526557647301") is None
    assert id_problem("x" * 129) is not None
    assert id_problem(41) is not None


# --------------------------------------------------------------------------- golden frames
# Copied from PROTOCOL.md section 4, so that a peer written from that page agrees.

GOLDEN: list[tuple[str, Any]] = [
    (
        '{"type": "resume", "lastEventId": "41", "clientId": "9f2c...", '
        '"channels": {"room:1": "17", "room:2": "1796526557647301"}}',
        ResumeFrame("41", "9f2c...", (("room:1", "17"), ("room:2", "1796526557647301"))),
    ),
    (
        '{"type": "refused", "channel": "room:2", "code": "forbidden", "reason": "..."}',
        Refused("room:2", RefusedCode.FORBIDDEN, "..."),
    ),
    (
        '{"type": "subscribed", "channel": "room:1", "id": "57", "lost": false}',
        Subscribed("room:1", "57", lost=False),
    ),
    (
        '{"type": "subscribe", "channel": "room:3", "lastEventId": null, "history": 50}',
        Subscribe("room:3", None, 50),
    ),
    ('{"type": "unsubscribe", "channel": "room:3"}', Unsubscribe("room:3")),
    ('{"type": "unsubscribed", "channel": "room:3"}', Unsubscribed("room:3")),
    (
        '{"type": "presence", "channel": "room:1", "members": {"9f2c...": {"user": "ada"}}}',
        Presence("room:1", {"9f2c...": {"user": "ada"}}),
    ),
    ('{"type": "leave", "channel": "room:1", "clientId": "..."}', Leave("room:1", "...")),
    (
        '{"type": "ack", "msgId": "17", "channel": "room:1", "id": "19"}',
        Ack("17", "room:1", "19"),
    ),
]


@pytest.mark.parametrize(("text", "value"), GOLDEN)
def test_golden_frames_encode_exactly(text: str, value: Any) -> None:
    assert value.encode() == text


@given(st.text(), st.text(), st.text())
def test_ack_text_is_what_json_dumps_writes(msg_id: str, channel: str, id_: str) -> None:
    # Ack.encode writes its text without json.dumps (one per acked publish):
    # escapes, non-ASCII, surrogates and quotes come out the same.
    frame = {"type": "ack", "msgId": msg_id, "channel": channel, "id": id_}
    assert Ack(msg_id, channel, id_).encode() == json.dumps(frame)


@given(st.text(), st.text(), st.booleans())
def test_subscribed_text_is_what_json_dumps_writes(channel: str, id_: str, lost: bool) -> None:
    # Subscribed.encode writes its text without json.dumps (one per channel of a resume).
    frame = {"type": "subscribed", "channel": channel, "id": id_, "lost": lost}
    assert Subscribed(channel, id_, lost=lost).encode() == json.dumps(frame)


def test_a_subscribed_of_other_types_is_still_json_dumps_text() -> None:
    # Not built by the parser, but encode() stays json.dumps's for any value.
    odd = Subscribed(cast(str, 17), "1", lost=cast(bool, 0))
    assert odd.encode() == json.dumps({"type": "subscribed", "channel": 17, "id": "1", "lost": 0})


@pytest.mark.parametrize(("text", "value"), GOLDEN)
def test_golden_frames_parse(text: str, value: Any) -> None:
    if isinstance(value, ResumeFrame):
        assert parse_resume_v2(text) == (value, ())
    elif isinstance(value, Subscribe | Unsubscribe):
        assert parse_client_frame(text) == value
    else:
        assert parse_server_frame(text) == value


def test_golden_frames_with_placeholders_in_the_page() -> None:
    """The page writes ``...`` or ``<any JSON>`` for a value: the keys before it match."""
    assert encode_channel_event("room:1", "18", {"n": 1}).startswith(
        '{"type": "event", "channel": "room:1", "id": "18", "data": '
    )
    assert encode_channel_snapshot("room:1", "57", [1]).startswith(
        '{"type": "snapshot", "channel": "room:1", "id": "57", "data": '
    )
    assert encode_ready_v2("57", lost=False, channels=["room:1"]) == (
        '{"type": "ready", "id": "57", "lost": false, "channels": ["room:1"]}'
    )
    assert Join("room:1", "...", {"user": "ada"}).encode() == (
        '{"type": "join", "channel": "room:1", "clientId": "...", "info": {"user": "ada"}}'
    )
    assert (
        Publish("room:1", "17", {"text": "hi"})
        .encode()
        .startswith('{"type": "publish", "channel": "room:1", "msgId": "17", "data": ')
    )
    assert Nack("17", "room:1", NackCode.TOO_LARGE, "...").encode() == (
        '{"type": "nack", "msgId": "17", "channel": "room:1", "code": "too_large", "reason": "..."}'
    )
    assert Unsubscribed("room:3", "forbidden", "revoked").encode() == (
        '{"type": "unsubscribed", "channel": "room:3", "code": "forbidden", "reason": "revoked"}'
    )


def test_a_resume_frame_without_client_id_is_version_1s() -> None:
    assert ResumeFrame(None).encode() == '{"type": "resume", "lastEventId": null}'
    assert parse_resume_v2('{"type": "resume", "lastEventId": null}') == (ResumeFrame(None), ())
    # A v2 client with no subscription still says so: an empty map.
    assert ResumeFrame("4", "c").encode() == (
        '{"type": "resume", "lastEventId": "4", "clientId": "c", "channels": {}}'
    )


# --------------------------------------------------------------------------- round trips


server_values = st.one_of(
    st.builds(lambda c, i, d: ChannelItem(c, ServerEvent(i, d)), names, ids, json_values),
    st.builds(lambda c, i, d: ChannelItem(c, Snapshot(i, d)), names, ids, json_values),
    st.builds(
        Refused,
        st.none() | names,
        st.sampled_from([c for c in RefusedCode if c is not RefusedCode.UNSUPPORTED]),
        st.text(max_size=20),
    ),
    st.builds(Subscribed, names, ids, st.booleans()),
    st.builds(Unsubscribed, names),
    st.builds(Unsubscribed, names, st.text(max_size=10), st.text(max_size=10)),
    st.builds(Presence, names, st.dictionaries(ids, infos, max_size=5)),
    st.builds(Join, names, ids, infos),
    st.builds(Leave, names, ids),
    st.builds(Ack, ids, ids, ids),
    st.builds(
        Nack,
        st.none() | ids,
        st.none() | names,
        st.sampled_from([c for c in NackCode if c is not NackCode.UNSUPPORTED]),
        st.text(max_size=20),
    ),
)


@given(server_values)
@settings(FUZZ)
def test_every_server_frame_round_trips(value: Any) -> None:
    assert parse_server_frame(value.encode()) == value


client_values = st.one_of(
    st.builds(Subscribe, names, st.none() | ids, st.none() | st.integers(0, 10**6)),
    st.builds(Unsubscribe, names),
    st.builds(Publish, names, ids, json_values),
)


@given(client_values)
@settings(FUZZ)
def test_every_client_frame_round_trips(value: Any) -> None:
    parsed = parse_client_frame(value.encode())
    assert parsed == value
    if isinstance(value, Publish):
        assert isinstance(parsed, Publish)
        assert parsed.compact == compact_json(value.data)


@given(st.none() | ids, st.none() | ids, st.lists(st.tuples(names, ids), max_size=6))
@settings(FUZZ)
def test_every_resume_frame_round_trips(
    last: str | None, client_id: str | None, channels: list[tuple[str, str]]
) -> None:
    unique = tuple(dict(channels).items()) if client_id is not None else ()
    value = ResumeFrame(last, client_id, unique)
    assert parse_resume_v2(value.encode()) == (value, ())


def test_a_gap_has_no_frame() -> None:
    with pytest.raises(TypeError):
        ChannelItem("a", Gap("1", "5")).encode()


# --------------------------------------------------------------------------- client side, hostile


def test_the_default_stream_stays_apart() -> None:
    assert parse_server_frame('{"type": "event", "id": "5", "data": 1}') == ServerEvent("5", 1)
    assert parse_server_frame('{"type": "event", "channel": "c", "id": "5", "data": 1}') == (
        ChannelItem("c", ServerEvent("5", 1))
    )
    # A default-stream snapshot after ready is the application's, as in version 1.
    text = '{"type": "snapshot", "id": "5", "data": 1}'
    assert parse_server_frame(text) is text
    # "channel": null is not "without a channel".
    assert isinstance(
        parse_server_frame('{"type": "event", "channel": null, "id": "5"}'), Malformed
    )


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "",
        "[1, 2]",
        '{"type": "chat", "text": "hi"}',
        '{"no type": 1}',
        '{"type": "ready", "id": null, "lost": false}',
        '{"type": ["ack"]}',
        '{"type": "event", "id": 5}',  # a v1 event without a string id: the application's
        "{" * 100_000,
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_application_messages_pass_unchanged(text: str) -> None:
    assert parse_server_frame(text) is text
    assert parse_server_frame(text.encode()) == text.encode()


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "event", "channel": "", "id": "1"},
        {"type": "event", "channel": "a\x00", "id": "1"},
        {"type": "event", "channel": "x" * 300, "id": "1"},
        {"type": "event", "channel": "a", "id": 1},
        {"type": "event", "channel": "a"},
        {"type": "snapshot", "channel": "a", "id": None},
        {"type": "subscribed", "channel": "a", "id": None, "lost": False},
        {"type": "subscribed", "channel": "a", "id": "1", "lost": "no"},
        {"type": "subscribed", "id": "1"},
        {"type": "refused", "channel": "a", "code": "unsupported"},
        {"type": "refused", "channel": "a", "code": "banned"},
        {"type": "refused", "channel": "a"},
        {"type": "refused", "channel": 5, "code": "invalid"},
        {"type": "refused", "channel": "a", "code": "limit", "reason": 3},
        {"type": "presence", "channel": "a"},
        {"type": "presence", "channel": "a", "members": []},
        {"type": "presence", "channel": "a", "members": {"k": "ada"}},
        {"type": "presence", "channel": "a", "members": {"k": None}},
        {"type": "join", "channel": "a", "clientId": "k"},
        {"type": "join", "channel": "a", "clientId": "k", "info": [1]},
        {"type": "join", "channel": "a", "clientId": 5, "info": {}},
        {"type": "leave", "channel": "a"},
        {"type": "unsubscribed", "channel": "a", "code": 5},
        {"type": "unsubscribed"},
        {"type": "ack", "msgId": "1", "channel": "a"},
        {"type": "ack", "msgId": 1, "channel": "a", "id": "5"},
        {"type": "nack", "msgId": "1", "channel": "a", "code": "nope"},
        {"type": "nack", "msgId": 1, "channel": "a", "code": "invalid"},
        {"type": "nack", "msgId": "1", "channel": ["a"], "code": "invalid"},
    ],
)
def test_malformed_version_2_frames(fields: dict[str, Any]) -> None:
    text = json.dumps(fields)
    result = parse_server_frame(text)
    assert isinstance(result, Malformed), result
    assert len(result.reason) < 300


def test_a_huge_member_list_parses() -> None:
    members = {f"client-{i}": {"n": i} for i in range(100_000)}
    result = parse_server_frame(Presence("lobby", members).encode())
    assert isinstance(result, Presence)
    assert len(result.members) == 100_000


@given(
    st.sampled_from(
        [
            "event",
            "snapshot",
            "refused",
            "presence",
            "join",
            "leave",
            "subscribed",
            "unsubscribed",
            "ack",
            "nack",
        ]
    ),
    st.dictionaries(
        st.sampled_from(
            [
                "channel",
                "id",
                "data",
                "lost",
                "code",
                "reason",
                "members",
                "clientId",
                "info",
                "msgId",
            ]
        ),
        hostile,
    ),
)
@settings(FUZZ)
def test_hostile_server_frames_never_raise(kind: str, fields: dict[str, Any]) -> None:
    text = json.dumps({"type": kind, **fields})
    result = parse_server_frame(text)
    assert isinstance(
        result,
        ChannelItem
        | Refused
        | Presence
        | Join
        | Leave
        | Subscribed
        | Unsubscribed
        | Ack
        | Nack
        | Malformed
        | ServerEvent
        | str,
    )


@given(st.text() | st.binary())
@settings(FUZZ)
def test_arbitrary_messages_never_raise(message: str | bytes) -> None:
    parse_server_frame(message)
    parse_client_frame(message)
    with pytest.raises(ResumeProtocolError):
        parse_resume_v2(message)


# --------------------------------------------------------------------------- server side, hostile


def test_a_subscribe_with_defaults() -> None:
    assert parse_client_frame('{"type": "subscribe", "channel": "a"}') == Subscribe("a")
    assert parse_client_frame(
        '{"type": "subscribe", "channel": "a", "lastEventId": "4", "history": null}'
    ) == Subscribe("a", "4")
    assert parse_client_frame('{"type": "subscribe", "channel": "a", "history": 0}') == Subscribe(
        "a", None, 0
    )


@pytest.mark.parametrize(
    ("fields", "channel"),
    [
        ({"type": "subscribe"}, None),
        ({"type": "subscribe", "channel": None}, None),
        ({"type": "subscribe", "channel": 7}, None),
        ({"type": "subscribe", "channel": ""}, ""),
        ({"type": "subscribe", "channel": "a\tb"}, "a\tb"),
        ({"type": "subscribe", "channel": "x" * 257}, "x" * 257),
        ({"type": "subscribe", "channel": "a", "lastEventId": 5}, "a"),
        ({"type": "subscribe", "channel": "a", "lastEventId": "9" * 129}, "a"),
        ({"type": "subscribe", "channel": "a", "history": -1}, "a"),
        ({"type": "subscribe", "channel": "a", "history": True}, "a"),
        ({"type": "subscribe", "channel": "a", "history": 1.5}, "a"),
        ({"type": "subscribe", "channel": "a", "history": "5"}, "a"),
        ({"type": "unsubscribe"}, None),
        ({"type": "unsubscribe", "channel": {"a": 1}}, None),
        ({"type": "unsubscribe", "channel": "\x1b[2J"}, "\x1b[2J"),
    ],
)
def test_a_malformed_subscription_frame_is_refused_invalid(
    fields: dict[str, Any], channel: str | None
) -> None:
    answer = parse_client_frame(json.dumps(fields))
    assert isinstance(answer, Refused)
    assert answer.channel == channel
    assert answer.code is RefusedCode.INVALID
    assert len(answer.reason) < 200
    # The answer itself is a frame a client parses.
    assert parse_server_frame(answer.encode()) == answer


def test_a_channel_with_a_lone_surrogate_is_refused() -> None:
    answer = parse_client_frame('{"type": "subscribe", "channel": "\\ud800"}')
    assert isinstance(answer, Refused)
    assert answer == Refused("\ud800", RefusedCode.INVALID, answer.reason)
    # Its answer can be sent (JSON escapes the surrogate).
    assert "\\ud800" in answer.encode()


@pytest.mark.parametrize(
    ("fields", "msg_id", "channel"),
    [
        ({"type": "publish", "channel": "a", "data": 1}, None, "a"),
        ({"type": "publish", "channel": "a", "msgId": 17, "data": 1}, None, "a"),
        ({"type": "publish", "channel": "a", "msgId": "x" * 10_240, "data": 1}, "x" * 10_240, "a"),
        ({"type": "publish", "msgId": "1", "data": 1}, "1", None),
        ({"type": "publish", "channel": "", "msgId": "1", "data": 1}, "1", ""),
        ({"type": "publish", "channel": ["a"], "msgId": "1"}, "1", None),
        ({"type": "publish", "channel": "a", "msgId": "1", "data": "\ud800"}, "1", "a"),
    ],
)
def test_a_malformed_publish_is_nacked_invalid(
    fields: dict[str, Any], msg_id: str | None, channel: str | None
) -> None:
    answer = parse_client_frame(json.dumps(fields))
    assert isinstance(answer, Nack)
    assert (answer.msg_id, answer.channel, answer.code) == (msg_id, channel, NackCode.INVALID)
    assert answer.code.final
    assert len(answer.reason) < 200
    assert parse_server_frame(answer.encode()) == answer


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_data_that_is_not_json_is_nacked_invalid(constant: str) -> None:
    text = '{"type": "publish", "channel": "a", "msgId": "1", "data": [1, ' + constant + "]}"
    answer = parse_client_frame(text)
    assert isinstance(answer, Nack)
    assert (answer.msg_id, answer.channel, answer.code) == ("1", "a", NackCode.INVALID)
    assert "not JSON" in answer.reason


def test_a_publish_without_data_is_nacked_and_null_data_is_published() -> None:
    """PROTOCOL.md 4.3: a missing field is answered by a nack; ``data`` may be null."""
    answer = parse_client_frame('{"type": "publish", "channel": "a", "msgId": "1"}')
    assert answer == Nack("1", "a", NackCode.INVALID, "missing 'data'")
    result = parse_client_frame('{"type": "publish", "channel": "a", "msgId": "1", "data": null}')
    assert result == Publish("a", "1", None)


def test_too_large_measures_the_compact_utf8_re_encoding() -> None:
    data = {"text": "é" * 10, "n": [1, 2]}
    compact = compact_json(data)
    assert compact == '{"text":"éééééééééé","n":[1,2]}'.encode()
    size = len(compact)
    assert size == 41  # 10 two-byte characters
    text = Publish("a", "1", data).encode()  # sent with spaces and \u escapes: not what counts
    assert len(text.encode()) > size
    fits = parse_client_frame(text, max_data_bytes=size)
    assert isinstance(fits, Publish)
    assert fits.compact == compact
    too_large = parse_client_frame(text, max_data_bytes=size - 1)
    assert isinstance(too_large, Nack)
    assert (too_large.msg_id, too_large.code) == ("1", NackCode.TOO_LARGE)
    assert too_large.code.final


def test_compact_json_refuses_what_is_not_json() -> None:
    for bad in [float("nan"), float("inf"), {1, 2}, b"x", "\udc80", object()]:
        with pytest.raises(ValueError, match="data"):
            compact_json(bad)
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="not JSON"):
        compact_json(deep)


@pytest.mark.parametrize(
    "text",
    [
        "plain text",
        '{"type": "resume", "lastEventId": null}',  # after ready: the application's
        '{"type": "chat"}',
        '{"type": 5}',
        "[]",
        '"subscribe"',
    ],
)
def test_client_application_messages_pass_unchanged(text: str) -> None:
    assert parse_client_frame(text) is text


@given(
    st.sampled_from(["subscribe", "unsubscribe", "publish"]),
    st.dictionaries(
        st.sampled_from(["channel", "lastEventId", "history", "msgId", "data"]), hostile
    ),
    st.none() | st.integers(0, 100),
)
@settings(FUZZ)
def test_hostile_client_frames_get_their_documented_answer(
    kind: str, fields: dict[str, Any], limit: int | None
) -> None:
    try:
        text = json.dumps({"type": kind, **fields})
    except ValueError:
        return
    result = parse_client_frame(text, max_data_bytes=limit)
    if kind == "publish":
        assert isinstance(result, Publish | Nack)
        if isinstance(result, Nack):
            assert result.code in (NackCode.INVALID, NackCode.TOO_LARGE)
            assert result.msg_id == (
                fields["msgId"] if isinstance(fields.get("msgId"), str) else None
            )
    else:
        assert isinstance(result, Subscribe | Unsubscribe | Refused)
        if isinstance(result, Refused):
            assert result.code is RefusedCode.INVALID
            assert result.channel == (
                fields["channel"] if isinstance(fields.get("channel"), str) else None
            )
    if not isinstance(result, Refused | Nack):
        # a valid frame: its fields are what the page allows
        assert channel_problem(result.channel) is None


# --------------------------------------------------------------------------- the resume frame


def test_resume_entries_that_break_the_rules_are_refused_one_by_one() -> None:
    text = json.dumps(
        {
            "type": "resume",
            "lastEventId": "41",
            "clientId": "c",
            "channels": {
                "room:1": "17",
                "": "1",
                "bad\x00": "1",
                "room:2": None,
                "room:3": 18,
                "room:4": "9" * 200,
                "x" * 300: "1",
                "room:5": "5",
            },
        }
    )
    resume, refused = parse_resume_v2(text)
    assert resume == ResumeFrame("41", "c", (("room:1", "17"), ("room:5", "5")))
    assert [r.channel for r in refused] == ["", "bad\x00", "room:2", "room:3", "room:4", "x" * 300]
    assert all(r.code is RefusedCode.INVALID for r in refused)


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "resume"},
        {"type": "resume", "lastEventId": 41},
        {"type": "resume", "lastEventId": None, "clientId": 5},
        {"type": "resume", "lastEventId": None, "clientId": "x" * 129},
        {"type": "resume", "lastEventId": None, "clientId": "\ud800"},
        {"type": "resume", "lastEventId": None, "clientId": "c", "channels": ["a"]},
        {"type": "resume", "lastEventId": None, "clientId": "c", "channels": "a"},
        {"type": "resume", "lastEventId": None, "channels": {"a": "1"}},
        {"type": "subscribe", "channel": "a"},
    ],
)
def test_a_malformed_resume_frame_is_a_protocol_error(fields: dict[str, Any]) -> None:
    with pytest.raises(ResumeProtocolError) as caught:
        parse_resume_v2(json.dumps(fields))
    assert len(str(caught.value)) < 200


def test_a_resume_frame_with_100000_channels_parses() -> None:
    channels = {f"room:{i}": str(i) for i in range(100_000)}
    resume, refused = parse_resume_v2(ResumeFrame(None, "c", tuple(channels.items())).encode())
    assert len(resume.channels) == 100_000
    assert refused == ()


# --------------------------------------------------------------------------- ready


def test_ready_channels() -> None:
    def channels(text: str) -> tuple[str, ...] | None:
        return parse_ready_channels(json.loads(text), text)

    assert channels('{"type": "ready", "id": null, "lost": false}') is None
    assert channels(encode_ready_v2(None, lost=False, channels=[])) == ()
    assert channels(encode_ready_v2("1", lost=True, channels=["a", "b"])) == ("a", "b")
    for bad in [
        '{"channels": null}',
        '{"channels": "a"}',
        '{"channels": [1]}',
        '{"channels": ["a", "a"]}',
    ]:
        with pytest.raises(ResumeProtocolError):
            channels(bad)


def test_codes_finality() -> None:
    assert [c for c in RefusedCode if not c.final] == [RefusedCode.UNAVAILABLE]
    assert [c for c in NackCode if not c.final] == [NackCode.UNAVAILABLE]
    assert RefusedCode.UNSUPPORTED.value == "unsupported"
    assert NackCode.UNSUPPORTED.final


def _subscribed_the_usual_way(message: str) -> Any:
    try:
        return handshake_server_frame(handshake_frame(message), message)
    except ResumeProtocolError as exc:
        return exc.__class__


_odd_texts = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "a\\b", 'a"b', "a\x00", "é", "\u2028", "x" * 300, "room:1"]
)


@given(_odd_texts, _odd_texts, st.booleans())
@settings(max_examples=400)
def test_a_subscribed_read_without_json_is_what_json_reads(
    channel: str, id_: str, lost: bool
) -> None:
    frame = Subscribed(channel, id_, lost)
    for text in (
        frame.encode(),  # non-ASCII escaped: the usual way
        # Raw (unescaped) strings, as another JSON writer might send them:
        f'{{"type": "subscribed", "channel": "{channel}", "id": "{id_}", '
        f'"lost": {"true" if lost else "false"}}}',
    ):
        quick = handshake_subscribed(text)
        if quick is not None:
            assert quick == _subscribed_the_usual_way(text)
            assert channel_problem(quick.channel) is None


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ('{"type": "subscribed", "channel": "room:1", "id": "17", "lost": false}', True),
        ('{"type": "subscribed", "channel": "room:1", "id": "17", "lost": true}', True),
        ('{"type":"subscribed","channel":"room:1","id":"17","lost":false}', False),
        ('{"type": "subscribed", "channel": "room:\\u0031", "id": "17", "lost": false}', False),
        ('{"type": "subscribed", "channel": "", "id": "17", "lost": false}', False),  # bad name
        ('{"type": "subscribed", "channel": "room:1", "id": "17", "lost": false} ', False),
        ('{"type": "subscribed", "channel": "room:1", "id": "17", "lost": 0}', False),
    ],
)
def test_only_the_plain_subscribed_text_is_read_without_json(text: str, read: bool) -> None:
    quick = handshake_subscribed(text)
    assert (quick is not None) is read
    if quick is not None:
        assert quick == _subscribed_the_usual_way(text)
    assert handshake_subscribed(text.encode()) is None  # bytes: the usual way


def test_a_subscribed_name_the_handshake_checked_is_not_checked_again() -> None:
    text = '{"type": "subscribed", "channel": "room:1", "id": "17", "lost": false}'
    assert handshake_subscribed(text, {"room:1"}) == Subscribed("room:1", "17", False)
    assert handshake_subscribed(text, {"room:2"}) == Subscribed("room:1", "17", False)
    bad = '{"type": "subscribed", "channel": "", "id": "17", "lost": false}'
    assert handshake_subscribed(bad, {"room:1"}) is None  # not in it: checked, the usual way
