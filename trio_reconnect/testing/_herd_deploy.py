"""The herd simulator's rolling deploy: K nodes on one log, each drained and replaced in turn.

:func:`run_rolling_deploy` runs ``nodes`` :class:`~trio_reconnect.server.ReconnectServer`
nodes on one :class:`~trio_reconnect.testing.MemoryNetwork`. They share one
:class:`~trio_reconnect.server.ReplayLog` and one
:class:`~trio_reconnect.server.MemoryRegistry`; each admits ``capacity``
handshakes per second. The clients are the same real clients as in
:func:`~trio_reconnect.testing.run_herd`, and they reach the nodes through a
model of a load balancer (:class:`~trio_reconnect.testing._herd_wire.Balancer`):
it picks a node for every new connection among the nodes its health check sees up (announced in the
registry, alive, not draining) and that the deploy has not taken out of
its rotation, round-robin or at random.

The run:

1. The nodes start, and a ticker publishes an event every
   ``event_interval`` seconds (on the first node in rotation) for the whole
   run.
2. The clients connect (ramped at half the cluster's capacity) and stay
   until every connection is stable.
3. At ``t0`` the deploy starts. For each node in turn: the deploy takes it
   out of the balancer's rotation, waits :data:`DEREGISTER_DELAY` (for
   connections already on their way to it), and stops it gracefully
   (:meth:`~trio_reconnect.server.ReconnectServer.shutdown`: a cluster-aware
   drain over the live peers). The node's process exits; ``restart_delay``
   seconds later a fresh node (a new process) starts on the same address,
   under the same name, and the balancer sees it up once it has announced
   itself. The deploy moves on to the next node at once, as a rolling update
   that waits only for the new node to be ready does, so a drain may start
   while the previous drain's window is still open.
4. When every client is ready again after the last replacement, the ticker
   stops, the last events are left to arrive, and every client's deliveries
   are checked against the log.

What is measured, from ``t0``: connection attempts per node and 100 ms bin
(at the TCP connect), refused handshakes, and per client:

* ``lost``: events of the log the client never got, except what a Gap or a
  Snapshot told it about exactly;
* ``duplicated``: event frames the client received a second time, counted on
  the wire (the client's own de-duplication would hide them from the
  application); ``app_duplicated`` counts what the application saw twice.
"""

from __future__ import annotations

import collections
import gc
import math
import random
import statistics
import time
from typing import Any, Final

import attrs
import trio
import trio.testing

from .._client import open_reconnecting_websocket
from .._metrics import nearest_rank
from .._protocol import Gap, ServerEvent, Snapshot
from .._state import ConnectionState, Transition
from .._transport import Target
from ..server import (
    MemoryRegistry,
    ReconnectServer,
    ReplayLog,
    SpreadPolicy,
)
from ._herd import (
    BIN_SECONDS,
    STEADY_SECONDS,
    HerdConfig,
    peak_rss_kb,
    round3,
    seed_trio_scheduler,
)
from ._herd_wire import Balancer, FrameTap, TappedStream
from ._network import MemoryNetwork
from ._strategies import strategy_options

__all__ = [
    "DEREGISTER_DELAY",
    "RollingResult",
    "run_rolling_deploy",
]

#: Seconds between taking a node out of the balancer's rotation and stopping it:
#: more than a connect's round trip, so no connection routed to it meets its 503s.
DEREGISTER_DELAY: Final = 0.5
#: Seconds the run waits after the ticker stops, for the last events to arrive.
_SETTLE: Final = 2.0
_URL: Final = "ws://cluster/"


@attrs.frozen
class RollingResult:
    """What one rolling deploy measured. Times are seconds of virtual time after ``t0``."""

    strategy: str
    clients: int
    #: Handshakes per second each node admits.
    capacity: float
    nodes: int
    balancer: str
    #: The worst node's peak arrivals per 100 ms over ``capacity x 0.1 s``.
    peak_ratio: float
    #: Each node's most connection attempts in one 100 ms bin (any of its processes).
    node_peaks: dict[str, int]
    #: ``capacity / 10``: a node's share of a perfectly paced return.
    ideal_per_100ms: float
    #: Events of the log some client never got (nor was told about).
    lost: int
    #: Event frames a client received twice (on the wire, across its connections).
    duplicated: int
    #: Events the application of some client received twice.
    app_duplicated: int
    gaps: int
    snapshots: int
    events_published: int
    #: Events replayed in resume handshakes after ``t0`` (every node process).
    events_replayed: int
    #: When every client was ready again after the last replacement (``None``: not all).
    all_ready_s: float | None
    #: One entry per drain: which node, when, how many clients, the window, the survivors.
    drains: tuple[dict[str, Any], ...]
    refused_handshakes: int
    #: Connection attempts after ``t0``.
    attempts: int
    #: Client reconnects (a close followed by ``ready``) after ``t0``.
    reconnects: int
    median_reconnect_s: float | None
    p95_reconnect_s: float | None
    max_reconnect_s: float | None
    #: Clients not ready when the run stopped.
    not_ready: int
    #: Clients on each node at the end.
    final_clients: dict[str, int]
    wall_s: float
    #: Peak resident memory of the process, MiB (``None`` without :mod:`resource`).
    rss_mb: float | None
    latency: float
    accept_rate: float
    seed: int
    #: Each node's arrivals per 100 ms bin from ``t0`` on (for plots).
    arrivals: dict[str, tuple[int, ...]] = attrs.field(repr=False)

    def summary(self) -> dict[str, Any]:
        """The result as a JSON-ready dict, without the per-bin arrivals."""
        data = attrs.asdict(self)
        del data["arrivals"]
        data["drains"] = list(self.drains)
        return data


