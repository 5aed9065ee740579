"""The pure planners: the resume answer, and a drain over the cluster. Exact numbers."""

from __future__ import annotations

import pytest

from trio_reconnect._protocol import HandshakeOutcome
from trio_reconnect.server import (
    LoggedEvent,
    LogRead,
    NodeStatus,
    SpreadPolicy,
    plan_cluster_drain,
)
from trio_reconnect.server._planner import (
    ResumeAction,
    SnapshotFit,
    plan_fill,
    plan_resume,
    plan_snapshot,
    read_limit,
    snapshot_issued,
)

EVENTS = [LoggedEvent(str(n), n) for n in range(41, 44)]


# ---------------------------------------------------------------- plan_resume


def test_read_limit() -> None:
    assert read_limit("4", max_replay=9, has_snapshot=True) == 9
    assert read_limit(None, max_replay=9, has_snapshot=False) == 9
    assert read_limit(None, max_replay=9, has_snapshot=True) == 0  # the snapshot answers


def test_replay_covers_through_the_reads_newest() -> None:
    plan = plan_resume("40", LogRead("43", EVENTS), has_snapshot=True)
    assert plan.action is ResumeAction.REPLAY
    assert plan.outcome is HandshakeOutcome.REPLAYED
    assert list(plan.events) == EVENTS
    assert (plan.ready_id, plan.covered) == ("43", 43)


def test_up_to_date_is_a_replay_of_nothing() -> None:
    plan = plan_resume("43", LogRead("43", []), has_snapshot=False)
    assert (plan.action, plan.outcome, plan.ready_id, plan.covered) == (
        ResumeAction.REPLAY,
        HandshakeOutcome.REPLAYED,
        "43",
        43,
    )


def test_fresh_on_an_empty_log() -> None:
    plan = plan_resume(None, LogRead(None, []), has_snapshot=False)
    assert (plan.action, plan.outcome, plan.ready_id, plan.covered) == (
        ResumeAction.REPLAY,
        HandshakeOutcome.FRESH,
        None,
        None,
    )


def test_null_without_snapshot_replays_the_history() -> None:
    plan = plan_resume(None, LogRead("43", EVENTS), has_snapshot=False)
    assert plan.outcome is HandshakeOutcome.REPLAYED


def test_null_with_snapshot_takes_the_snapshot_even_when_replayable() -> None:
    plan = plan_resume(None, LogRead("43", []), has_snapshot=True)
    assert (plan.action, plan.outcome, plan.ready_id, plan.covered) == (
        ResumeAction.SNAPSHOT,
        None,
        "43",
        43,
    )


@pytest.mark.parametrize("has_snapshot", [True, False])
def test_not_held_is_snapshot_or_lost(has_snapshot: bool) -> None:
    plan = plan_resume("7", LogRead("43", None), has_snapshot=has_snapshot)
    if has_snapshot:
        assert (plan.action, plan.outcome) == (ResumeAction.SNAPSHOT, None)
    else:
        assert (plan.action, plan.outcome) == (ResumeAction.LOST, HandshakeOutcome.LOST)
    assert (plan.ready_id, plan.covered, list(plan.events)) == ("43", 43, [])


# -------------------------------------------------------------- plan_snapshot


@pytest.mark.parametrize(
    ("snapshot_id", "newest", "fit", "covered"),
    [
        (None, None, SnapshotFit.EXACT, None),  # before any event, on an empty log
        ("43", "43", SnapshotFit.EXACT, 43),
        ("45", "43", SnapshotFit.AHEAD, 45),  # taken later: includes 44 and 45
        ("45", None, SnapshotFit.AHEAD, 45),
        ("40", "43", SnapshotFit.BEHIND, 43),  # 41..43 follow it from the log
        (None, "43", SnapshotFit.BEHIND, 43),
        ("elsewhere-17", "43", SnapshotFit.UNKNOWN, 43),
        ("043", "43", SnapshotFit.UNKNOWN, 43),
    ],
)
def test_plan_snapshot(
    snapshot_id: str | None, newest: str | None, fit: SnapshotFit, covered: int | None
) -> None:
    plan = plan_snapshot(snapshot_id, newest)
    assert (plan.fit, plan.covered) == (fit, covered)


def test_snapshot_issued() -> None:
    assert snapshot_issued("45", "45")
    assert snapshot_issued("45", "46")
    assert not snapshot_issued("45", "44")  # a snapshot of an event the log never issued
    assert not snapshot_issued("45", None)
    assert not snapshot_issued("x", "46")


def test_plan_fill_stops_at_covered() -> None:
    read = LogRead("45", [LoggedEvent(str(n), n) for n in range(41, 46)])
    assert [e.id for e in plan_fill(read, 43) or []] == ["41", "42", "43"]
    assert plan_fill(LogRead("45", None), 43) is None
    assert plan_fill(LogRead("45", []), 43) == []


# --------------------------------------------------------- plan_cluster_drain

POLICY = SpreadPolicy(min_window=2.0, rate=1_000.0, base=0.25)


