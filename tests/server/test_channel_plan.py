"""The pure channel rules (trio_reconnect/server/_chanplan.py), as tables."""

from __future__ import annotations

from typing import Any

import pytest

from trio_reconnect._wire import RefusedCode, Subscribe
from trio_reconnect.server._channelbase import ChannelEvent, ChannelRead, ChannelRequest
from trio_reconnect.server._chanplan import (
    ChannelAction,
    channel_request,
    plan_channel,
    principal_id,
    split_live,
    subscribe_refusal,
)
from trio_reconnect.server._logbase import LoggedEvent

E = [LoggedEvent(str(i), i) for i in (6, 7)]


@pytest.mark.parametrize(
    ("after", "history", "events", "has_snapshot", "action"),
    [
        # a fresh subscription without history: the snapshot where there is one
        (None, 0, [], True, ChannelAction.SNAPSHOT),
        (None, 0, [], False, ChannelAction.REPLAY),
        # with history: the newest events, never the snapshot
        (None, 2, E, True, ChannelAction.REPLAY),
        (None, 2, E, False, ChannelAction.REPLAY),
        # a resume the store holds: the replay
        ("5", 0, E, True, ChannelAction.REPLAY),
        ("5", 0, E, False, ChannelAction.REPLAY),
        # a resume it does not hold: the snapshot, else lost
        ("1", 0, None, True, ChannelAction.SNAPSHOT),
        ("1", 0, None, False, ChannelAction.LOST),
    ],
)
def test_plan_channel(
    after: str | None, history: int, events: Any, has_snapshot: bool, action: ChannelAction
) -> None:
    plan = plan_channel(
        ChannelRequest("c", after, history),
        ChannelRead("c", "7", events),
        has_snapshot=has_snapshot,
    )
    assert plan.action is action
    assert plan.newest == "7"
    assert list(plan.events) == (E if action is ChannelAction.REPLAY and events else [])


@pytest.mark.parametrize(
    ("frame", "request_"),
    [
        (Subscribe("c", None, 50), ChannelRequest("c", None, 10)),  # capped at max_replay
        (Subscribe("c", None, 3), ChannelRequest("c", None, 3)),
        (Subscribe("c", None, None), ChannelRequest("c", None, 0)),
        (Subscribe("c", "4", 3), ChannelRequest("c", "4", 0)),  # ignored with a position
    ],
)
def test_channel_request(frame: Subscribe, request_: ChannelRequest) -> None:
    assert channel_request(frame, max_replay=10) == request_


def ev(*ids: int) -> list[ChannelEvent]:
    return [ChannelEvent("c", str(i), None) for i in ids]


@pytest.mark.parametrize(
    ("covered", "ids", "sent", "after", "gap"),
    [
        (5, [6, 7], [6, 7], 7, False),
        (5, [4, 5, 6], [6], 6, False),  # covered: skipped
        (5, [], [], 5, False),
        (5, [7, 8], [], 5, True),  # a gap at once
        (5, [6, 8, 9], [6], 6, True),  # a gap after one
        (5, [6, 6, 7], [6, 7], 7, False),  # a duplicate
    ],
)
def test_split_live(covered: int, ids: list[int], sent: list[int], after: int, gap: bool) -> None:
    split = split_live(covered, ev(*ids))
    assert [int(e.id) for e in split.send] == sent
    assert (split.covered, split.gap) == (after, gap)


@pytest.mark.parametrize(
    ("held", "count", "code"),
    [
        (False, 0, None),
        (False, 2, None),
        (False, 3, RefusedCode.LIMIT),
        (True, 3, None),  # renewing a held one is not a new one
        (False, 100_000, RefusedCode.LIMIT),
    ],
)
def test_subscribe_refusal(held: bool, count: int, code: RefusedCode | None) -> None:
    assert subscribe_refusal(held=held, count=count, max_subscriptions=3) is code


class WithId:
    principal_id = "user:7"

    def __str__(self) -> str:
        return "not this"


@pytest.mark.parametrize(
    ("principal", "expected"), [("ada", "ada"), (None, "None"), (42, "42"), (WithId(), "user:7")]
)
def test_principal_id(principal: object, expected: str) -> None:
    assert principal_id(principal) == expected
