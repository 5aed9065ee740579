"""The herd simulator: N real clients, one real server, a restart, in virtual time.

:func:`run_herd` builds a :class:`~trio_reconnect.testing.MemoryNetwork`
with some latency, serves a :class:`~trio_reconnect.server.ReconnectServer`
on it with admission control at ``capacity`` handshakes per second (and a
spread planned for that rate), and connects ``clients`` real
:func:`~trio_reconnect.open_reconnecting_websocket` clients configured as one
of the :data:`~trio_reconnect.testing.STRATEGIES`. Everything runs under
trio's ``MockClock`` with ``autojump_threshold=0``, so virtual time jumps
whenever every task waits, and a run of minutes of virtual time costs only
the CPU of the handshakes.

The run:

1. The clients connect, ramped at half the capacity so that none is
   refused, and stay until every connection is stable (``stable_after``).
2. At ``t0`` the server restarts: every client is closed with 1012 and a
   spread ``retryAfter`` (which only ``server-spread`` follows).
3. The storm is measured until every client is ready again, or until
   ``horizon`` seconds of virtual time have passed.

What is measured, from ``t0``:

* arrivals: connection attempts reaching the server (the TCP connect, before
  any accept queue), counted per 100 ms bin: the load a herd puts on a server;
* ``refused_handshakes``: the 503s of admission control;
* per client, the reconnect duration: from the close to ``ready``;
* with ``channels=K``, each channel's lost and duplicated events
  (:mod:`._herd_channels`, :mod:`._herd_tally`).

The server's raw handshake throughput is modelled by the listener's
``accept_rate`` (default 10 x capacity): connections beyond it wait in the
accept queue, as in a kernel's. Without it a client that retries with no
delay would, in virtual time, retry infinitely often.
"""

from __future__ import annotations

import collections
import gc
import math
import os
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any, Final

import attrs
import trio
import trio.testing

from .._client import open_reconnecting_websocket
from .._metrics import nearest_rank
from .._options import DEFAULT_STABLE_AFTER
from .._state import ConnectionState, Transition
from .._validators import (
    non_negative_int,
    non_negative_number,
    optional_positive_number,
    positive_int,
    positive_number,
)
from ..server import (
    DEFAULT_MAX_SUBSCRIPTIONS,
    ChannelStore,
    MemoryChannelStore,
    ReconnectServer,
    ReplayLog,
    SpreadPolicy,
)
from ._herd_channels import (
    CHANNEL_FIELDS,
    DEFAULT_CHANNEL_INTERVAL,
    ChannelTicker,
    HerdChannels,
    RunChannels,
    channel_counts,
    channel_logs,
)
from ._network import MemoryNetwork
from ._strategies import strategy_options

__all__ = [
    "BALANCERS",
    "BIN_SECONDS",
    "DEFAULT_EVENT_INTERVAL",
    "DEFAULT_JITTER",
    "DEFAULT_LATENCY",
    "DEFAULT_RESTART_DELAY",
    "STEADY_SECONDS",
    "DEPLOYS",
    "HerdConfig",
    "HerdResult",
    "run_herd",
]

#: The width of an arrival bin, seconds.
BIN_SECONDS: Final = 0.1
_URL: Final = "ws://server/"
#: How the nodes are deployed: all at once (one node restarts) or one by one.
DEPLOYS: Final = ("restart", "rolling")
#: How a rolling deploy's load balancer spreads new connections over the nodes it sees up.
BALANCERS: Final = ("round-robin", "random")
#: One-way latency of the simulated network, seconds.
DEFAULT_LATENCY: Final = 0.025
#: Extra one-way latency of the simulated network (uniform in ``[0, jitter]``), seconds.
DEFAULT_JITTER: Final = 0.010
#: Seconds the clients stay connected before the restart or the deploy: long
#: enough for every connection to be stable, so that the drop resets no streak.
STEADY_SECONDS: Final = DEFAULT_STABLE_AFTER + 1.0
#: Seconds between the events a rolling deploy's ticker publishes.
DEFAULT_EVENT_INTERVAL: Final = 0.5
#: Seconds between a node's exit and its replacement's start in a rolling deploy.
DEFAULT_RESTART_DELAY: Final = 1.0
#: Seconds a run with channels waits after its ticker stops, for the last events to arrive.
CHANNEL_SETTLE_SECONDS: Final = 2.0