@attrs.define
class _Client:
    state: ConnectionState | None = None
    lost_at: float | None = None
    durations: list[float] = attrs.field(factory=list)
    #: Event ids received on the wire, every connection, in order.
    wire: list[int] = attrs.field(factory=list)
    #: What the application got, in order.
    items: list[ServerEvent | Snapshot | Gap] = attrs.field(factory=list)


@attrs.define
class _Recorder:
    clients: list[_Client]
    t0: float | None = None
    open: int = 0
    deployed: bool = False
    everyone_open: trio.Event = attrs.field(factory=trio.Event)
    arrivals: dict[str, collections.Counter[int]] = attrs.field(
        factory=lambda: collections.defaultdict(collections.Counter)
    )

    def transition(self, index: int, change: Transition) -> None:
        client = self.clients[index]
        was_open = client.state is ConnectionState.OPEN
        client.state = change.state
        is_open = change.state is ConnectionState.OPEN
        self.open += int(is_open) - int(was_open)
        if self.t0 is not None:
            if change.state is ConnectionState.BACKING_OFF and client.lost_at is None:
                client.lost_at = change.time
            elif is_open and client.lost_at is not None:
                client.durations.append(change.time - client.lost_at)
                client.lost_at = None
        if self.open == len(self.clients) and (self.t0 is None or self.deployed):
            self.everyone_open.set()

    def arrival(self, node: str) -> None:
        if self.t0 is not None:
            self.arrivals[node][math.floor((trio.current_time() - self.t0) / BIN_SECONDS)] += 1


def _check_deliveries(client: _Client, newest: int) -> tuple[int, int, int, int]:
    """``(lost, app_duplicated, gaps, snapshots)`` of one client's deliveries (ids 1..newest)."""
    delivered: set[int] = set()
    covered: set[int] = set()
    app_duplicated = gaps = snapshots = 0
    gap_after: int | None = None
    for item in client.items:
        upto: int | None
        if isinstance(item, Gap):
            gaps += 1
            gap_after = int(item.last_id) if item.last_id is not None else 0
            continue
        if isinstance(item, Snapshot):
            snapshots += 1
            upto = int(item.id) if item.id is not None else 0
            covered.update(range(1, upto + 1))
        else:
            upto = int(item.id) - 1
            if int(item.id) in delivered:
                app_duplicated += 1
            delivered.add(int(item.id))
        if gap_after is not None:
            covered.update(range(gap_after + 1, upto + 1))
            gap_after = None
    if gap_after is not None:
        covered.update(range(gap_after + 1, newest + 1))
    lost = sum(1 for seq in range(1, newest + 1) if seq not in delivered and seq not in covered)
    return lost, app_duplicated, gaps, snapshots


