"""The herd's channels, the driver: the clients' subscriptions and the channels' ticker.

With ``channels=K`` (``herd --channels K``), :func:`~trio_reconnect.testing.run_herd`
gives its server a channel store, and every client, once connected,
subscribes to its ``K`` channels (:func:`~._herd_tally.pick_channels`), all
at once, and reads each in a task of its own, recording a
:class:`~._herd_tally.ChannelRun` per subscription. When every subscription
is active, a :class:`ChannelTicker` publishes one event into each channel
every ``channel_interval`` seconds (the channels staggered evenly over the
interval), through the steady phase, the restart and the return, until the
run stops it; the rules of :mod:`._herd_tally` then count each channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs
import trio

from .._client import ReconnectingWebSocket
from .._protocol import Gap, ServerEvent, Snapshot
from ..server import ChannelStore, ReconnectServer
from ._herd_tally import (
    ChannelRun,
    channel_names,
    channel_set_size,
    pick_channels,
    tally_channels,
)

__all__ = [
    "CHANNEL_FIELDS",
    "DEFAULT_CHANNEL_INTERVAL",
    "ChannelTicker",
    "HerdChannels",
    "RunChannels",
    "channel_counts",
    "channel_logs",
]

#: Seconds between two events of one channel (each channel gets one per interval).
DEFAULT_CHANNEL_INTERVAL: Final = 2.0


#: The fields of ``HerdResult`` that only a run with channels has.
CHANNEL_FIELDS: Final = (
    "channel_set",
    "events_published",
    "lost",
    "duplicated",
    "out_of_order",
    "gaps",
    "snapshots",
    "per_channel",
)


@attrs.define(eq=False)
class HerdChannels:
    """The channels of one herd run: names, each client's picks, every run recorded."""

    per_client: int
    clients: int
    seed: int
    names: list[str] = attrs.field(init=False)
    runs: list[ChannelRun] = attrs.field(init=False, factory=list)
    active: int = attrs.field(init=False, default=0)
    everyone_subscribed: trio.Event = attrs.field(init=False, factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self.names = channel_names(channel_set_size(self.per_client))

    async def client(self, ws: ReconnectingWebSocket, index: int) -> None:
        """Subscribe client ``index`` to its channels and record each run, forever."""
        async with trio.open_nursery() as nursery:
            for name in pick_channels(self.names, self.per_client, self.seed, index):
                run = ChannelRun(name)
                self.runs.append(run)
                nursery.start_soon(self._read, ws, run)

    async def _read(self, ws: ReconnectingWebSocket, run: ChannelRun) -> None:
        async with ws.subscribe(run.channel) as sub:
            start = sub.last_event_id
            run.start = None if start is None else int(start)
            self.active += 1
            if self.active == self.clients * self.per_client:
                self.everyone_subscribed.set()
            async for item in sub:
                if isinstance(item, ServerEvent):
                    run.items.append(int(item.id))
                elif isinstance(item, Gap | Snapshot):
                    run.items.append(item)


@attrs.define(eq=False)
class ChannelTicker:
    """Publishes one event into each channel every ``interval`` s.

    What each channel's log holds is read back from the store at the end
    (:func:`channel_logs`), not recorded here: an append the ticker's
    cancellation interrupts may be stored all the same.
    """

    server: ReconnectServer
    names: Sequence[str]
    interval: float
    scope: trio.CancelScope = attrs.field(init=False, factory=trio.CancelScope)

    async def run(self) -> None:
        """Tick until :attr:`scope` is cancelled."""
        step = self.interval / len(self.names)
        tick = 0
        with self.scope:
            while True:
                tick += 1
                for name in self.names:
                    await self.server.publish(name, {"tick": tick})
                    await trio.sleep(step)


async def channel_logs(store: ChannelStore, names: Sequence[str]) -> dict[str, list[int]]:
    """Each channel's ids, ``1`` to its newest (the herd's store counts from 1)."""
    heads = await store.heads(names)
    return {name: list(range(1, int(heads[name]) + 1)) for name in names}


@attrs.define(eq=False)
class RunChannels:
    """A run's channels: the clients' side, the store, and each channel's log at the end."""

    herd: HerdChannels
    store: ChannelStore
    logs: dict[str, list[int]] = attrs.field(factory=dict)


def channel_counts(channels: RunChannels | None) -> dict[str, Any]:
    """The channel fields of a ``HerdResult`` (none without channels)."""
    if channels is None:
        return {}
    tallies = tally_channels(channels.logs, channels.herd.runs)
    total = {
        name: sum(getattr(t, name) for t in tallies.values())
        for name in ("published", "lost", "duplicated", "out_of_order", "gaps", "snapshots")
    }
    return {
        "channels": channels.herd.per_client,
        "channel_set": channel_set_size(channels.herd.per_client),
        "events_published": total.pop("published"),
        **total,
        "per_channel": {name: tally.summary() for name, tally in tallies.items()},
    }
