"""The checks and the summary of ``demo --nodes N``: events, acknowledged publishes, presence."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from trio_reconnect._tools.demo._cluster_clients import (
    PUBLISH_LIMIT,
    PUBLISH_RATE,
    Balancer,
    make_crowd,
)
from trio_reconnect._tools.demo._cluster_summary import (
    ClusterDemoSummary,
    EventCheck,
    NodeDeploy,
    PublishCheck,
    check_events,
    check_publishes,
    node_deploy,
)
from trio_reconnect.server import DEFAULT_CHANNEL_MAX_LEN, DrainSummary


def _msg(client: int, n: int) -> dict[str, int]:
    return {"client": client, "n": n}


ACKED = {(0, 0): "1", (0, 1): "2", (1, 0): "3"}

PUBLISH_CASES: list[tuple[str, dict[tuple[int, int], str], list[tuple[str, Any]], PublishCheck]] = [
    (
        "each acked publish once, at its ack's id",
        ACKED,
        [("1", _msg(0, 0)), ("2", _msg(0, 1)), ("3", _msg(1, 0))],
        PublishCheck(acked=3, applied_once=3, duplicated=0, missing=0),
    ),
    (
        "a re-sent publish applied twice",
        ACKED,
        [("1", _msg(0, 0)), ("2", _msg(0, 1)), ("3", _msg(1, 0)), ("4", _msg(0, 1))],
        PublishCheck(acked=3, applied_once=2, duplicated=1, missing=0),
    ),
    (
        "an acked publish not in the log",
        ACKED,
        [("1", _msg(0, 0)), ("3", _msg(1, 0))],
        PublishCheck(acked=3, applied_once=2, duplicated=0, missing=1),
    ),
    (
        "in the log at another id than its ack said",
        ACKED,
        [("1", _msg(0, 0)), ("2", _msg(0, 1)), ("9", _msg(1, 0))],
        PublishCheck(acked=3, applied_once=2, duplicated=0, missing=0),
    ),
    (
        "a publish that failed but was applied is no duplicate",
        {(0, 0): "1"},
        [("1", _msg(0, 0)), ("2", _msg(0, 1)), ("3", "not a publish")],
        PublishCheck(acked=1, applied_once=1, duplicated=0, missing=0),
    ),
    ("nothing published", {}, [], PublishCheck(acked=0, applied_once=0, duplicated=0, missing=0)),
]


@pytest.mark.parametrize(
    ("acked", "log", "expected"),
    [case[1:] for case in PUBLISH_CASES],
    ids=[case[0] for case in PUBLISH_CASES],
)
def test_check_publishes(
    acked: dict[tuple[int, int], str], log: list[tuple[str, Any]], expected: PublishCheck
) -> None:
    assert check_publishes(acked, log) == expected


HISTORY = [("1", {"node": "node1"}), ("2", {"node": "node2"}), ("3", {"node": "node1"})]

EVENT_CASES: list[tuple[str, str, list[list[str]], tuple[int, int, int, int]]] = [
    ("every client everything", "3", [["1", "2", "3"], ["1", "2", "3"]], (3, 3, 0, 0)),
    ("one missed an event", "3", [["1", "3"], ["1", "2", "3"]], (2, 3, 1, 0)),
    ("one got an event twice", "3", [["1", "2", "2", "3"], ["1", "2", "3"]], (3, 3, 0, 1)),
    ("an id that is not in the log", "3", [["1", "2", "3", "7"]], (4, 4, 1, 0)),
    ("events after the target are not owed", "2", [["1", "2"], ["1", "2", "3"]], (2, 3, 0, 0)),
]


@pytest.mark.parametrize(
    ("target", "received", "expected"),
    [case[1:] for case in EVENT_CASES],
    ids=[case[0] for case in EVENT_CASES],
)
def test_check_events(
    target: str, received: list[list[str]], expected: tuple[int, int, int, int]
) -> None:
    check = check_events(HISTORY, target, received)
    assert (check.delivered_min, check.delivered_max, check.lost, check.duplicated) == expected
    assert check == EventCheck(3, {"node1": 2, "node2": 1}, *expected)


def test_node_deploy_counts_each_drained_clients_first_arrival_elsewhere() -> None:
    names = {"ws://a/": "node1", "ws://b/": "node2", "ws://c/": "node3"}
    line = DrainSummary(drained=4, aborted=0, window=2.0, survivors=("node2", "node3")).json_line()
    output = f"serving ...\nserve: {line}\n"
    arrivals = [
        [(0.5, "ws://a/"), (10.05, "ws://b/"), (11.0, "ws://c/")],  # before SIGTERM; then b
        [(10.07, "ws://b/")],
        [(10.5, "ws://c/")],
        [(10.9, "ws://a/")],  # back to the node itself: not counted
    ]
    deploy = node_deploy("node1", "ws://a/", output, 0, (10.0, 1.5, 3.0), arrivals, names)
    assert deploy.peaks == {"node2": 2, "node3": 1}
    assert deploy.arrived == 3
    assert deploy.arrival_span == pytest.approx(0.45)
    assert (deploy.drained, deploy.window, deploy.peers) == (4, 2.0, 2)
    assert deploy.planned == pytest.approx(4 / 2.0 * 0.1 / 2)


def _summary(**changes: Any) -> ClusterDemoSummary:
    deploy = NodeDeploy("node1", 10, 2.0, 2, 0, 1.0, 2.0, {"node2": 1}, 0.25, 10, 1.9)
    good = ClusterDemoSummary(
        nodes=2,
        clients=10,
        duration_s=9.5,
        deploys=(deploy,),
        events_published=30,
        published_per_node={"node1": 15, "node2": 15},
        delivered_min=30,
        delivered_max=30,
        lost=0,
        duplicated=0,
        told=0,
        publish_channel="chat",
        publishers=2,
        publishes_acked=40,
        publishes_applied_once=40,
        presence_room="room:1",
        presence_members=3,
        presence_members_seen_min=3,
    )
    return attrs.evolve(good, **changes)


def test_a_clean_run_is_ok_and_says_so() -> None:
    summary = _summary()
    assert summary.ok
    lines = summary.table().splitlines()
    acked = "  publishes acked           40 by 2 clients into 'chat' through the deploy (0 failed)"
    assert acked in lines
    assert "  applied exactly once      40 of 40 in the channel's log (0 twice, 0 missing)" in lines
    assert lines[-2] == (
        "  presence leaves seen      0 during the deploy, by 3 members of 'room:1' watching each "
        "other (0 joins; each sees all 3 at the end)"
    )
    assert lines[-1] == (
        "  result                    OK: nothing lost, nothing duplicated, nobody seen leaving"
    )
    as_json = json.loads(summary.as_json())
    assert as_json["ok"] is True
    assert as_json["publishes_acked"] == as_json["publishes_applied_once"] == 40
    assert as_json["presence_leaves"] == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"lost": 1},
        {"duplicated": 1},
        {"told": 1},
        {"publishes_failed": 1},
        {"publishes_applied_once": 39},
        {"publishes_duplicated": 1},
        {"presence_leaves": 1},
        {"presence_joins": 1},
        {"presence_members_seen_min": 2},
    ],
    ids=str,
)
def test_any_failure_fails_the_run(changes: dict[str, int]) -> None:
    summary = _summary(**changes)
    assert not summary.ok
    assert summary.table().endswith("result                    FAILED")
    if "presence_members_seen_min" in changes:
        assert "(0 joins; one sees only 2 at the end)" in summary.table()
    assert json.loads(summary.as_json())["ok"] is False


@pytest.mark.parametrize(
    ("clients", "publishers", "members"),
    [(300, 10, 30), (30, 2, 3), (10, 2, 3), (2, 2, 2), (1, 1, 1)],
)
def test_the_crowds_roles(clients: int, publishers: int, members: int) -> None:
    crowd, roles = make_crowd(Balancer(["ws://a/"]), clients)
    assert (roles.publishers, roles.members) == (publishers, members)
    assert sum(c.publisher for c in crowd) == publishers
    assert sum(c.member for c in crowd) == members
    assert roles.interval == publishers / PUBLISH_RATE


def test_the_demo_publishes_no_more_than_the_channel_keeps() -> None:
    # The check reads the whole channel back: its stream must still hold every publish.
    assert PUBLISH_LIMIT < DEFAULT_CHANNEL_MAX_LEN
