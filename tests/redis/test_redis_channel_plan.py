"""The Redis channel store's pure decisions (_channel_plan) and its RESP2 parser (_resp): tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trio_reconnect.server import ChannelEvent, ChannelRead, ChannelRequest, MemberChange
from trio_reconnect.server._logbase import EventLogError, LoggedEvent
from trio_reconnect.server._redis._channel_plan import (
    NOT_HELD,
    append_args,
    channel_keys,
    notify_channel,
    parse_append_reply,
    parse_notification,
    parse_read_reply,
    position_arg,
    read_args,
    shard_of,
    tag,
)
from trio_reconnect.server._redis._resp import RespError, RespParser, encode_command


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("room", "room"),
        ("{x}", "%7Bx%7D"),
        ("}x", "%7Dx"),
        ("a%7Bb", "a%257Bb"),
        ("%", "%25"),
        ("é{", "é%7B"),
        ("a:b", "a:b"),
    ],
)
def test_tag_encodes_braces_and_percent(channel: str, expected: str) -> None:
    assert tag(channel) == expected
    assert "{" not in tag(channel)
    assert "}" not in tag(channel)


def test_tag_is_injective_where_a_naive_one_is_not() -> None:
    names = ["{", "%7B", "%257B", "}", "%7D", "%", "%25", "a{b}", "a%7Bb%7D"]
    assert len({tag(name) for name in names}) == len(names)


def test_keys_share_one_hash_tag() -> None:
    assert channel_keys("P", "r{1}") == ["P:{r%7B1%7D}:meta", "P:{r%7B1%7D}:log"]


@pytest.mark.parametrize("shards", [1, 2, 16, 256])
def test_shard_is_stable_and_in_range(shards: int) -> None:
    for i in range(200):
        shard = shard_of(f"room:{i}", shards)
        assert 0 <= shard < shards
        assert shard == shard_of(f"room:{i}", shards)
    assert shard_of("anything", 1) == 0


def test_shards_spread_channels() -> None:
    used = {shard_of(f"room:{i}", 16) for i in range(1_000)}
    assert used == set(range(16))


def test_notify_channel_name() -> None:
    assert notify_channel("P", 3) == "P:n:3"


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (None, ""),
        ("42", "42"),
        ("0", "0"),
        ("042", NOT_HELD),
        ("-1", NOT_HELD),
        ("abc", NOT_HELD),
        ("", NOT_HELD),
        (str(2**53), NOT_HELD),
        (str(2**53 - 1), str(2**53 - 1)),
    ],
)
def test_position_arg(after: str | None, expected: str) -> None:
    assert position_arg(ChannelRequest("c", after)) == expected


def test_read_args_in_request_order() -> None:
    keys, args = read_args("P", [ChannelRequest("a", "5"), ChannelRequest("b", None, 3)])
    assert keys == ["P:{a}:meta", "P:{a}:log", "P:{b}:meta", "P:{b}:log"]
    assert args == ["5 0 - 3"]


def test_read_args_words_hold_no_space() -> None:
    requests = [ChannelRequest("a b", "4 2"), ChannelRequest("c", "")]
    assert read_args("P", requests)[1] == [f"{NOT_HELD} 0 {NOT_HELD} 0"]


def _entry(n: int, data: Any) -> list[Any]:
    return [f"{n}-0".encode(), json.dumps(data).encode()]


def test_parse_read_reply() -> None:
    requests = [ChannelRequest("a", "4"), ChannelRequest("b", "1"), ChannelRequest("c", None)]
    reply = [b"r 6 2 u 9", *_entry(5, 1), *_entry(6, {"x": 2})]
    assert parse_read_reply(requests, reply) == [
        ChannelRead("a", "6", [LoggedEvent("5", 1), LoggedEvent("6", {"x": 2})]),
        ChannelRead("b", "9", None),
    ]
    assert parse_read_reply(requests[2:], [b"r 7 0"]) == [ChannelRead("c", "7", [])]


def test_parse_read_reply_entries_go_to_their_channel() -> None:
    requests = [ChannelRequest("a", "4"), ChannelRequest("b", "1"), ChannelRequest("c", "2")]
    reply = [b"r 5 1 r 1 0 r 4 2", *_entry(5, "a"), *_entry(3, "c"), *_entry(4, "d")]
    assert parse_read_reply(requests, reply) == [
        ChannelRead("a", "5", [LoggedEvent("5", "a")]),
        ChannelRead("b", "1", []),
        ChannelRead("c", "4", [LoggedEvent("3", "c"), LoggedEvent("4", "d")]),
    ]


def test_parse_read_reply_stops_at_a_hole() -> None:
    reply = [b"r 7 2", *_entry(5, 1), *_entry(7, 2)]
    assert parse_read_reply([ChannelRequest("a", "4")], reply) == [
        ChannelRead("a", "7", [LoggedEvent("5", 1)])
    ]


@pytest.mark.parametrize(
    "reply",
    [
        [b"? 1"],
        [],
        [[b"r", b"1", []]],
        [b"r 1"],
        [b"r 1 x"],
        [b"r 5 1"],
        [b"r 5 1", b"5-0", None],
        [b"r 5 1", b"5-1", b"1"],
    ],
)
def test_parse_read_reply_refuses_a_reply_the_script_cannot_make(reply: list[Any]) -> None:
    with pytest.raises(EventLogError):
        parse_read_reply([ChannelRequest("a", None)], reply)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'e\nroom\n17\n{"a":1}', ChannelEvent("room", "17", {"a": 1})),
        (b'e\nr\xc3\xa9\n1\n"x\\ny"', ChannelEvent("ré", "1", "x\ny")),
        (b'e\nr\n2\n"line\nbreak"', None),  # raw newline inside JSON: invalid JSON
        (b"j\nroom\n3\nkey\n{}", MemberChange("room", 3, "key", {})),
        (b'j\nroom\n4\nk\n{"u":"a\\nb"}', MemberChange("room", 4, "k", {"u": "a\nb"})),
        (b"l\nroom\n5\nkey", MemberChange("room", 5, "key", None)),
        (b"x\nroom\n3\nkey\n{}", "skip"),
    ],
)
def test_parse_notification(payload: bytes, expected: Any) -> None:
    if expected is None:
        with pytest.raises(EventLogError):
            parse_notification(payload)
    elif expected == "skip":
        assert parse_notification(payload) is None
    else:
        assert parse_notification(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        b"e\nroom\n17",
        b"e\n\xff\n1\n1",
        b"e\nr\n1\n{",
        b"j\nroom\n3\nkey",
        b"j\nroom\nx\nkey\n{}",
        b"j\nroom\n3\nkey\n[]",
        b"l\nroom\n3",
    ],
)
def test_parse_notification_refuses_malformed(payload: bytes) -> None:
    with pytest.raises(EventLogError):
        parse_notification(payload)


def test_encode_command() -> None:
    assert encode_command("SUBSCRIBE", "a", 3, b"\xff") == (
        b"*4\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\n3\r\n$1\r\n\xff\r\n"
    )


PUSH = b"*3\r\n$7\r\nmessage\r\n$5\r\nP:n:0\r\n$5\r\ne\nx\ny\r\n"


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"+OK\r\n", [b"OK"]),
        (b":12\r\n", [12]),
        (b"$-1\r\n", [None]),
        (b"*-1\r\n", [None]),
        (b"$0\r\n\r\n", [b""]),
        (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", [[b"a", [1]]]),
        (b"$4\r\na\r\nb\r\n", [b"a\r\nb"]),
        (PUSH * 2, [[b"message", b"P:n:0", b"e\nx\ny"]] * 2),
        (b"*4\r\n$-1\r\n$1\r\na\r\n:7\r\n*0\r\n", [[None, b"a", 7, []]]),
        (b"*2\r\n+OK\r\n-ERR x\r\n$0\r\n\r\n", None),
    ],
)
def test_resp_values(stream: bytes, expected: list[Any] | None) -> None:
    values = RespParser().feed(stream)
    if expected is not None:
        assert values == expected
    else:  # an array holding an error reply, then a value after it
        [[ok, error], empty] = values  # type: ignore[misc]
        assert (ok, str(error), empty) == (b"OK", "ERR x", b"")


def test_resp_error_reply_is_a_value() -> None:
    [value] = RespParser().feed(b"-ERR no\r\n")
    assert isinstance(value, RespError)
    assert str(value) == "ERR no"


@pytest.mark.parametrize("cut", range(1, len(PUSH)))
def test_resp_partial_frames_wait_for_the_rest(cut: int) -> None:
    parser = RespParser()
    assert parser.feed(PUSH[:cut]) == []
    assert parser.pending == cut
    assert parser.feed(PUSH[cut:] + PUSH[:cut]) == [[b"message", b"P:n:0", b"e\nx\ny"]]
    assert parser.feed(PUSH[cut:]) == [[b"message", b"P:n:0", b"e\nx\ny"]]
    assert parser.pending == 0


def test_resp_byte_by_byte() -> None:
    parser = RespParser()
    values = [value for byte in PUSH * 3 for value in parser.feed(bytes([byte]))]
    assert values == [[b"message", b"P:n:0", b"e\nx\ny"]] * 3


@pytest.mark.parametrize("garbage", [b"?what\r\n", b"$x\r\n", b"*a\r\n"])
def test_resp_refuses_what_is_not_resp2(garbage: bytes) -> None:
    with pytest.raises(RespError):
        RespParser().feed(garbage)


def test_resp_bounds_a_partial_frame() -> None:
    parser = RespParser(max_pending=100)
    parser.feed(b"$1000\r\n" + b"x" * 50)
    with pytest.raises(RespError, match="outgrew"):
        parser.feed(b"x" * 60)


def test_append_args_take_each_channels_keys_and_shard() -> None:
    keys, args = append_args("P", 16, [("a", "1"), ("}x", '"t"')])
    assert keys == ["P:{a}:meta", "P:{a}:log", "P:{%7Dx}:meta", "P:{%7Dx}:log"]
    assert args == ["1", f"P:n:{shard_of('a', 16)}", "a", '"t"', f"P:n:{shard_of('}x', 16)}", "}x"]


def test_an_append_reply_gives_each_item_its_id_or_its_error() -> None:
    outcomes = parse_append_reply([b"i", b"17", b"e", b"WRONGTYPE no", b"i", b"5"], 3)
    assert outcomes[0] == "17"
    assert isinstance(outcomes[1], EventLogError)
    assert "WRONGTYPE no" in str(outcomes[1])
    assert outcomes[2] == "5"


@pytest.mark.parametrize("reply", [[], [b"i", b"1"], [b"i", b"1", b"i"], [b"x", b"1", b"i", b"2"]])
def test_an_append_reply_of_another_shape_is_an_error(reply: list[bytes]) -> None:
    with pytest.raises(EventLogError, match="unexpected append reply"):
        parse_append_reply(reply, 2)
