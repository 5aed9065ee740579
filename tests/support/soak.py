"""The machinery of the loopback soak (tests/client/test_soak.py): one round, and what it saw.

A round is one ``trio.run``: a :class:`~trio_reconnect.server.ReconnectServer`
on 127.0.0.1, a crowd of :func:`~trio_reconnect.open_reconnecting_websocket`
clients over real TCP, a steady stream of events and a schedule of
disruptions. Before each
gap the round waits until a quorum of the crowd is back (open on both ends),
so that a slow machine stretches the round instead of hollowing it out; the
stragglers are still coming back when the next disruption hits. Every client
checks its own stream as it goes (:class:`StreamChecker`), so that no round
keeps its items; a round returns a :class:`RoundReport` of plain numbers and
problem strings, and nothing of the round stays alive after it.

The disruptions (:class:`Action`):

* ``restart``: :meth:`ReconnectServer.restart`, 1012 with a spread hint for
  every client (optionally with ``refuse_for``: 503s in the meantime);
* ``hinted``: :meth:`ConnectedClient.aclose` with 1012 and a ``retryAfter``
  for a random subset of ready clients;
* ``server_reset``: the server's side of a random subset of connections is
  reset (``SO_LINGER`` 0, then close: a TCP RST, no close frame). The server
  is fed through listeners that keep the streams they accept
  (:class:`TrackingListener`, passed to the public ``serve_listeners``);
* ``client_reset``: the same from the client's side, through an ``open_stream``
  that wraps the library's default and keeps the stream it opened;
* ``reconnect_now``: :meth:`ReconnectingWebSocket.reconnect_now` on a subset.

Snapshots: the server has a snapshot provider (used for every first connect
and for a client too far behind for ``max_replay``). It sleeps a little, so
that events are published while it runs, and every ``snapshot_fail_every``-th
call raises, so that the server reports lost events and the client receives
a :class:`Gap`. The server logs those failures with ``logger.exception``;
:class:`LogTally` counts them apart from any other warning or error.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import gc
import json
import logging
import os
import random
import resource
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import attrs
import trio
import wsproto.utilities

from tests.support.harness import RecordingLog, leaves, live_tasks
from trio_reconnect import (
    Backoff,
    ConnectionState,
    Gap,
    Item,
    ReconnectingWebSocket,
    ReconnectStatistics,
    ServerEvent,
    Snapshot,
    Target,
    Transition,
    open_reconnecting_websocket,
)
from trio_reconnect._client import RETRIED_FAILURE_MESSAGE
from trio_reconnect._transport import open_tcp_stream
from trio_reconnect.server import (
    ClientState,
    ConnectedClient,
    ReconnectServer,
    ReplayLog,
    SpreadPolicy,
)

#: The message the server logs (``logger.exception``) for a failed snapshot.
SNAPSHOT_FAILED_MESSAGE: Final = "snapshot for client %d failed; reporting lost events"
#: What the server logs when a connection's nursery fails.
CONNECTION_FAILED_MESSAGE: Final = "connection failed"
#: At most this many problems are kept per round (the count is always exact).
MAX_PROBLEMS: Final = 50


class ActionKind(enum.Enum):
    """One kind of disruption."""

    RESTART = "restart"
    HINTED = "hinted"
    SERVER_RESET = "server_reset"
    CLIENT_RESET = "client_reset"
    RECONNECT_NOW = "reconnect_now"


@attrs.frozen
class Action:
    """A disruption: ``kind``, on ``fraction`` of the clients (restarts: all).

    ``follows``: right after the previous one, with no gap (and no quorum).
    """

    kind: ActionKind
    fraction: float = 1.0
    refuse_for: float = 0.0
    follows: bool = False


@attrs.frozen
class SoakProfile:
    """How big and how rough one round is.

    Attributes:
        clients: Clients in the crowd.
        schedule: The disruptions, in order, ``action_gap`` seconds apart.
        action_gap: Seconds between two disruptions (the next one may hit
            clients still coming back from the last).
        quorum: The fraction of the clients that must be open again
            before the next gap starts.
        events_per_gap: Events published per ``action_gap``, evenly spaced,
            all through the schedule (comebacks included): a steady stream,
            capped at twice the nominal count so that a slow machine
            stretching the round does not also make it heavier.
        spread: The server's spread policy for restarts.
        max_replay: The server's ``max_replay``: a client further behind
            gets a snapshot.
        snapshot_delay: The snapshot provider sleeps up to this long.
        snapshot_fail_every: Every n-th snapshot call fails (0: never).
        ping_interval: The clients' ping interval.
        listeners: Listening sockets on the server's port (see :func:`open_listeners`).
        timeout: Seconds one round may take, all in all.
    """

    clients: int
    schedule: tuple[Action, ...]
    action_gap: float
    quorum: float
    events_per_gap: int
    spread: SpreadPolicy
    max_replay: int
    snapshot_delay: float
    snapshot_fail_every: int
    ping_interval: float | None
    listeners: int
    timeout: float

    @property
    def restarts(self) -> int:
        return sum(a.kind is ActionKind.RESTART for a in self.schedule)


_ROUGH_SCHEDULE: Final = (
    Action(ActionKind.RESTART),
    Action(ActionKind.SERVER_RESET, 0.1),
    Action(ActionKind.HINTED, 0.1),
    Action(ActionKind.CLIENT_RESET, 0.1),
    # A network change during a restart: clients that reconnect at once run
    # into the refusal (HTTP 503 with a Retry-After). The window is long enough
    # that, on a loaded CI machine too, the server is still refusing when they
    # arrive (1 s was not: closing 500 clients there took longer).
    Action(ActionKind.RESTART, refuse_for=4.0),
    Action(ActionKind.RECONNECT_NOW, 0.1, follows=True),
)

#: The default profile, sized for a 2-core CI machine (see tests/client/test_soak.py).
#: The cost that matters is CPU: about 4 ms per connection (TCP, upgrade,
#: resume, close, both ends in this one process) and 0.15 ms per event per
#: client, without coverage.
CI_PROFILE: Final = SoakProfile(
    clients=500,
    schedule=_ROUGH_SCHEDULE,
    action_gap=0.8,
    quorum=0.75,
    events_per_gap=3,
    spread=SpreadPolicy(min_window=1.0, rate=500.0, base=0.05),
    max_replay=2,
    snapshot_delay=0.02,
    snapshot_fail_every=23,
    ping_interval=10.0,
    listeners=4,
    timeout=180.0,
)

#: ``TRIO_RECONNECT_SOAK=long``: three times the clients and the disruptions.
LONG_PROFILE: Final = SoakProfile(
    clients=1500,
    schedule=_ROUGH_SCHEDULE * 3,
    action_gap=2.0,
    quorum=0.75,
    events_per_gap=10,
    spread=SpreadPolicy(min_window=2.0, rate=500.0, base=0.05),
    max_replay=4,
    snapshot_delay=0.02,
    snapshot_fail_every=23,
    ping_interval=5.0,
    listeners=8,
    timeout=900.0,
)

#: A small round through every code path before anything is measured.
WARMUP_PROFILE: Final = attrs.evolve(CI_PROFILE, clients=20, action_gap=0.3, events_per_gap=2)

#: The environment variable that picks the profile.
PROFILE_VARIABLE: Final = "TRIO_RECONNECT_SOAK"
_PROFILES: Final = {"": CI_PROFILE, "ci": CI_PROFILE, "long": LONG_PROFILE}
_OFF: Final = ("off", "0", "no", "skip")


def profile_from_env(value: str | None) -> SoakProfile | None:
    """The profile ``TRIO_RECONNECT_SOAK`` asks for; ``None`` for ``off``.

    Raises:
        ValueError: for an unknown value (a typo must not silently run CI).
    """
    name = (value or "").strip().lower()
    if name in _OFF:
        return None
    if name not in _PROFILES:
        raise ValueError(f"{PROFILE_VARIABLE}={value!r}: use ci (default), long or off")
    return _PROFILES[name]


# --------------------------------------------------------------------- checking


@attrs.define(eq=False)
class Published:
    """The server's log order as the publisher saw it: id -> position (1-based)."""

    index: dict[str, int] = attrs.field(factory=dict)
    data: list[Any] = attrs.field(factory=lambda: [None])

    def add(self, event_id: str, data: Any) -> None:
        self.index[event_id] = len(self.data)
        self.data.append(data)

    @property
    def count(self) -> int:
        return len(self.data) - 1


