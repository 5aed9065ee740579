"""The client's options: one value (``_options.ClientOptions``), listed by both entry points."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import trio_reconnect as tr
from trio_reconnect._options import ClientOptions
from trio_reconnect._transport import open_tcp_stream


@pytest.mark.parametrize(
    "entry",
    [tr.open_reconnecting_websocket, tr.ReconnectingWebSocket.__init__],
    ids=["open_reconnecting_websocket", "ReconnectingWebSocket"],
)
def test_entry_points_list_every_option_with_its_default(entry: Callable[..., Any]) -> None:
    parameters = [p for p in inspect.signature(entry).parameters.values() if p.name != "self"]
    fields: tuple[attrs.Attribute[Any], ...] = tuple(attrs.fields(ClientOptions))
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert parameters[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD  # the url
    for parameter, field in zip(parameters[1:], fields[1:], strict=True):
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, parameter.name
        expected = {"open_stream": None, "subprotocols": ()}.get(field.name, field.default)
        assert parameter.default == expected, parameter.name


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_attempts", 0, "max_attempts must be a positive integer, got 0"),
        ("max_attempts", True, "max_attempts must be a positive integer"),
        ("connect_timeout", 0, "connect_timeout must be a positive finite number"),
        ("ping_interval", -1, "ping_interval must be a positive finite number"),
        ("give_up_after", float("nan"), "give_up_after must be a positive finite number"),
        ("max_queue", 0, "max_queue must be a positive integer"),
        ("max_replay", 0, "max_replay must be a positive integer"),
        ("dedupe_window", 0, "dedupe_window must be a positive integer"),
    ],
)
def test_a_bad_option_names_itself(option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientOptions(url="ws://example.test/", **{option: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        tr.ReconnectingWebSocket("ws://example.test/", **{option: value})  # type: ignore[arg-type]


def test_none_options_are_off() -> None:
    options = ClientOptions(
        url="ws://example.test/", max_attempts=None, ping_interval=None, give_up_after=None
    )
    assert (options.max_attempts, options.ping_interval, options.give_up_after) == (None,) * 3
    assert options.open_stream is open_tcp_stream  # None: the default opener