@attrs.define(eq=False)
class _Cluster:
    """The nodes of one rolling deploy: their shared log and registry, every process."""

    config: HerdConfig
    network: MemoryNetwork
    balancer: Balancer
    #: The clients' options (the strategy's), shared by every client.
    options: dict[str, Any]
    log: ReplayLog = attrs.field(factory=lambda: ReplayLog(start=1))
    servers: dict[str, ReconnectServer] = attrs.field(factory=dict)
    generations: list[ReconnectServer] = attrs.field(factory=list)
    scopes: dict[str, trio.CancelScope] = attrs.field(factory=dict)
    ticking: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    @classmethod
    def build(cls, config: HerdConfig, recorder: _Recorder) -> _Cluster:
        seed = config.seed
        network = MemoryNetwork(
            random=random.Random(f"network-{seed}"), latency=config.latency, jitter=config.jitter
        )
        network.on_connect(lambda link: recorder.arrival(link.target.host))
        names = [f"node{i}" for i in range(config.nodes)]
        balancer = Balancer(
            names, MemoryRegistry(), config.balancer, random.Random(f"balancer-{seed}")
        )
        options = strategy_options(config.strategy)
        options.update(max_attempts=None, ping_interval=None)
        return cls(config, network, balancer, options)

    @property
    def names(self) -> list[str]:
        return list(self.balancer.names)

    @property
    def registry(self) -> MemoryRegistry:
        return self.balancer.registry

    def new_server(self, name: str) -> ReconnectServer:
        config = self.config
        server = ReconnectServer(
            self.log,
            spread=SpreadPolicy(rate=config.capacity),
            admission_rate=config.capacity,
            registry=self.registry,
            node=name,
            rng=random.Random(f"server-{config.seed}-{name}-{len(self.generations)}"),
        )
        self.generations.append(server)
        self.servers[name] = server
        return server

    async def start(self, name: str, nursery: trio.Nursery) -> None:
        """Start a new process of the node ``name``."""
        self.scopes[name] = await nursery.start(self._run_node, self.new_server(name), name)

    async def _run_node(
        self,
        server: ReconnectServer,
        name: str,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """One node process: serve until the scope is cancelled (the process exits)."""
        listener = self.network.listen(name, 80, accept_rate=self.config.effective_accept_rate)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve_listeners, [listener])
                task_status.started(scope)

    async def tick(self) -> None:
        """Publish an event on the first node in rotation, every ``event_interval`` seconds."""
        with self.ticking:
            while True:
                up = [name for name in self.names if name not in self.balancer.out]
                if up:
                    await self.servers[up[0]].publish({"tick": trio.current_time()})
                await trio.sleep(self.config.event_interval)

    def refused(self) -> int:
        return sum(s.statistics().refused for s in self.generations)

    def replayed(self) -> int:
        return sum(s.statistics().events_replayed for s in self.generations)

    async def replace(self, name: str, nursery: trio.Nursery, t0: float) -> dict[str, Any]:
        """Take ``name`` out, stop it gracefully, start a new process; what its drain did."""
        self.balancer.out.add(name)
        await trio.sleep(DEREGISTER_DELAY)
        at = trio.current_time() - t0
        summary = await self.servers[name].shutdown()
        left = {n.node: n for n in await self.registry.nodes()}.get(name)
        self.scopes[name].cancel()
        await trio.sleep(self.config.restart_delay)
        await self.start(name, nursery)
        self.balancer.out.discard(name)
        ends = left.drain_ends if left is not None else None
        return {
            "node": name,
            "at_s": round(at, 3),
            "drained": summary.drained,
            "aborted": summary.aborted,
            "window_s": round(summary.window, 3),
            "survivors": list(summary.survivors),
            "ends_s": None if ends is None else round(ends - t0, 3),
            "back_s": round(trio.current_time() - t0, 3),
        }


async def _open_stream(
    cluster: _Cluster, recorder: _Recorder, index: int, target: Target
) -> trio.abc.Stream:
    node = await cluster.balancer.pick()
    if node is None:
        raise ConnectionRefusedError("no node is up behind the load balancer")
    link = await cluster.network.connect(attrs.evolve(target, host=node), client=f"c{index}")
    return TappedStream(link.client_stream, FrameTap(recorder.clients[index].wire))


async def _client(cluster: _Cluster, recorder: _Recorder, index: int) -> None:
    """One client: ramped in at half the cluster's capacity; records what it receives."""
    config = cluster.config
    await trio.sleep(index / (0.5 * config.capacity * config.nodes))
    record = recorder.clients[index]
    async with open_reconnecting_websocket(
        _URL,
        open_stream=lambda target: _open_stream(cluster, recorder, index, target),
        random=random.Random(f"client-{config.seed}-{index}"),
        on_transition=lambda change: recorder.transition(index, change),
        **cluster.options,
    ) as ws:
        async for item in ws:
            if isinstance(item, ServerEvent | Snapshot | Gap):
                record.items.append(item)


