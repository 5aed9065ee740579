"""What ``demo --nodes N`` checks and prints: each deploy, the events, the publishes, presence.

The checks are pure: every client's events against the shared history read
back from Redis (:func:`check_events`), every acknowledged publish against the
channel's log read back from Redis (:func:`check_publishes`), and each node's
turn from its drain line and its clients' arrivals (:func:`node_deploy`).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ...server import DrainSummary
from ._arrivals import ARRIVAL_BIN
from ._arrivals import peak_per_bin as _peak

__all__ = [
    "ClusterDemoSummary",
    "EventCheck",
    "NodeDeploy",
    "PublishCheck",
    "check_events",
    "check_publishes",
    "node_deploy",
]


@attrs.frozen
class NodeDeploy:
    """One node's turn in the rolling deploy.

    Attributes:
        node: Its name.
        drained: Clients it closed with a spread hint on SIGTERM.
        window: Seconds its hints were spread over.
        peers: Survivors it spread them over.
        exit_status: Its exit status (0: a graceful stop).
        back_after: Seconds from SIGTERM until it served again.
        home_after: Seconds from SIGTERM until every client was connected again.
        peaks: Per survivor, the most arrivals in any 100 ms of the window.
        planned: The planned arrivals per 100 ms on each survivor.
        arrived: How many of the drained clients arrived on another node.
        arrival_span: Seconds from the first of those arrivals to the last.
    """

    node: str
    drained: int
    window: float
    peers: int
    exit_status: int
    back_after: float
    home_after: float
    peaks: dict[str, int]
    planned: float
    arrived: int = 0
    arrival_span: float = 0.0


@attrs.frozen
class EventCheck:
    """Every client's events against the shared history."""

    published: int
    per_node: dict[str, int]
    delivered_min: int
    delivered_max: int
    lost: int
    duplicated: int


def check_events(
    history: Sequence[tuple[str, Any]], target: str, received: Sequence[Sequence[str]]
) -> EventCheck:
    """Each client's ids (``received``) against ``history`` ((id, data)) up to ``target``."""
    position = {event_id: n for n, (event_id, _) in enumerate(history)}
    last = position[target]
    lost = duplicated = 0
    for ids in received:
        seen = collections.Counter(ids)
        duplicated += sum(n - 1 for n in seen.values())
        lost += sum(1 for event_id, _ in history[: last + 1] if event_id not in seen)
        lost += sum(1 for event_id in seen if event_id not in position)  # not in the log
    per_node = collections.Counter(
        str(data.get("node")) for _, data in history if isinstance(data, dict)
    )
    return EventCheck(
        published=len(history),
        per_node=dict(per_node),
        delivered_min=min(len(set(ids)) for ids in received),
        delivered_max=max(len(set(ids)) for ids in received),
        lost=lost,
        duplicated=duplicated,
    )


@attrs.frozen
class PublishCheck:
    """Every acknowledged publish against the channel's log.

    Attributes:
        acked: Publishes acknowledged.
        applied_once: Of those, the ones the log holds exactly once, at the
            id their ``ack`` gave.
        duplicated: Entries of the log beyond the first for one publish.
        missing: Acknowledged publishes the log does not hold.
    """

    acked: int
    applied_once: int
    duplicated: int
    missing: int


def check_publishes(
    acked: Mapping[tuple[int, int], str], log: Iterable[tuple[str, Any]]
) -> PublishCheck:
    """``acked`` ((client, n) -> the ack's id) against ``log`` ((id, data) oldest first)."""
    held: dict[tuple[Any, Any], list[str]] = collections.defaultdict(list)
    for event_id, data in log:
        if isinstance(data, dict):
            held[(data.get("client"), data.get("n"))].append(event_id)
    return PublishCheck(
        acked=len(acked),
        applied_once=sum(1 for key, event_id in acked.items() if held.get(key) == [event_id]),
        duplicated=sum(len(ids) - 1 for ids in held.values()),
        missing=sum(1 for key in acked if key not in held),
    )


