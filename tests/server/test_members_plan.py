"""Presence's pure rules (trio_reconnect/server/_membersplan.py), as tables."""

from __future__ import annotations

from typing import Any

import pytest

from trio_reconnect.server._membersplan import (
    ChangePlan,
    Release,
    carries_presence,
    difference,
    hold_key,
    killed_node_bound,
    member_key,
    plan_change,
    presence_patterns,
    release_of,
)


@pytest.mark.parametrize(
    ("unsubscribed", "peer_close_code", "expected"),
    [
        (True, None, Release.NOW),  # unsubscribe
        (False, 1000, Release.NOW),  # a clean close the client sent
        (False, None, Release.GRACE),  # the server closed first (a drain's 1012/1001 too)
        (False, 1001, Release.GRACE),  # going away from the client
        (False, 1006, Release.GRACE),  # no close frame
        (False, 1011, Release.GRACE),
        (False, 1012, Release.GRACE),
        (False, 4000, Release.GRACE),
        (True, 1006, Release.NOW),
    ],
)
def test_release_of(unsubscribed: bool, peer_close_code: int | None, expected: Release) -> None:
    assert release_of(unsubscribed=unsubscribed, peer_close_code=peer_close_code) is expected


@pytest.mark.parametrize(
    ("patterns", "channel", "expected"),
    [
        (("lobby*",), "lobby", True),
        (("lobby*",), "lobby:2", True),
        (("lobby*",), "Lobby", False),  # case-sensitive
        (("lobby*",), "my-lobby", False),
        (("room:?",), "room:1", True),
        (("room:?",), "room:12", False),
        (("a", "b*"), "bx", True),
        ((), "lobby", False),
        (("[ab]x",), "bx", True),
    ],
)
def test_carries_presence(patterns: tuple[str, ...], channel: str, expected: bool) -> None:
    assert carries_presence(patterns, channel) is expected


@pytest.mark.parametrize(
    ("value", "error"),
    [("lobby*", TypeError), ([""], ValueError), ([3], TypeError), (b"x", TypeError)],
)
def test_bad_patterns(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        presence_patterns(value)


def test_patterns_become_a_tuple() -> None:
    assert presence_patterns(["a*", "b"]) == ("a*", "b")
    assert presence_patterns(iter(())) == ()


def test_member_keys() -> None:
    assert member_key("c1", "ada", taken=False) == "c1"
    own = member_key("c1", "bob", taken=True)
    assert own.startswith("c1~")
    assert len(own) == len("c1~") + 8
    assert own == member_key("c1", "bob", taken=True)  # the same member, the same key
    assert own != member_key("c1", "cy", taken=True)  # two principals never merge


def test_holds() -> None:
    assert hold_key("c1~ab\nnode-1#ff\n7") == "c1~ab"


@pytest.mark.parametrize(
    ("have", "version", "expected"),
    [
        (5, 3, ChangePlan.SKIP),
        (5, 5, ChangePlan.SKIP),  # its own join, already in its list
        (5, 6, ChangePlan.APPLY),
        (5, 7, ChangePlan.GAP),
        (0, 1, ChangePlan.APPLY),
        (0, 9, ChangePlan.GAP),
    ],
)
def test_plan_change(have: int, version: int, expected: ChangePlan) -> None:
    assert plan_change(have, version) is expected


@pytest.mark.parametrize(
    ("old", "new", "leaves", "joins"),
    [
        ({}, {}, [], []),
        ({"a": {}}, {"a": {}}, [], []),  # equal: no flap
        ({}, {"a": {}, "b": {}}, [], [("a", {}), ("b", {})]),
        ({"a": {}, "b": {}}, {}, ["a", "b"], []),
        ({"a": {"n": 1}}, {"a": {"n": 2}}, [], [("a", {"n": 2})]),  # info changed
        ({"a": {}, "b": {}}, {"b": {}, "c": {}}, ["a"], [("c", {})]),
    ],
)
def test_difference(
    old: dict[str, Any], new: dict[str, Any], leaves: list[str], joins: list[Any]
) -> None:
    diff = difference(old, new)
    assert diff.leaves == leaves
    assert diff.joins == joins


def test_the_killed_node_bound() -> None:
    assert killed_node_bound(owner_ttl=5, owner_check_interval=2, grace=30, sweep_interval=1) == 38