def snapshot_data(event_id: str | None) -> dict[str, Any]:
    """What the soak's snapshot provider sends: the state as of ``event_id``."""
    return {"through": event_id}


@attrs.define(eq=False)
class StreamChecker:
    """Checks one client's items against the log, item by item.

    ``position`` is the log position the client's state stands at (0: none).
    A :class:`ServerEvent` must be the next one in log order, with the data
    that was published. A :class:`Snapshot` stands for every event up to its
    id: it must not take the client back, and its data must be the state as
    of that id. A :class:`Gap` must name exactly the position the client was
    at (right after another Gap, that one's unseen ready id: so at least the
    position); after it the stream may resume further on, and goes on
    without gaps.
    Anything else (a raw message) is a problem.
    """

    published: Published
    position: int = 0
    after_gap: bool = False
    events: int = 0
    snapshots: int = 0
    gaps: int = 0
    covered_by_snapshots: int = 0
    problems: list[str] = attrs.field(factory=list)

    @property
    def at_end(self) -> bool:
        """Whether the client holds the end marker (by event or by snapshot)."""
        data = self.published.data[self.position]
        return isinstance(data, dict) and data.get("end") is True

    def _problem(self, text: str) -> None:
        if len(self.problems) < 5:
            self.problems.append(text)

    def _position_of(self, event_id: str | None) -> int | None:
        if event_id is None:
            return 0
        return self.published.index.get(event_id)

    def feed(self, item: Item) -> None:
        if isinstance(item, ServerEvent):
            self.events += 1
            at = self._position_of(item.id)
            if at is None or at == 0:
                self._problem(f"event {item.id!r} was never published")
                return
            if self.after_gap:
                if at <= self.position:
                    self._problem(f"event {item.id} after a gap at {self.position} goes back")
            elif at != self.position + 1:
                kind = "duplicate/out of order" if at <= self.position else "missing events"
                self._problem(f"{kind}: event {item.id} after position {self.position}")
            if item.data != self.published.data[at]:
                self._problem(f"event {item.id} carries {item.data!r}")
            self.position = at
            self.after_gap = False
        elif isinstance(item, Snapshot):
            self.snapshots += 1
            at = self._position_of(item.id)
            if at is None:
                self._problem(f"snapshot {item.id!r} is not a published id")
                return
            if at < self.position:
                self._problem(f"snapshot {item.id} takes the client back from {self.position}")
            if item.data != snapshot_data(item.id):
                self._problem(f"snapshot {item.id} carries {item.data!r}")
            self.covered_by_snapshots += max(0, at - self.position)
            self.position = at
            self.after_gap = False
        elif isinstance(item, Gap):
            self.gaps += 1
            at = self._position_of(item.last_id)
            # A Gap names the client's lastEventId before the handshake. That
            # is the position the stream stands at, except right after another
            # Gap: a lost handshake moves lastEventId on to its ready id, which
            # the stream never shows (the events up to it are the lost ones).
            if at is None or at < self.position or (at != self.position and not self.after_gap):
                self._problem(f"gap after {item.last_id!r}, but the client was at {self.position}")
            self.after_gap = True
        else:
            self._problem(f"unexpected raw message {item!r:.60}")


