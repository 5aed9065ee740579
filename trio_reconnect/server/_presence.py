"""The node in its cluster registry: announcing, inheriting a window, planning a drain, leaving.

The driver of :class:`~trio_reconnect.server._cluster.Presence` (what to
announce, given ``now``) and of
:func:`~trio_reconnect.server.plan_cluster_drain`. A registry that fails is
logged and never stops the node: a drain then spreads locally, and a
missed announcement is made again at the next interval.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import trio

from ._cluster import ClusterRegistry, NodeStatus, Presence, plan_cluster_drain
from ._health import Admission
from ._spread import SpreadPolicy

if TYPE_CHECKING:
    from ._node import ClientSet, NodeConfig

__all__ = ["PresenceDriver"]

logger = logging.getLogger("trio_reconnect.server")


@attrs.define(eq=False)
class PresenceDriver:
    """Applies a node's :class:`~trio_reconnect.server._cluster.Presence` to its registry."""

    config: NodeConfig
    admission: Admission
    presence: Presence

    def status(self) -> NodeStatus:
        """What the node announces now."""
        registry = self.config.registry
        now = registry.now() if registry is not None else 0.0
        config = self.config
        rate = config.admission_rate if config.admission_rate is not None else config.spread.rate
        return self.presence.status(now, rate=rate, stopping=self.admission.stopping)

    async def plan_drain(self, clients: ClientSet) -> tuple[SpreadPolicy, tuple[str, ...]]:
        """The spread of a drain of the open ``clients``, and the peers it goes to.

        Over the cluster with a registry (announcing the drain's window before
        any client is closed); else, or when the registry fails, local.
        """
        config = self.config
        registry = config.registry
        if registry is None:
            return config.spread, ()
        assert config.node is not None
        try:
            nodes = await registry.nodes()
            plan = plan_cluster_drain(
                len(clients.open()),
                me=config.node,
                nodes=nodes,
                now=registry.now(),
                policy=config.spread,
            )
            self.presence.drained(plan)
            await registry.announce(self.status(), ttl=config.announce_ttl)
        except Exception:
            logger.warning("cluster registry failed; spreading the drain locally", exc_info=True)
            return config.spread, ()
        return plan.spread, plan.survivors

    async def leave(self) -> None:
        """Withdraw after a stop, or leave the draining status until the window ends."""
        registry = self.config.registry
        if registry is None:
            return
        ttl = self.presence.leave(registry.now())
        try:
            if ttl is not None:
                await registry.announce(self.status(), ttl=ttl)
            else:
                await registry.withdraw(self.presence.node)
        except Exception:
            logger.warning("could not withdraw node %s", self.presence.node, exc_info=True)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Inherit the predecessor's open window, then announce every ``announce_interval``."""
        registry = self.config.registry
        assert registry is not None
        await self._inherit_window(registry)
        started = False
        while True:
            try:
                if not self.presence.left:
                    await registry.announce(self.status(), ttl=self.config.announce_ttl)
            except Exception:
                logger.warning("could not announce node %s", self.config.node, exc_info=True)
            if not started:
                started = True
                task_status.started()
            await trio.sleep(self.config.announce_interval)

    async def _inherit_window(self, registry: ClusterRegistry) -> None:
        try:
            nodes = await registry.nodes()
        except Exception:
            logger.warning("could not read the cluster registry", exc_info=True)
            return
        self.presence.inherit(nodes, registry.now())