def _strategy(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    strategy_options(value)  # raises ValueError for an unknown name


def _one_of(choices: Sequence[str]) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            raise ValueError(f"unknown {attribute.name} {value!r}; known: {', '.join(choices)}")

    return check


@attrs.frozen
class HerdConfig:
    """One herd run.

    Args:
        clients: How many clients.
        capacity: Handshakes per second the server admits (the rest get 503).
        strategy: A name from :data:`~trio_reconnect.testing.STRATEGIES`.
        latency: One-way network latency, seconds.
        jitter: Extra one-way latency, uniform in ``[0, jitter]``.
        accept_rate: Connections per second the server accepts, refused or
            not (``None``: ten times ``capacity``).
        horizon: Seconds of virtual time after the restart before the run
            stops waiting for stragglers (``None``: 600 s or 20 x N/R).
        seed: Seeds every random draw of the run.
        nodes: How many server nodes share the log (more than one needs
            ``deploy="rolling"``); ``capacity`` is per node.
        deploy: ``"restart"`` (one node restarts, :func:`run_herd`) or
            ``"rolling"`` (each node in turn drains and is replaced,
            ``run_rolling_deploy`` in ``trio_reconnect.testing._herd_deploy``).
        balancer: How the rolling deploy's load balancer picks a node for a
            new connection among those it sees up: ``"round-robin"`` or
            ``"random"`` (see docs/explanation/herd.md).
        event_interval: Seconds between the events the rolling deploy's
            ticker publishes.
        restart_delay: Seconds between a node's exit and its replacement's
            start in a rolling deploy.
        channels: Channels each client subscribes to (0: none, the default
            stream only), out of ``max(channels, 100)``; the run then counts
            ``lost`` and ``duplicated`` per channel (see
            docs/explanation/herd.md). A restart only, for now.
        channel_interval: Seconds between two events of each channel.
    """

    clients: int = attrs.field(validator=positive_int)
    capacity: float = attrs.field(validator=positive_number)
    strategy: str = attrs.field(default="server-spread", validator=_strategy)
    latency: float = attrs.field(default=DEFAULT_LATENCY, validator=non_negative_number)
    jitter: float = attrs.field(default=DEFAULT_JITTER, validator=non_negative_number)
    accept_rate: float | None = attrs.field(default=None, validator=optional_positive_number)
    horizon: float | None = attrs.field(default=None, validator=optional_positive_number)
    seed: int = 0
    nodes: int = attrs.field(default=1, kw_only=True, validator=positive_int)
    deploy: str = attrs.field(default="restart", kw_only=True, validator=_one_of(DEPLOYS))
    balancer: str = attrs.field(default="round-robin", kw_only=True, validator=_one_of(BALANCERS))
    event_interval: float = attrs.field(
        default=DEFAULT_EVENT_INTERVAL, kw_only=True, validator=positive_number
    )
    restart_delay: float = attrs.field(
        default=DEFAULT_RESTART_DELAY, kw_only=True, validator=non_negative_number
    )
    channels: int = attrs.field(default=0, kw_only=True, validator=non_negative_int)
    channel_interval: float = attrs.field(
        default=DEFAULT_CHANNEL_INTERVAL, kw_only=True, validator=positive_number
    )

    def __attrs_post_init__(self) -> None:
        if self.channels and self.deploy == "rolling":
            raise ValueError("channels run with deploy='restart' (--deploy restart) for now")
        if self.deploy == "rolling" and self.nodes < 2:
            raise ValueError("a rolling deploy needs at least 2 nodes")
        if self.deploy == "restart" and self.nodes > 1:
            raise ValueError("several nodes need deploy='rolling' (--deploy rolling)")

    @property
    def ideal_all_ready_s(self) -> float:
        """N / R: the soonest every client can be back at the admitted rate."""
        return self.clients / self.capacity

    @property
    def effective_accept_rate(self) -> float:
        """``accept_rate``, or its default."""
        return self.accept_rate if self.accept_rate is not None else 10 * self.capacity

    @property
    def effective_horizon(self) -> float:
        """``horizon``, or its default."""
        if self.horizon is not None:
            return self.horizon
        return max(600.0, 20 * self.ideal_all_ready_s)


@attrs.frozen
class HerdResult:
    """What one herd run measured. Times are seconds of virtual time after the restart."""

    strategy: str
    clients: int
    capacity: float
    #: Most connection attempts that reached the server in one 100 ms bin.
    peak_per_100ms: int
    #: ``capacity / 10``: what a perfectly paced return would put in each bin.
    ideal_per_100ms: float
    peak_ratio: float
    #: When the last client was ready again (``None``: not all within the horizon).
    all_ready_s: float | None
    ideal_all_ready_s: float
    refused_handshakes: int
    #: Connection attempts after the restart (every client makes at least one).
    attempts: int
    median_reconnect_s: float | None
    p95_reconnect_s: float | None
    max_reconnect_s: float | None
    #: Clients not ready again when the run stopped.
    not_ready: int
    wall_s: float
    #: Peak resident memory of the process, MiB (``None`` where the
    #: platform has no :mod:`resource` module, such as Windows).
    rss_mb: float | None
    #: Memory per connected client (resident growth over the baseline), KiB.
    rss_per_client_kb: float
    latency: float
    accept_rate: float
    seed: int
    #: Arrivals per 100 ms bin from the restart on (for plots).
    arrivals: tuple[int, ...] = attrs.field(repr=False)
    #: Channels each client subscribed to (0: none; the fields below are then ``None``).
    channels: int = 0
    #: How many channels there were (``max(channels, 100)``).
    channel_set: int = 0
    #: Events published into the channels, all of them.
    events_published: int | None = None
    #: Events of a channel some subscription never got nor was told about, all channels.
    lost: int | None = None
    #: Events a subscription got twice, all channels.
    duplicated: int | None = None
    #: Events a subscription got after a newer one (not twice), all channels.
    out_of_order: int | None = None
    #: Gaps and snapshots the subscriptions got instead of events, all channels.
    gaps: int | None = None
    snapshots: int | None = None
    #: Each channel's counts (:class:`~._herd_tally.ChannelTally` as a dict).
    per_channel: dict[str, dict[str, int]] = attrs.field(factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """The result as a JSON-ready dict, without the per-bin arrivals."""
        data = attrs.asdict(self)
        del data["arrivals"]
        if not self.channels:
            for name in CHANNEL_FIELDS:
                del data[name]
        return data


def _rss_kb() -> float:
    """Resident memory now, KiB (Linux ``/proc``; else the peak)."""
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return peak_rss_kb() or 0.0  # pragma: no cover


def peak_rss_kb() -> float | None:
    """Peak resident memory, KiB, or ``None`` without the POSIX :mod:`resource` module.

    Imported here, not at the top: ``trio_reconnect.testing`` is loaded by the
    pytest plugin in every test run of every project that has trio_reconnect,
    Windows included, where ``resource`` does not exist.
    """
    try:
        import resource
    except ImportError:
        return None
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@attrs.define
class _Client:
    lost_at: float | None = None
    ready_at: float | None = None


@attrs.define
class _Recorder:
    clients: list[_Client]
    t0: float | None = None
    ready: int = 0
    everyone_back: trio.Event = attrs.field(factory=trio.Event)
    everyone_stable: trio.Event = attrs.field(factory=trio.Event)
    arrivals: collections.Counter[int] = attrs.field(factory=collections.Counter)

    def transition(self, index: int, change: Transition) -> None:
        client = self.clients[index]
        if self.t0 is None:
            if change.state is ConnectionState.OPEN and client.ready_at is None:
                client.ready_at = change.time
                self.ready += 1
                if self.ready == len(self.clients):
                    self.everyone_stable.set()
            return
        if change.state is ConnectionState.BACKING_OFF and client.lost_at is None:
            client.lost_at = change.time
        elif (
            change.state is ConnectionState.OPEN
            and client.lost_at is not None
            and client.ready_at is None
        ):
            client.ready_at = change.time
            self.ready += 1
            if self.ready == len(self.clients):
                self.everyone_back.set()

    def arrival(self) -> None:
        if self.t0 is not None:
            self.arrivals[math.floor((trio.current_time() - self.t0) / BIN_SECONDS)] += 1


async def _simulate(
    config: HerdConfig, recorder: _Recorder, memory: list[float], channels: RunChannels | None
) -> int:
    seed = config.seed
    network = MemoryNetwork(
        random=random.Random(f"network-{seed}"), latency=config.latency, jitter=config.jitter
    )
    network.on_connect(lambda link: recorder.arrival())
    server = ReconnectServer(
        ReplayLog(),
        spread=SpreadPolicy(rate=config.capacity),
        admission_rate=config.capacity,
        rng=random.Random(f"server-{seed}"),
        channels=None if channels is None else channels.store,
        max_subscriptions=max(config.channels, DEFAULT_MAX_SUBSCRIPTIONS),
    )
    listener = network.listen("server", 80, accept_rate=config.effective_accept_rate)
    options = strategy_options(config.strategy)
    options.update(max_attempts=None, ping_interval=None)
    ramp = 0.5 * config.capacity

    async def client(index: int) -> None:
        await trio.sleep(index / ramp)
        async with open_reconnecting_websocket(
            _URL,
            open_stream=network.client(f"c{index}"),
            random=random.Random(f"client-{seed}-{index}"),
            on_transition=lambda change: recorder.transition(index, change),
            **options,
        ) as ws:
            if channels is None:
                await trio.sleep_forever()
            await channels.herd.client(ws, index)

    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve_listeners, [listener])
        for index in range(config.clients):
            nursery.start_soon(client, index)
        await recorder.everyone_stable.wait()
        ticker = None
        if channels is not None:
            await channels.herd.everyone_subscribed.wait()
            ticker = ChannelTicker(server, channels.herd.names, config.channel_interval)
            nursery.start_soon(ticker.run)
        await trio.sleep(STEADY_SECONDS)
        gc.collect()
        memory.append(_rss_kb())
        for record in recorder.clients:
            record.ready_at = None
        recorder.ready = 0
        refused_before = server.statistics().refused
        recorder.t0 = trio.current_time()
        nursery.start_soon(server.restart)
        with trio.move_on_after(config.effective_horizon):
            await recorder.everyone_back.wait()
        refused = server.statistics().refused - refused_before
        if channels is not None and ticker is not None:
            # Stop the ticker and let the last events arrive before the count.
            ticker.scope.cancel()
            await trio.sleep(CHANNEL_SETTLE_SECONDS)
            channels.logs = await channel_logs(channels.store, channels.herd.names)
        nursery.cancel_scope.cancel()
    return refused


def run_herd(config: HerdConfig, *, channel_store: ChannelStore | None = None) -> HerdResult:
    """Run one herd simulation (blocking; it calls :func:`trio.run`).

    Args:
        config: The run.
        channel_store: With ``config.channels``: the store of the server's
            channels, whose ids must count from 1 (default: a
            ``MemoryChannelStore(start=1)``; a test passes a broken one).

    Raises:
        ValueError: for a rolling deploy (run it with ``run_rolling_deploy``).
    """
    if config.deploy != "restart":
        raise ValueError("run_herd runs a restart; run a rolling deploy with run_rolling_deploy")
    gc.collect()
    baseline = _rss_kb()
    started = time.perf_counter()
    recorder = _Recorder([_Client() for _ in range(config.clients)])
    memory: list[float] = []
    channels = None
    if config.channels:
        herd = HerdChannels(config.channels, config.clients, config.seed)
        channels = RunChannels(herd, channel_store or MemoryChannelStore(start=1))
    seed_trio_scheduler(config.seed)
    refused = trio.run(
        _simulate,
        config,
        recorder,
        memory,
        channels,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    wall = time.perf_counter() - started
    peak_rss = peak_rss_kb()
    t0 = recorder.t0
    assert t0 is not None
    durations = [
        c.ready_at - c.lost_at
        for c in recorder.clients
        if c.ready_at is not None and c.lost_at is not None
    ]
    not_ready = sum(1 for c in recorder.clients if c.ready_at is None)
    last = max((c.ready_at for c in recorder.clients if c.ready_at is not None), default=None)
    bins = max(recorder.arrivals, default=-1) + 1
    arrivals = tuple(recorder.arrivals.get(i, 0) for i in range(bins))
    peak = max(arrivals, default=0)
    ideal = config.capacity * BIN_SECONDS
    connected = memory[0] if memory else baseline
    return HerdResult(
        strategy=config.strategy,
        clients=config.clients,
        capacity=config.capacity,
        peak_per_100ms=peak,
        ideal_per_100ms=ideal,
        peak_ratio=round(peak / ideal, 3),
        all_ready_s=None if not_ready or last is None else round(last - t0, 3),
        ideal_all_ready_s=config.ideal_all_ready_s,
        refused_handshakes=refused,
        attempts=sum(arrivals),
        median_reconnect_s=round3(statistics.median(durations) if durations else None),
        p95_reconnect_s=round3(nearest_rank(durations, 0.95)),
        max_reconnect_s=round3(max(durations, default=None)),
        not_ready=not_ready,
        wall_s=round(wall, 2),
        rss_mb=None if peak_rss is None else round(peak_rss / 1024, 1),
        rss_per_client_kb=round(max(0.0, connected - baseline) / config.clients, 1),
        latency=config.latency,
        accept_rate=config.effective_accept_rate,
        seed=config.seed,
        arrivals=arrivals,
        **channel_counts(channels),
    )


def seed_trio_scheduler(seed: int) -> None:
    """Make trio's task scheduling repeat from run to run (best effort).

    trio shuffles each batch of runnable tasks with a module-level
    ``random.Random`` (``trio._core._run._r``; the same one Hypothesis seeds
    for trio's own tests). Seeding it makes a run with the same seed schedule
    the same way. It is private, so this does nothing if it is not there.
    """
    scheduler_random = getattr(getattr(trio, "_core", None), "_run", None)
    rng = getattr(scheduler_random, "_r", None)
    if isinstance(rng, random.Random):
        rng.seed(f"trio-scheduler-{seed}")


def round3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