# ---------------------------------------------------------------------- clients


def _set_linger_zero(stream: trio.SocketStream) -> None:
    """Make the next close of ``stream`` a reset (RST), not an orderly FIN."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def reset(stream: trio.SocketStream) -> bool:
    """Reset a TCP connection from this side: no close frame, no FIN. ``False`` if closed.

    Closes the socket synchronously (trio wakes every task waiting on it with
    ``ClosedResourceError``), so that a wave of resets is one instant.
    """
    if stream.socket.fileno() == -1:
        return False
    _set_linger_zero(stream)
    stream.socket.close()
    return True


@attrs.define(eq=False)
class ClientRecord:
    """One client of the crowd: its checker and what it went through."""

    number: int
    checker: StreamChecker
    ws: ReconnectingWebSocket | None = None
    stream: trio.SocketStream | None = None
    #: When and why the client last changed state (for a report on stragglers).
    changed_at: float = 0.0
    last_change: str = ""
    stats: ReconnectStatistics | None = None
    clean_exit: bool = False
    error: str | None = None

    def on_transition(self, transition: Transition) -> None:
        self.changed_at = transition.time
        self.last_change = (
            f"{transition.previous.value} -> {transition.state.value} (attempt "
            f"{transition.attempt}, close {transition.close_code}, error {transition.error!r:.80}, "
            f"delay {transition.delay})"
        )

    async def open_stream(self, target: Target) -> trio.abc.Stream:
        """The library's default ``open_stream``, keeping the stream to reset it."""
        stream = await open_tcp_stream(target)
        assert isinstance(stream, trio.SocketStream)  # ws://, no TLS
        self.stream = stream
        return stream


