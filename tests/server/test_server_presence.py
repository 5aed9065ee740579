"""A node's presence in its cluster registry (server/_cluster.py): pure, given now."""

from __future__ import annotations

from trio_reconnect.server import NodeStatus, SpreadPolicy, plan_cluster_drain
from trio_reconnect.server._cluster import Presence


def test_a_node_with_no_window_announces_its_rate_only() -> None:
    assert Presence("a").status(5.0, rate=300.0, stopping=False) == NodeStatus("a", 300.0)


def test_its_own_drain_window_makes_it_draining_until_the_window_ends() -> None:
    presence = Presence("a")
    plan = plan_cluster_drain(
        100, me="a", nodes=[NodeStatus("b", 50.0)], now=10.0, policy=SpreadPolicy(base=0.0)
    )
    presence.drained(plan)
    assert presence.drain_ends == plan.ends == 12.0
    assert presence.status(11.0, rate=1.0, stopping=False) == NodeStatus(
        "a", 1.0, draining=True, drain_ends=12.0
    )
    assert presence.status(12.0, rate=1.0, stopping=False) == NodeStatus("a", 1.0)


def test_a_stopping_node_is_draining_with_or_without_a_window() -> None:
    presence = Presence("a")
    assert presence.status(0.0, rate=1.0, stopping=True) == NodeStatus("a", 1.0, draining=True)
    presence.drain_ends = 5.0
    assert presence.status(9.0, rate=1.0, stopping=True) == NodeStatus(
        "a", 1.0, draining=True, drain_ends=5.0
    )


def test_a_replacement_carries_its_predecessors_open_window_not_draining() -> None:
    presence = Presence("a")
    nodes = [
        NodeStatus("a", 1.0, draining=True, drain_ends=20.0),
        NodeStatus("b", 1.0, draining=True, drain_ends=30.0),  # another node's: not ours
    ]
    presence.inherit(nodes, 10.0)
    assert presence.inherited_ends == 20.0
    assert presence.status(15.0, rate=2.0, stopping=False) == NodeStatus("a", 2.0, drain_ends=20.0)
    assert presence.status(20.0, rate=2.0, stopping=False) == NodeStatus("a", 2.0)


def test_a_closed_window_is_not_inherited() -> None:
    presence = Presence("a")
    presence.inherit([NodeStatus("a", 1.0, draining=True, drain_ends=10.0)], 10.0)
    assert presence.inherited_ends is None


def test_leaving_keeps_the_draining_status_until_the_window_ends_else_withdraws() -> None:
    presence = Presence("a", drain_ends=25.0)
    assert presence.leave(20.0) == 5.0
    assert presence.left
    assert Presence("a", drain_ends=25.0).leave(25.0) is None
    assert Presence("a").leave(0.0) is None