@attrs.frozen
class ClusterDemoSummary:
    """The result of the rolling-deploy demo (``--json`` prints it as one object)."""

    nodes: int
    clients: int
    duration_s: float
    deploys: tuple[NodeDeploy, ...]
    events_published: int
    published_per_node: dict[str, int]
    delivered_min: int
    delivered_max: int
    lost: int
    duplicated: int
    told: int
    publish_channel: str = ""
    publishers: int = 0
    publishes_acked: int = 0
    publishes_failed: int = 0
    publishes_applied_once: int = 0
    publishes_duplicated: int = 0
    publishes_missing: int = 0
    presence_room: str = ""
    presence_members: int = 0
    presence_members_seen_min: int = 0
    presence_leaves: int = 0
    presence_joins: int = 0

    @property
    def ok(self) -> bool:
        """Nothing lost or duplicated, every publish applied once, no flap, graceful stops."""
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.told == 0
            and all(d.exit_status == 0 for d in self.deploys)
            and self.publishes_failed == 0
            and self.publishes_applied_once == self.publishes_acked
            and self.publishes_duplicated == 0
            and self.presence_members_seen_min == self.presence_members
            and self.presence_leaves == 0
            and self.presence_joins == 0
        )

    def table(self) -> str:
        """The summary as aligned lines."""
        rows: list[tuple[str, str]] = [
            ("nodes", f"{self.nodes} processes sharing one Redis stream"),
            ("clients", str(self.clients)),
            ("duration", f"{self.duration_s:.1f} s"),
        ]
        for d in self.deploys:
            rows += _deploy_rows(d)
        per_node = ", ".join(f"{n} {c}" for n, c in sorted(self.published_per_node.items()))
        rows += [
            ("events published", f"{self.events_published} ({per_node})"),
            ("delivered per client", f"{self.delivered_min} .. {self.delivered_max}"),
            ("lost (all clients)", str(self.lost)),
            ("duplicated (all clients)", str(self.duplicated)),
            ("gaps or snapshots", str(self.told)),
            *self._publish_rows(),
            ("result", self._result()),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"  {name:<{width}}  {value}".rstrip() for name, value in rows)

    def _publish_rows(self) -> list[tuple[str, str]]:
        return [
            (
                "publishes acked",
                f"{self.publishes_acked} by {self.publishers} clients into "
                f"{self.publish_channel!r} through the deploy ({self.publishes_failed} failed)",
            ),
            (
                "applied exactly once",
                f"{self.publishes_applied_once} of {self.publishes_acked} in the channel's log "
                f"({self.publishes_duplicated} twice, {self.publishes_missing} missing)",
            ),
            (
                "presence leaves seen",
                f"{self.presence_leaves} during the deploy, by {self.presence_members} members "
                f"of {self.presence_room!r} watching each other ({self.presence_joins} joins; "
                f"{self._members_at_end()})",
            ),
        ]

    def _members_at_end(self) -> str:
        if self.presence_members_seen_min == self.presence_members:
            return f"each sees all {self.presence_members} at the end"
        return f"one sees only {self.presence_members_seen_min} at the end"

    def _result(self) -> str:
        if self.ok:
            return "OK: nothing lost, nothing duplicated, nobody seen leaving"
        return "FAILED"

    def as_json(self) -> str:
        """The summary as one JSON object."""
        return json.dumps({**attrs.asdict(self), "ok": self.ok})


def _deploy_rows(d: NodeDeploy) -> list[tuple[str, str]]:
    peaks = ", ".join(f"{name} {peak}" for name, peak in sorted(d.peaks.items()))
    return [
        (
            d.node,
            f"SIGTERM: drained {d.drained} clients over {d.window:.2f} s to "
            f"{d.peers} peers, exit {d.exit_status}; serving again after "
            f"{d.back_after:.1f} s; every client back after {d.home_after:.1f} s",
        ),
        (
            "",
            f"peak arrivals / 100 ms: {peaks or '-'} (plan {d.planned:.1f} each); "
            f"{d.arrived} of them came to a peer, over {d.arrival_span:.2f} s "
            f"(the others to {d.node} again)",
        ),
    ]


def node_deploy(
    node: str,
    url: str,
    output: str,
    exit_status: int,
    times: tuple[float, float, float],
    arrivals: Iterable[Sequence[tuple[float, str]]],
    names: Mapping[str, str],
) -> NodeDeploy:
    """What ``node``'s turn did, from its output's drain line and its drained clients' arrivals.

    Args:
        node: The node's name.
        url: Its url.
        output: Its stdout (with the drain line).
        exit_status: How it exited.
        times: When SIGTERM was sent, seconds from then until it served
            again, and until every client was back.
        arrivals: The (time, url) arrivals of each client it drained.
        names: Node name by url.
    """
    t0, back, home = times
    summary = DrainSummary.from_output(output)
    drained, window, peers = (0, 0.0, 0)
    if summary is not None:
        drained, window, peers = summary.drained, summary.window, len(summary.survivors)
    by_node: dict[str, list[float]] = collections.defaultdict(list)
    for client in arrivals:
        for when, to in client:
            if when >= t0 and to != url:
                by_node[names[to]].append(when)
                break
    every = [t for ts in by_node.values() for t in ts]
    return NodeDeploy(
        node=node,
        drained=drained,
        window=window,
        peers=peers,
        exit_status=exit_status,
        back_after=back,
        home_after=home,
        peaks={name: _peak(ts, t0) for name, ts in by_node.items()},
        planned=drained / window * ARRIVAL_BIN / max(peers, 1) if window > 0 else 0.0,
        arrived=len(every),
        arrival_span=max(every) - min(every) if every else 0.0,
    )