async def _run_client(record: ClientRecord, url: str, profile: SoakProfile, seed: int) -> None:
    try:
        async with open_reconnecting_websocket(
            url,
            random=random.Random(seed),
            backoff=Backoff(initial=0.05, max_delay=0.5),
            max_attempts=100,
            stable_after=0.5,
            ping_interval=profile.ping_interval,
            on_transition=record.on_transition,
            open_stream=record.open_stream,
        ) as ws:
            record.ws = ws
            async for item in ws:
                record.checker.feed(item)
                if record.checker.at_end:
                    break
            record.stats = ws.statistics()
        record.clean_exit = True
    except Exception as exc:  # reported, not raised: one client must not hide the rest
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.ws = None
        record.stream = None


# ----------------------------------------------------------------------- server


@attrs.define(eq=False)
class AcceptedStreams:
    """The server-side streams the listeners accepted (to reset some of them)."""

    streams: list[trio.SocketStream] = attrs.field(factory=list)

    def open(self) -> list[trio.SocketStream]:
        """The streams not yet closed (and forget the closed ones)."""
        self.streams = [s for s in self.streams if s.socket.fileno() != -1]
        return list(self.streams)


class TrackingListener(trio.abc.Listener[trio.SocketStream]):
    """A TCP listener that records the streams it accepts."""

    def __init__(self, inner: trio.SocketListener, accepted: AcceptedStreams) -> None:
        self.inner = inner
        self.accepted = accepted

    async def accept(self) -> trio.SocketStream:
        stream = await self.inner.accept()
        if len(self.accepted.streams) >= 4096:
            self.accepted.open()  # forget the closed ones
        self.accepted.streams.append(stream)
        return stream

    async def aclose(self) -> None:
        await self.inner.aclose()


async def open_listeners(count: int) -> tuple[int, list[trio.SocketListener]]:
    """``count`` listeners sharing one port on 127.0.0.1 (``SO_REUSEPORT``), and the port.

    trio's accept loop takes one connection per scheduler batch, and a batch
    gets long while hundreds of clients are busy; with several listeners on
    the port (the kernel spreads connections over them) the server accepts
    several per batch, as a production server on several sockets would.
    Where ``SO_REUSEPORT`` is missing, one listener.
    """
    if count == 1 or not hasattr(socket, "SO_REUSEPORT"):
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port: int = listener.socket.getsockname()[1]
        return port, [listener]
    listeners: list[trio.SocketListener] = []
    port = 0
    try:
        for _ in range(count):
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                await sock.bind(("127.0.0.1", port))
                sock.listen(4096)
            except BaseException:
                sock.close()
                raise
            port = sock.getsockname()[1]
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return port, listeners


class SnapshotUnavailable(Exception):
    """Raised by the soak's snapshot provider on purpose."""


def _is_pong_race(exc_info: Any) -> bool:
    """Whether a logged failure is only trio-websocket's pong during the close handshake.

    trio-websocket's reader answers a ping with a pong; a ping that arrives
    after the server sent its close frame makes wsproto refuse the pong
    (LOCAL_CLOSING) and the reader task dies with ``LocalProtocolError``
    (python-trio/trio-websocket#184, unfixed in 0.12.2). The server catches it
    per connection (docs/explanation/differences.md, "a pong during close"), after the close
    frame went out; the client has its close code and hint.
    """
    if not exc_info or exc_info[1] is None:
        return False
    found = leaves(exc_info[1])
    return all(
        isinstance(leaf, wsproto.utilities.LocalProtocolError)
        and str(leaf).startswith("Event Pong(")
        and "LOCAL_CLOSING" in str(leaf)
        for leaf in found
    )