async def _simulate(config: HerdConfig, recorder: _Recorder, out: dict[str, Any]) -> None:
    cluster = _Cluster.build(config, recorder)
    async with trio.open_nursery() as nursery:
        for name in cluster.names:
            await cluster.start(name, nursery)
        nursery.start_soon(cluster.tick)
        for index in range(config.clients):
            nursery.start_soon(_client, cluster, recorder, index)
        await recorder.everyone_open.wait()
        await trio.sleep(STEADY_SECONDS)
        gc.collect()
        recorder.everyone_open = trio.Event()
        refused_before, replayed_before = cluster.refused(), cluster.replayed()
        t0 = recorder.t0 = trio.current_time()
        drains: list[dict[str, Any]] = []
        with trio.move_on_after(config.effective_horizon) as waited:
            for name in cluster.names:
                drains.append(await cluster.replace(name, nursery, t0))
            recorder.deployed = True
            if recorder.open == len(recorder.clients):
                recorder.everyone_open.set()
            await recorder.everyone_open.wait()
        out["all_ready_s"] = None if waited.cancelled_caught else trio.current_time() - t0
        out["drains"] = drains
        out["refused"] = cluster.refused() - refused_before
        out["replayed"] = cluster.replayed() - replayed_before
        out["final_clients"] = {name: len(cluster.servers[name].clients) for name in cluster.names}
        # Stop the ticker and let the last events arrive before the count.
        cluster.ticking.cancel()
        await trio.sleep(_SETTLE)
        newest = await cluster.log.newest()
        out["newest"] = int(newest) if newest is not None else 0
        out["not_ready"] = len(recorder.clients) - recorder.open
        nursery.cancel_scope.cancel()


def run_rolling_deploy(config: HerdConfig) -> RollingResult:
    """Run one rolling deploy (blocking; it calls :func:`trio.run`).

    Raises:
        ValueError: if ``config`` is not a rolling deploy.
    """
    if config.deploy != "rolling":
        raise ValueError("run_rolling_deploy needs deploy='rolling'")
    gc.collect()
    started = time.perf_counter()
    recorder = _Recorder([_Client() for _ in range(config.clients)])
    out: dict[str, Any] = {}
    seed_trio_scheduler(config.seed)
    trio.run(_simulate, config, recorder, out, clock=trio.testing.MockClock(autojump_threshold=0))
    wall = time.perf_counter() - started
    peak_rss = peak_rss_kb()
    newest = out["newest"]
    lost, duplicated, app_duplicated, gaps, snapshots = _tally(recorder.clients, newest)
    arrivals = _arrivals(recorder, config.nodes)
    node_peaks = {name: max(bins, default=0) for name, bins in arrivals.items()}
    ideal = config.capacity * BIN_SECONDS
    durations = [d for c in recorder.clients for d in c.durations]
    all_ready = out["all_ready_s"]
    return RollingResult(
        strategy=config.strategy,
        clients=config.clients,
        capacity=config.capacity,
        nodes=config.nodes,
        balancer=config.balancer,
        peak_ratio=round(max(node_peaks.values()) / ideal, 3),
        node_peaks=node_peaks,
        ideal_per_100ms=ideal,
        lost=lost,
        duplicated=duplicated,
        app_duplicated=app_duplicated,
        gaps=gaps,
        snapshots=snapshots,
        events_published=newest,
        events_replayed=out["replayed"],
        all_ready_s=None if all_ready is None else round(all_ready, 3),
        drains=tuple(out["drains"]),
        refused_handshakes=out["refused"],
        attempts=sum(sum(bins) for bins in arrivals.values()),
        reconnects=len(durations),
        median_reconnect_s=round3(statistics.median(durations) if durations else None),
        p95_reconnect_s=round3(nearest_rank(durations, 0.95)),
        max_reconnect_s=round3(max(durations, default=None)),
        not_ready=out["not_ready"],
        final_clients=out["final_clients"],
        wall_s=round(wall, 2),
        rss_mb=None if peak_rss is None else round(peak_rss / 1024, 1),
        latency=config.latency,
        accept_rate=config.effective_accept_rate,
        seed=config.seed,
        arrivals=arrivals,
    )


def _tally(clients: list[_Client], newest: int) -> tuple[int, int, int, int, int]:
    """``(lost, duplicated on the wire, app_duplicated, gaps, snapshots)`` of every client."""
    lost = duplicated = app_duplicated = gaps = snapshots = 0
    for client in clients:
        counts = collections.Counter(client.wire)
        duplicated += sum(n - 1 for n in counts.values() if n > 1)
        client_lost, client_dups, client_gaps, client_snapshots = _check_deliveries(client, newest)
        lost += client_lost
        app_duplicated += client_dups
        gaps += client_gaps
        snapshots += client_snapshots
    return lost, duplicated, app_duplicated, gaps, snapshots


def _arrivals(recorder: _Recorder, nodes: int) -> dict[str, tuple[int, ...]]:
    """Each node's connection attempts per bin from ``t0`` on, every bin up to its last."""
    arrivals: dict[str, tuple[int, ...]] = {}
    for name in (f"node{i}" for i in range(nodes)):
        bins = recorder.arrivals.get(name, collections.Counter())
        arrivals[name] = tuple(bins.get(i, 0) for i in range(max(bins, default=-1) + 1))
    return arrivals