def test_drain_spreads_over_the_live_peers_rates() -> None:
    nodes = [
        NodeStatus("a", 300.0),
        NodeStatus("b", 300.0),
        NodeStatus("c", 200.0),
    ]
    plan = plan_cluster_drain(1_500, me="a", nodes=nodes, now=100.0, policy=POLICY)
    assert plan.survivors == ("b", "c")
    assert plan.spread == SpreadPolicy(min_window=2.0, rate=500.0, base=0.25)
    assert plan.spread.window(1_500) == 3.0  # 1500 / (300 + 200)
    assert plan.ends == 100.0 + 0.25 + 3.0


def test_drain_window_never_below_min_window() -> None:
    nodes = [NodeStatus("a", 300.0), NodeStatus("b", 300.0)]
    plan = plan_cluster_drain(10, me="a", nodes=nodes, now=0.0, policy=POLICY)
    assert plan.spread.window(10) == 2.0
    assert plan.ends == 2.25


def test_draining_and_zero_rate_nodes_are_no_survivors() -> None:
    nodes = [
        NodeStatus("a", 300.0),
        NodeStatus("b", 300.0, draining=True, drain_ends=50.0),
        NodeStatus("c", 0.0),
        NodeStatus("d", 100.0),
    ]
    plan = plan_cluster_drain(100, me="a", nodes=nodes, now=10.0, policy=POLICY)
    assert plan.survivors == ("d",)
    assert plan.spread.rate == 100.0


def test_alone_the_nodes_own_policy_applies() -> None:
    plan = plan_cluster_drain(3_000, me="a", nodes=[NodeStatus("a", 300.0)], now=5.0, policy=POLICY)
    assert plan.survivors == ()
    assert plan.spread == POLICY
    assert plan.ends == 5.0 + 0.25 + 3.0  # 3000 / 1000


def test_second_drain_starts_where_the_first_ends() -> None:
    # Node a drains 900 clients at t=10 onto b and c (600/s): 1.5 s window.
    nodes = [NodeStatus("a", 300.0), NodeStatus("b", 300.0), NodeStatus("c", 300.0)]
    first = plan_cluster_drain(900, me="a", nodes=nodes, now=10.0, policy=POLICY)
    assert first.spread.window(900) == 2.0  # min_window: 900 / 600 = 1.5 < 2
    assert first.ends == 12.25
    # b drains at t=11, while a's window is still open: a is draining, so
    # only c survives, and b's clients start arriving only once a's end.
    nodes = [
        NodeStatus("a", 300.0, draining=True, drain_ends=first.ends),
        NodeStatus("b", 300.0),
        NodeStatus("c", 300.0),
    ]
    second = plan_cluster_drain(900, me="b", nodes=nodes, now=11.0, policy=POLICY)
    assert second.survivors == ("c",)
    assert second.spread.rate == 300.0
    assert second.spread.base == pytest.approx(0.25 + 1.25)  # waits for 12.25
    assert second.spread.window(900) == 3.0
    assert second.ends == pytest.approx(12.25 + 0.25 + 3.0)
    # Their windows do not overlap on c: the second's first arrival is after
    # the first's last one.
    assert 11.0 + second.spread.base >= first.ends


def test_a_finished_drain_does_not_delay_the_next() -> None:
    nodes = [
        NodeStatus("a", 300.0, draining=True, drain_ends=5.0),  # ended before now
        NodeStatus("b", 300.0),
        NodeStatus("c", 300.0),
    ]
    plan = plan_cluster_drain(600, me="b", nodes=nodes, now=8.0, policy=POLICY)
    assert plan.spread.base == 0.25
    assert plan.ends == 8.0 + 0.25 + 2.0


def test_my_own_earlier_drain_end_is_ignored() -> None:
    nodes = [
        NodeStatus("a", 300.0, draining=True, drain_ends=50.0),
        NodeStatus("b", 300.0),
    ]
    plan = plan_cluster_drain(600, me="a", nodes=nodes, now=8.0, policy=POLICY)
    assert plan.spread.base == 0.25


def test_a_fresh_client_starts_at_the_newest_event_when_told_so() -> None:
    """``replay_to_fresh=False`` (what ``serve`` uses): no history, no gap."""
    assert read_limit(None, max_replay=9, has_snapshot=False, replay_to_fresh=False) == 0
    assert read_limit("4", max_replay=9, has_snapshot=False, replay_to_fresh=False) == 9
    # The read of a fresh client with limit 0: the newest id, no events.
    plan = plan_resume(None, LogRead("43", None), has_snapshot=False, replay_to_fresh=False)
    assert (plan.action, plan.outcome, list(plan.events), plan.ready_id, plan.covered) == (
        ResumeAction.REPLAY,
        HandshakeOutcome.FRESH,
        [],
        "43",
        43,
    )
    # A returning client is replayed as before.
    plan = plan_resume("40", LogRead("43", EVENTS), has_snapshot=False, replay_to_fresh=False)
    assert (plan.outcome, list(plan.events)) == (HandshakeOutcome.REPLAYED, EVENTS)