class LogTally(logging.Handler):
    """Counts what is logged at WARNING and above.

    The expected snapshot failures are counted apart; anything else is kept
    (formatted, at most :data:`MAX_PROBLEMS`) as a problem.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.snapshot_failures = 0
        self.pong_races = 0
        self.retried_failures = 0
        self.unexpected = 0
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (
            record.msg == SNAPSHOT_FAILED_MESSAGE
            and record.exc_info is not None
            and isinstance(record.exc_info[1], SnapshotUnavailable)
        ):
            self.snapshot_failures += 1
            return
        if record.msg == CONNECTION_FAILED_MESSAGE and _is_pong_race(record.exc_info):
            self.pong_races += 1
            return
        if record.name == "trio_reconnect" and record.msg == RETRIED_FAILURE_MESSAGE:
            self.retried_failures += 1  # the disruptions themselves
            return
        self.unexpected += 1
        if len(self.messages) < MAX_PROBLEMS:
            self.messages.append(f"{record.levelname} {record.name}: {self.format(record)}")


#: Loggers watched during a round. Only ``trio_reconnect`` stops propagating
#: (its expected snapshot failures would otherwise pile up, tracebacks and
#: all, in pytest's log capture, and count as memory growth); the others are
#: only watched.
_WATCHED_LOGGERS: Final = ("trio_reconnect", "trio", "trio-websocket")


@contextlib.contextmanager
def watching_logs() -> Iterator[LogTally]:
    """Count the warnings and errors logged inside the block."""
    tally = LogTally()
    loggers = [logging.getLogger(name) for name in _WATCHED_LOGGERS]
    own = loggers[0]
    propagate = own.propagate
    for logger in loggers:
        logger.addHandler(tally)
    own.propagate = False
    try:
        yield tally
    finally:
        own.propagate = propagate
        for logger in loggers:
            logger.removeHandler(tally)


# ------------------------------------------------------------------------ round


@attrs.frozen
class RoundReport:
    """What one round did and saw. Plain values only: nothing of the round."""

    clients: int
    restarts: int
    drops: dict[str, int]
    events: int
    connects: int
    reconnects: int
    failed_attempts: int
    snapshots: int
    covered_by_snapshots: int
    gaps: int
    snapshot_failures: int
    server_refused: int
    server_lost: int
    fds_before: int | None
    peak_fds: int | None
    fds_after: int | None
    pong_races: int
    wall: float
    cpu: float
    phases: dict[str, float]
    actions: tuple[str, ...]
    problems: tuple[str, ...]
    problem_count: int

    def summary(self) -> str:
        drops = ", ".join(f"{kind} {n}" for kind, n in self.drops.items())
        return (
            f"{self.clients} clients, {self.restarts} restarts, drops: {drops}; "
            f"{self.events} events; {self.connects} connects ({self.reconnects} reconnects, "
            f"{self.failed_attempts} failed attempts, {self.server_refused} refused); "
            f"{self.snapshots} snapshots (covering {self.covered_by_snapshots} events), "
            f"{self.gaps} gaps ({self.snapshot_failures} snapshot "
            f"failures, {self.pong_races} pong races); fds {self.fds_before} -> peak "
            f"{self.peak_fds} -> {self.fds_after}; {self.wall:.1f} s wall, {self.cpu:.1f} s CPU ("
            + ", ".join(f"{name} {t:.1f} s" for name, t in self.phases.items())
            + ")"
        )


@attrs.define(eq=False)
class _Problems:
    kept: list[str] = attrs.field(factory=list)
    count: int = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(text)


#: Seconds any one wait inside a round may take before it fails with a report
#: of the stragglers (generous: a loaded 2-core machine under coverage).
PATIENCE: Final = 60.0


async def _wait_for(
    condition: Callable[[], bool], patience: float, describe: Callable[[], str]
) -> None:
    """Poll ``condition`` until it holds; an AssertionError with details after ``patience`` s."""
    with trio.move_on_after(patience):
        while not condition():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"still waiting after {patience} s: {describe()}")


def _await_chain(task: trio.lowlevel.Task) -> str:
    """Where a task is suspended: the functions of its await chain, outermost first."""
    names: list[str] = []
    coro: Any = task.coro
    while coro is not None and len(names) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            names.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return " > ".join(names)


def _task_tree(task: trio.lowlevel.Task, depth: int = 0) -> list[str]:
    lines = [f"{'  ' * depth}{task.name}: {_await_chain(task)}"]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            lines.extend(_task_tree(child, depth + 1))
    return lines


def _describe_stragglers(records: Sequence[ClientRecord]) -> str:
    states = collections.Counter(
        (r.ws.state.value if r.ws is not None else "outside its block") for r in records
    )
    now = trio.current_time()
    stragglers = [r for r in records if r.ws is None or r.ws.state is not ConnectionState.OPEN]
    examples = "; ".join(
        f"client {r.number}: {r.last_change} {now - r.changed_at:.1f} s ago" for r in stragglers[:5]
    )
    tasks = {name: task for task, name in live_tasks().items()}
    stacks = "\n".join(
        line
        for r in stragglers[:2]
        if (task := tasks.get(f"soak client {r.number}")) is not None
        for line in _task_tree(task)
    )
    return f"client states {dict(states)}; {examples}\n{stacks}"


async def run_round(profile: SoakProfile, seed: int) -> RoundReport:
    """One soak round (see the module docstring), within ``profile.timeout``.

    Call it through ``trio.run`` (real clock: real sockets).
    """
    with trio.fail_after(profile.timeout):
        return await _run_round(profile, seed)


async def _run_round(profile: SoakProfile, seed: int) -> RoundReport:
    started = trio.current_time()
    cpu_started = time.process_time()
    fds_before = count_fds()  # trio's own are open already; nothing of the round yet
    tasks_before = live_tasks()
    rng = random.Random(seed)
    problems = _Problems()
    published = Published()
    log = RecordingLog(ReplayLog(max_events=100_000, start=1), published)
    failed_snapshots = 0
    snapshot_calls = 0

    async def snapshot() -> tuple[str | None, Any]:
        nonlocal snapshot_calls, failed_snapshots
        await trio.sleep(rng.random() * profile.snapshot_delay)  # events go on meanwhile
        snapshot_calls += 1
        if profile.snapshot_fail_every and snapshot_calls % profile.snapshot_fail_every == 0:
            failed_snapshots += 1
            raise SnapshotUnavailable("the soak fails this snapshot on purpose")
        newest = await log.newest()
        return newest, snapshot_data(newest)

    server = ReconnectServer(
        log,
        snapshot=snapshot,
        max_replay=profile.max_replay,
        spread=profile.spread,
        rng=random.Random(rng.getrandbits(64)),
    )
    port, sockets = await open_listeners(profile.listeners)
    accepted = AcceptedStreams()
    listeners = [TrackingListener(inner, accepted) for inner in sockets]
    url = f"ws://127.0.0.1:{port}/soak"
    records = [ClientRecord(i, StreamChecker(published)) for i in range(profile.clients)]
    drops: collections.Counter[str] = collections.Counter()
    peak_fds: int | None = None
    n = 0
    phases: dict[str, float] = {}
    mark = trio.current_time()

    def phase(name: str) -> None:
        nonlocal mark
        now = trio.current_time()
        phases[name] = now - mark
        mark = now

    async def publish(**extra: Any) -> None:
        nonlocal n
        n += 1
        await server.publish({"n": n, **extra})

    publishing = trio.CancelScope()

    async def publisher() -> None:
        """The steady stream: ``events_per_gap`` per ``action_gap``, while the
        schedule runs, and at most that many per gap of the schedule twice over
        (so that a slow machine stretching the round does not also grow it)."""
        step = profile.action_gap / profile.events_per_gap
        cap = 2 * profile.events_per_gap * len(profile.schedule)
        with publishing:
            for _ in range(cap):
                await trio.sleep(step)
                await publish()

    def quorum() -> float:
        """The fraction of the clients that are open, as both ends see it."""
        opened = sum(r.ws is not None and r.ws.state is ConnectionState.OPEN for r in records)
        ready = sum(c.state is ClientState.READY for c in server.clients)
        return min(opened, ready) / len(records)

    def all_open() -> bool:
        return all(r.ws is not None and r.ws.state is ConnectionState.OPEN for r in records)

    def server_settled() -> bool:
        clients = server.clients
        return len(clients) == profile.clients and all(
            c.state is ClientState.READY for c in clients
        )

    actions: list[str] = []

    async def disrupt(action: Action, background: trio.Nursery) -> None:
        states = collections.Counter(c.state.value for c in server.clients)
        hit: int
        eligible: Sequence[object]
        if action.kind is ActionKind.RESTART:
            targets = [c for c in server.clients if c.state is not ClientState.CLOSING]
            eligible = targets
            hit = len(targets)
            background.start_soon(lambda: server.restart(refuse_for=action.refuse_for))
            # restart() closes every client in its first step; let it take it,
            # so that the next quorum counts the crowd coming back.
            await _wait_for(
                lambda: all(c.state is not ClientState.READY for c in targets),
                PATIENCE,
                lambda: "the restart did not start",
            )
        elif action.kind is ActionKind.HINTED:
            eligible = [c for c in server.clients if c.state is ClientState.READY]
            chosen = _sample(rng, eligible, action.fraction)
            for client in chosen:
                reason = json.dumps({"reason": "soak", "retryAfter": rng.randrange(300)})
                background.start_soon(_close_client, client, reason)
            hit = len(chosen)
        elif action.kind is ActionKind.SERVER_RESET:
            eligible = accepted.open()
            hit = sum(reset(stream) for stream in _sample(rng, eligible, action.fraction))
        elif action.kind is ActionKind.CLIENT_RESET:
            eligible = [
                r.stream for r in records if r.stream is not None and r.stream.socket.fileno() != -1
            ]
            hit = sum(reset(stream) for stream in _sample(rng, eligible, action.fraction))
        else:
            eligible = [r.ws for r in records if r.ws is not None]
            chosen = _sample(rng, eligible, action.fraction)
            for ws in chosen:
                ws.reconnect_now()
            hit = len(chosen)
        drops[action.kind.value] += hit
        actions.append(
            f"t={trio.current_time() - started:.1f} {action.kind.value}: {hit} of "
            f"{len(eligible)} (server clients {dict(states)})"
        )

    with watching_logs() as tally:
        async with trio.open_nursery() as server_nursery:
            await server_nursery.start(server.serve_listeners, listeners)
            async with trio.open_nursery() as crowd:
                # The crowd arrives at the rate the server can absorb, as it
                # comes back after a restart (a herd of every client at once
                # would just measure trio's accept loop, one per batch).
                for record in records:
                    await trio.sleep(1 / profile.spread.rate)
                    crowd.start_soon(
                        _run_client,
                        record,
                        url,
                        profile,
                        rng.getrandbits(64),
                        name=f"soak client {record.number}",
                    )
                await _wait_for(all_open, PATIENCE, lambda: _describe_stragglers(records))
                phase("connect")
                peak_fds = count_fds()
                async with trio.open_nursery() as background:
                    background.start_soon(publisher)
                    for action in profile.schedule:
                        if not action.follows:
                            # A slow machine stretches the comebacks; waiting
                            # for a quorum keeps every disruption hitting a crowd.
                            await _wait_for(
                                lambda: quorum() >= profile.quorum,
                                PATIENCE,
                                lambda: _describe_stragglers(records),
                            )
                            await trio.sleep(profile.action_gap)
                        await disrupt(action, background)
                    publishing.cancel()
                    phase("disrupt")
                phase("closes")
                # Every close the schedule started is done: wait for the crowd
                # to come back.
                await _wait_for(
                    lambda: all_open() and server_settled(),
                    PATIENCE,
                    lambda: (
                        f"{_describe_stragglers(records)}, server has {len(server.clients)} clients"
                    ),
                )
                phase("settle")
                await publish(end=True)
                # Each client leaves its block once it holds the end marker.
            await _wait_for(
                lambda: not server.clients,
                PATIENCE,
                lambda: f"{len(server.clients)} clients left on the server",
            )
            server_nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()
        phase("leave")

    fds_after = count_fds()
    if fds_after != fds_before:
        problems.add(f"{fds_before} descriptors before the round, {fds_after} after it")
    for record in records:
        checker = record.checker
        for text in checker.problems:
            problems.add(f"client {record.number}: {text}")
        if record.error is not None:
            problems.add(f"client {record.number} raised {record.error}")
        elif not record.clean_exit:
            problems.add(f"client {record.number} did not leave its block cleanly")
        if checker.position != published.count:
            problems.add(f"client {record.number} ended at {checker.position} of {published.count}")
        # A snapshot can arrive in a handshake that is cut off before
        # ``ready``: the client keeps it (and resumes after it) but counts
        # only the handshakes that ended. A Gap exists only with ``ready``.
        stats = record.stats
        if stats is not None and (
            stats.lost != checker.gaps or stats.snapshots > checker.snapshots
        ):
            problems.add(
                f"client {record.number}: statistics count {stats.snapshots} snapshots and "
                f"{stats.lost} lost handshakes, the stream held {checker.snapshots} "
                f"snapshots and {checker.gaps} gaps"
            )
    server_stats = server.statistics()
    gaps = sum(r.checker.gaps for r in records)
    # Every lost handshake here comes from a failed snapshot (the log holds
    # everything, and a snapshot the log cannot place would be logged).
    if not (gaps <= failed_snapshots and server_stats.lost <= failed_snapshots):
        problems.add(
            f"{gaps} gaps delivered, {server_stats.lost} lost handshakes on the server, "
            f"only {failed_snapshots} failed snapshots"
        )
    if tally.snapshot_failures != failed_snapshots:
        problems.add(f"{failed_snapshots} snapshots failed, {tally.snapshot_failures} were logged")
    for message in tally.messages:
        problems.add(f"logged: {message}")
    if server_stats.slow_clients or server_stats.protocol_errors or server_stats.handler_errors:
        problems.add(f"server statistics: {server_stats}")
    await trio.lowlevel.checkpoint()
    leftover = {t: name for t, name in live_tasks().items() if t not in tasks_before}
    for name in sorted(leftover.values()):
        problems.add(f"task still running: {name}")

    all_stats = [r.stats for r in records if r.stats is not None]
    return RoundReport(
        clients=profile.clients,
        restarts=profile.restarts,
        drops=dict(drops),
        events=published.count,
        connects=sum(s.connects for s in all_stats),
        reconnects=sum(s.reconnects for s in all_stats),
        failed_attempts=sum(s.failed_attempts for s in all_stats),
        snapshots=sum(r.checker.snapshots for r in records),
        covered_by_snapshots=sum(r.checker.covered_by_snapshots for r in records),
        gaps=gaps,
        snapshot_failures=failed_snapshots,
        server_refused=server_stats.refused,
        server_lost=server_stats.lost,
        fds_before=fds_before,
        peak_fds=peak_fds,
        fds_after=fds_after,
        pong_races=tally.pong_races,
        phases=phases,
        actions=tuple(actions),
        wall=trio.current_time() - started,
        cpu=time.process_time() - cpu_started,
        problems=tuple(problems.kept),
        problem_count=problems.count,
    )


async def _close_client(client: ConnectedClient, reason: str) -> None:
    await client.aclose(1012, reason)


def _sample(rng: random.Random, items: Sequence[Any], fraction: float) -> list[Any]:
    return rng.sample(list(items), round(len(items) * fraction))


# -------------------------------------------------------------------- resources


def count_fds() -> int | None:
    """Open file descriptors of this process (``None`` where that cannot be listed).

    The listing itself holds one descriptor for the directory while it reads
    it; that one is in every count alike.
    """
    for directory in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(directory):
            return len(os.listdir(directory))
    return None


def rss_bytes() -> int | None:
    """Resident set size from /proc/self/status (``None`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def raise_fd_limit(needed: int) -> tuple[int, int] | str:
    """Raise the soft RLIMIT_NOFILE to ``needed`` if the hard limit allows.

    Returns:
        The previous ``(soft, hard)`` to restore, or why it cannot be done.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < needed:
        return f"the hard RLIMIT_NOFILE is {hard}; the soak needs {needed} descriptors"
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return soft, hard


#: Types of which no instance may outlive a round.
ROUND_TYPES: Final[tuple[type, ...]] = (
    ReconnectServer,
    ConnectedClient,
    ReconnectingWebSocket,
    ClientRecord,
    StreamChecker,
    trio.SocketStream,
    trio.SocketListener,
)


def surviving_instances() -> dict[str, int]:
    """How many instances of :data:`ROUND_TYPES` are alive (after a full collection)."""
    import trio_websocket

    gc.collect()
    types = (*ROUND_TYPES, trio_websocket.WebSocketConnection)
    found: collections.Counter[str] = collections.Counter(
        type(obj).__qualname__ for obj in gc.get_objects() if isinstance(obj, types)
    )
    return dict(found)
