"""Several nodes on one store: what each publishes, and how a draining node spreads. Pure.

No trio, no clock: ``now`` comes in as an argument, on the registry's clock
(see :meth:`ClusterRegistry.now`).

A drain over the cluster (PROTOCOL.md section 3.2)
--------------------------------------------------

A node that drains N clients sends them to the *other* nodes, so the rate
that bounds its window is not its own but the sum of the admission rates of
the nodes that are alive and not draining::

    R_cluster = sum(rate of every live node that is not draining, this one excluded)
    window    = max(min_window, N / R_cluster)

Two nodes that drain at once must not stack their windows onto the same
survivors: the second drain's window starts where the first one ends. So a
draining node publishes ``drain_ends`` (the end of its window on the
registry's clock), and a node that starts draining while another one's
window is still open starts its own window at the latest such end.

A window outlives the process that drained: its clients keep arriving at
the survivors until it ends, whether the node exited or not. So a node that
stops leaves its draining status in the registry until its window ends (the
announcement's TTL), and a new process that takes over the node's name
while that window is open (a rolling deploy restarting ``host:port``)
carries the predecessor's ``drain_ends`` in its own, not draining,
announcements until it has passed. The planner honours every other node's
``drain_ends``, draining or not.

When no other node is alive (a single node restarting), the clients come
back to this node's successor: the node's own spread policy applies
unchanged.

A node's presence (:class:`Presence`), given ``now``
----------------------------------------------------

==========================================  ===============================================
the node ...                                announces
==========================================  ===============================================
stops (until it has left), or its own       ``draining``, ``drain_ends`` = its window's end
drain's window is open at ``now``           (``None`` while stopping with no window)
is not draining, and the window it          not draining, ``drain_ends`` = that window's end
inherited is open at ``now``
neither                                     not draining, no ``drain_ends``
has left (after a stop)                     nothing more, except: while its window is
                                            open, one last ``draining`` status whose TTL
                                            ends with the window; else it withdraws
==========================================  ===============================================

A node inherits the open window of the latest announcement under its own
name when it starts (the process it replaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from ._spread import SpreadPolicy

__all__ = [
    "ClusterDrainPlan",
    "ClusterRegistry",
    "NodeStatus",
    "Presence",
    "plan_cluster_drain",
]


@attrs.frozen
class NodeStatus:
    """What one node publishes in the shared registry.

    Attributes:
        node: The node's name, unique in the cluster.
        admission_rate: Handshakes per second it admits (its admission rate,
            or its spread rate when admission is unlimited).
        draining: Whether it is draining (refusing new handshakes).
        drain_ends: On the registry's clock, when the spread window of its
            drain ends; ``None`` when no window is open. A node that is not
            draining carries the window of the process it replaced under the
            same name while that window is open.
    """

    node: str
    admission_rate: float
    draining: bool = False
    drain_ends: float | None = None


class ClusterRegistry(Protocol):
    """Where the nodes of a cluster publish their :class:`NodeStatus` (with a TTL)."""

    def now(self) -> float:
        """The registry's clock, in seconds, shared by every node."""
        ...

    async def announce(self, status: NodeStatus, *, ttl: float) -> None:
        """Publish ``status``; it counts as alive for ``ttl`` seconds.

        Raises:
            ValueError: if ``ttl`` is not a finite number above zero (every
                backend: an announcement that never expires would outlive
                its node).
        """
        ...

    async def nodes(self) -> Sequence[NodeStatus]:
        """Every node whose last announcement has not expired, this one included."""
        ...

    async def withdraw(self, node: str) -> None:
        """Remove ``node`` at once (it is gone)."""
        ...


@attrs.frozen
class ClusterDrainPlan:
    """How a draining node spreads its clients.

    Attributes:
        spread: The policy to plan the clients' ``retryAfter`` values with
            (:func:`~trio_reconnect.server.plan_spread`): its ``rate`` is the
            survivors' rate, its ``base`` includes the wait for an earlier
            drain's window to end.
        ends: On the registry's clock, when this drain's window ends.
        survivors: The nodes the clients are spread over.
    """

    spread: SpreadPolicy
    ends: float
    survivors: tuple[str, ...]


def plan_cluster_drain(
    clients: int,
    *,
    me: str,
    nodes: Sequence[NodeStatus],
    now: float,
    policy: SpreadPolicy,
) -> ClusterDrainPlan:
    """Plan the drain of ``clients`` clients from node ``me`` over the live ``nodes``.

    Args:
        clients: How many clients are closed.
        me: This node's name (excluded from the survivors).
        nodes: The live nodes, as :meth:`ClusterRegistry.nodes` returns them.
        now: The registry's clock now.
        policy: This node's own spread policy (its ``min_window`` and
            ``base`` apply; its ``rate`` is used when no survivor is left).
    """
    survivors = tuple(
        sorted(n.node for n in nodes if n.node != me and not n.draining and n.admission_rate > 0)
    )
    rate = sum(n.admission_rate for n in nodes if n.node in survivors) or policy.rate
    start = max([now] + [n.drain_ends for n in nodes if n.node != me and n.drain_ends is not None])
    spread = SpreadPolicy(min_window=policy.min_window, rate=rate, base=policy.base + start - now)
    return ClusterDrainPlan(
        spread=spread, ends=now + spread.base + spread.window(clients), survivors=survivors
    )


@attrs.define(eq=False)
class Presence:
    """What one node announces, given ``now`` (the table in the module comment).

    Args:
        node: This node's name in the registry.
    """

    node: str
    #: On the registry's clock: when the window of this node's last drain ends.
    drain_ends: float | None = attrs.field(default=None, kw_only=True)
    #: The open drain window of the process this one replaced under its name.
    inherited_ends: float | None = attrs.field(default=None, kw_only=True)
    #: Whether a stop has left the registry (no more announcements).
    left: bool = attrs.field(default=False, kw_only=True)

    def status(self, now: float, *, rate: float, stopping: bool) -> NodeStatus:
        """The status to announce at ``now``, admitting ``rate`` handshakes per second."""
        ends = self.drain_ends
        draining = stopping or (ends is not None and now < ends)
        if not draining:
            inherited = self.inherited_ends
            ends = inherited if inherited is not None and now < inherited else None
        return NodeStatus(self.node, rate, draining=draining, drain_ends=ends)

    def inherit(self, nodes: Sequence[NodeStatus], now: float) -> None:
        """Carry the open window of the announcement under this node's name, if any."""
        for status in nodes:
            ends = status.drain_ends
            if status.node == self.node and ends is not None and ends > now:
                self.inherited_ends = ends

    def drained(self, plan: ClusterDrainPlan) -> None:
        """A drain was planned: its window is this node's from now on."""
        self.drain_ends = plan.ends

    def leave(self, now: float) -> float | None:
        """Stop announcing; the TTL of a last ``draining`` status, or ``None`` to withdraw."""
        self.left = True
        ends = self.drain_ends
        remaining = ends - now if ends is not None else 0.0
        return remaining if remaining > 0 else None
