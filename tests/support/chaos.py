"""The machinery of the chaos property test (tests/client/test_chaos.py).

One run (:func:`run_chaos`) is one ``trio.run`` on a ``MockClock`` with
``autojump_threshold=0``: a :class:`~trio_reconnect.server.ReconnectServer`
with a small :class:`~trio_reconnect.server.ReplayLog` behind a
:class:`~trio_reconnect.testing.MemoryNetwork`, a crowd of
:func:`~trio_reconnect.open_reconnecting_websocket` clients (one host name
each, a seeded random each, ``max_attempts=None``), a publisher, and a
:class:`Schedule` of faults that hypothesis writes. Everything is
deterministic: the network, the server's spread, the publisher and the
clients draw from random generators seeded by the schedule, and trio's own
scheduler draws from a random that trio registers with hypothesis, which
seeds it for every example. (Outside ``@given`` the order in which trio runs
ready tasks differs from run to run, so a regression runs under ``@given``.)

The run has two phases. Until ``fault_end`` the faults of the schedule
happen at their generated times (each fault that lasts ends by then). After
the last fault has ended (``healed_at``), nothing goes wrong any more; the
publisher goes on until ``profile.duration``, when it publishes the final
event. Every client reads items until that final event, then leaves its
``async with`` block. Afterwards the run checks (:func:`check_run`):

* each client's items, one by one, against the list of everything published
  (:func:`check_items`: log order, no duplicate, no gap, except what a
  ``Snapshot`` or a ``Gap`` accounts for, exactly);
* that each client was ready again within :func:`ready_bound` of
  ``healed_at`` and stayed ready, and that its last item is the final event;
* that no client block raised, that no task of any client outlived its
  block, that the server closed every connection (but see
  :attr:`RunReport.ghosts`), and that no task at all outlived the run;
* that nothing unexpected was logged at WARNING or above.

Ghosts: a black-holed link is half-open for good in the memory network (a
real TCP stack would give up retransmitting after minutes, and its send
buffer would fill up first). The client finds it with a ping and reconnects;
the server does not ping, and its writes vanish without an error, so its side
of such a link stays open until something closes it (a restart, a drain).
After the clients have left, the run checks that every connection the server
still holds is such a ghost (and no other), then drains the server and checks
it ends with none.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import hashlib
import json
import logging
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, Final

import attrs
import trio
import trio.testing
import wsproto.utilities
from hypothesis import strategies as st

from tests.support.harness import RecordingLog, leaves, live_tasks
from trio_reconnect import (
    Backoff,
    ConnectionState,
    Gap,
    Item,
    ReconnectingWebSocket,
    ServerEvent,
    Snapshot,
    Transition,
    open_reconnecting_websocket,
)
from trio_reconnect._client import RETRIED_FAILURE_MESSAGE
from trio_reconnect.server import (
    AdmissionControl,
    ConnectedClient,
    ReconnectServer,
    ReplayLog,
)
from trio_reconnect.testing import MemoryNetwork

URL: Final = "ws://server/feed"

# -- the clients' options: the ready bound is derived from these ----------------

BACKOFF: Final = Backoff(initial=1.0, factor=2.0, max_delay=30.0)
PING_INTERVAL: Final = 10.0
PING_TIMEOUT: Final = 5.0
CONNECT_TIMEOUT: Final = 10.0
RESUME_TIMEOUT: Final = 10.0
MAX_SERVER_DELAY: Final = 60.0
CLOSE_TIMEOUT: Final = 5.0
STABLE_AFTER: Final = 10.0

#: The server's close timeout (also bounds how long it holds a ghost when draining).
SERVER_CLOSE_TIMEOUT: Final = 5.0

# -- generated ranges -------------------------------------------------------------

#: Largest base one-way latency and jitter of the network, seconds.
MAX_BASE_LATENCY: Final = 0.05
MAX_BASE_JITTER: Final = 0.02
#: Largest latency and jitter during a latency spike, seconds.
MAX_SPIKE_LATENCY: Final = 4.0
MAX_SPIKE_JITTER: Final = 1.0
#: Longest lasting fault (refusal, partition, spike, 503 storm, outage), seconds.
MAX_FAULT_DURATION: Final = 90.0
#: Longest snapshot the provider takes, seconds.
MAX_SNAPSHOT_DELAY: Final = 0.5
#: Largest retryAfter a middlebox or the server's per-client close sends, ms.
MAX_HINT_MS: Final = 20_000

#: A healthy attempt once the network has healed: TCP connect, HTTP upgrade and
#: the resume handshake are three round trips of at most 2 * (0.05 + 0.02) s,
#: the snapshot takes at most 0.5 s, a replay of at most the log is a few
#: kilobytes. 2 s is a generous bound for all of it.
ATTEMPT_SLACK: Final = 2.0
#: How long after the final event is published every client must have it.
FINAL_GRACE: Final = 30.0

#: The client codes a middlebox closes with: all reconnect (no fatal code).
#: 1014 is one that wsproto does not know (the client sees its own 1002).
DROP_CODES: Final = (1000, 1001, 1011, 1012, 1013, 1014, 3000)
#: The codes the server's per-client close uses (1000: no hint is read).
SERVER_CLOSE_CODES: Final = (1000, 1011, 1013)


def ready_bound(spike_latency: float) -> float:
    """Seconds from the heal within which every client must be ready again.

    A client that is stuck when the network heals gets unstuck within
    ``max(ping_interval + ping_timeout, connect_timeout, resume_timeout)``
    (a half-open link is caught by the next ping; a hanging attempt by its
    timeout), plus the latency still owed to bytes sent during a spike. It
    then waits at most ``max(backoff.max_delay, max_server_delay)`` (a hint
    is clamped to ``max_server_delay``, a floored hint is
    ``max(hint, backoff)``), and its next attempt succeeds.
    """
    stuck = max(PING_INTERVAL + PING_TIMEOUT, CONNECT_TIMEOUT, RESUME_TIMEOUT)
    wait = max(BACKOFF.max_delay, MAX_SERVER_DELAY)
    return spike_latency + stuck + wait + ATTEMPT_SLACK


#: The bound for the largest spike that can be generated.
WORST_READY_BOUND: Final = ready_bound(MAX_SPIKE_LATENCY + MAX_SPIKE_JITTER)


@attrs.frozen
class Profile:
    """How big a chaos run is.

    Attributes:
        name: For the summary.
        clients: Clients in the crowd.
        duration: Virtual seconds until the final event is published.
        examples: Hypothesis examples.
        min_faults: Fewest faults in a schedule.
        max_faults: Most faults in a schedule.
        log_size: The server's ReplayLog ``max_events``.
        max_replay: The server's ``max_replay`` (below ``log_size``, so that
            both reasons for a snapshot happen: too far behind, out of the log).
        publish_every: The range of the publisher's pauses, seconds.
    """

    name: str
    clients: int
    duration: float
    examples: int
    min_faults: int
    max_faults: int
    log_size: int = 20
    max_replay: int = 12
    publish_every: tuple[float, float] = (0.5, 2.0)

    @property
    def fault_end(self) -> float:
        """Every fault has ended by then; the rest of the run is quiet."""
        return self.duration - WORST_READY_BOUND - 30.0


# -- the schedule ---------------------------------------------------------------------


class FaultKind(enum.Enum):
    """What can go wrong."""

    #: ``network.drop(code=...)``: a middlebox closes with a close frame (maybe a hint).
    DROP_CLOSE = "drop-close-frame"
    #: ``network.drop(code=None)``: FIN, no close frame.
    DROP_BARE = "drop-bare-fin"
    #: ``network.reset``: RST.
    RESET = "reset"
    #: ``network.blackhole``: half-open links, found by the client's ping.
    BLACKHOLE = "blackhole"
    #: ``network.refuse``: connections refused for a while.
    REFUSE = "refuse"
    #: ``network.partition`` then ``heal``.
    PARTITION = "partition"
    #: ``network.latency`` / ``jitter`` raised for a while.
    LATENCY = "latency-spike"
    #: The server's admission rate is low for a while: a 503 storm.
    ADMISSION = "admission-503-storm"
    #: ``server.restart(refuse_for=...)``: 1012 for everyone, then 503s.
    RESTART_REFUSE = "restart-refuse-503"
    #: ``server.restart()``: 1012 with a spread hint for everyone.
    RESTART = "restart"
    #: ``ConnectedClient.aclose``: the server closes some clients (maybe with a hint).
    SERVER_CLOSE = "server-close"
    #: The snapshot provider fails (or answers with a snapshot older than the
    #: log) for a while: clients that need a snapshot get a Gap.
    SNAPSHOT_OUTAGE = "snapshot-outage"


#: The faults that last for ``duration`` seconds.
LASTING: Final = frozenset(
    {
        FaultKind.REFUSE,
        FaultKind.PARTITION,
        FaultKind.LATENCY,
        FaultKind.ADMISSION,
        FaultKind.RESTART_REFUSE,
        FaultKind.SNAPSHOT_OUTAGE,
    }
)


@attrs.frozen
class Fault:
    """One fault at ``at`` seconds.

    Attributes:
        kind: What happens.
        at: When, virtual seconds from the start.
        duration: How long it lasts (lasting kinds only).
        share: The share of the clients it hits (1.0: all of them, by the
            network's "no names" form where there is one).
        pick: Seeds the choice of which clients.
        code: The close code (drops with a close frame, server closes).
        hint_ms: A ``retryAfter`` in the close reason, or ``None``.
        latency: The one-way latency during a spike.
        jitter: The jitter during a spike.
        rate: The admission rate during a 503 storm, per second.
        stale: For a snapshot outage: answer with a snapshot older than the
            log instead of failing.
    """

    kind: FaultKind
    at: float
    duration: float = 0.0
    share: float = 1.0
    pick: int = 0
    code: int | None = None
    hint_ms: int | None = None
    latency: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0
    stale: bool = False

    @property
    def ends(self) -> float:
        return self.at + self.duration


@attrs.frozen
class Schedule:
    """Everything hypothesis chooses for one run.

    Attributes:
        seed: Seeds the network, the server, the publisher and the clients.
        latency: The network's base one-way latency.
        jitter: The network's base jitter.
        snapshot_lag: The snapshot is this many events older than the newest.
        snapshot_delay: How long the snapshot provider takes.
        snapshot_late: Whether the provider reads the newest id after its
            delay (then the snapshot may cover events already queued for the
            client) or before it (then the server sends the events in between).
        faults: The faults, in time order.
    """

    seed: int
    latency: float
    jitter: float
    snapshot_lag: int
    snapshot_delay: float
    snapshot_late: bool
    faults: tuple[Fault, ...]

    @property
    def healed_at(self) -> float:
        """When the last fault ended (0 without faults)."""
        return max((f.ends for f in self.faults), default=0.0)

    @property
    def spike_latency(self) -> float:
        """The largest one-way delay a byte could get during a spike."""
        return max(
            (f.latency + f.jitter for f in self.faults if f.kind is FaultKind.LATENCY),
            default=0.0,
        )


def _tenths(low: float, high: float) -> st.SearchStrategy[float]:
    """Floats in [low, high] in steps of 0.1 (readable, shrinks well)."""
    return st.integers(round(low * 10), round(high * 10)).map(lambda n: n / 10)


@st.composite
def faults(draw: st.DrawFn, profile: Profile) -> Fault:
    """One generated fault that has ended by ``profile.fault_end``."""
    kind = draw(st.sampled_from(FaultKind))
    duration = draw(_tenths(0.5, MAX_FAULT_DURATION)) if kind in LASTING else 0.0
    at = draw(_tenths(1.0, profile.fault_end - duration))
    share = draw(st.sampled_from([1.0, 0.5, 0.2, 0.02]))
    pick = draw(st.integers(0, 2**16))
    code: int | None = None
    hint_ms: int | None = None
    latency = jitter = rate = 0.0
    stale = False
    if kind is FaultKind.DROP_CLOSE:
        code = draw(st.sampled_from(DROP_CODES))
        hint_ms = draw(st.none() | st.integers(0, MAX_HINT_MS))
    elif kind is FaultKind.SERVER_CLOSE:
        code = draw(st.sampled_from(SERVER_CLOSE_CODES))
        hint_ms = draw(st.none() | st.integers(0, MAX_HINT_MS))
    elif kind is FaultKind.LATENCY:
        latency = draw(_tenths(0.1, MAX_SPIKE_LATENCY))
        jitter = draw(_tenths(0.0, MAX_SPIKE_JITTER))
    elif kind is FaultKind.ADMISSION:
        rate = draw(st.sampled_from([0.5, 1.0, 2.0, 5.0]))
    elif kind is FaultKind.SNAPSHOT_OUTAGE:
        stale = draw(st.booleans())
    elif kind is FaultKind.RESTART_REFUSE:
        # restart(refuse_for=...) adds refuse_for to every hint; keep the hint
        # within the clients' max_server_delay so that the refusal is the
        # server's whole plan.
        duration = draw(_tenths(0.5, 30.0))
        at = draw(_tenths(1.0, profile.fault_end - duration))
    return Fault(
        kind=kind,
        at=at,
        duration=duration,
        share=share,
        pick=pick,
        code=code,
        hint_ms=hint_ms,
        latency=latency,
        jitter=jitter,
        rate=rate,
        stale=stale,
    )


@st.composite
def schedules(draw: st.DrawFn, profile: Profile) -> Schedule:
    """A whole run's parameters and its fault schedule."""
    drawn = draw(
        st.lists(faults(profile), min_size=profile.min_faults, max_size=profile.max_faults)
    )
    return Schedule(
        seed=draw(st.integers(0, 2**32 - 1)),
        latency=draw(st.sampled_from([0.0, 0.005, 0.02, MAX_BASE_LATENCY])),
        jitter=draw(st.sampled_from([0.0, 0.005, MAX_BASE_JITTER])),
        snapshot_lag=draw(st.integers(0, 3)),
        snapshot_delay=draw(st.sampled_from([0.0, 0.05, MAX_SNAPSHOT_DELAY])),
        snapshot_late=draw(st.booleans()),
        faults=tuple(sorted(drawn, key=lambda f: f.at)),
    )


# -- what was published ------------------------------------------------------------


@attrs.define(eq=False)
class Published:
    """Every event the server published, in log order (position 1, 2, ...)."""

    ids: list[str | None] = attrs.field(factory=lambda: [None])
    data: list[Any] = attrs.field(factory=lambda: [None])
    index: dict[str | None, int] = attrs.field(factory=lambda: {None: 0})

    def add(self, event_id: str, data: Any) -> None:
        if event_id in self.index:
            raise AssertionError(f"the server issued id {event_id!r} twice")
        self.index[event_id] = len(self.ids)
        self.ids.append(event_id)
        self.data.append(data)

    @property
    def count(self) -> int:
        return len(self.ids) - 1


def snapshot_data(position: int, published: Published) -> dict[str, Any]:
    """The application's state as of event ``position``: what a snapshot carries."""
    return {"upto": published.ids[position], "events": position}


class SnapshotUnavailable(Exception):
    """Raised by the snapshot provider during an outage, on purpose."""


# -- the clients ------------------------------------------------------------------------


@attrs.define(eq=False)
class ClientRecord:
    """One client of the crowd: what it received and went through."""

    number: int
    name: str
    ws: ReconnectingWebSocket | None = None
    items: list[Item] = attrs.field(factory=list)
    transitions: list[tuple[float, ConnectionState]] = attrs.field(factory=list)
    #: The ``ready`` id of each handshake that ended lost, in order: the id
    #: the client resumes from after the matching Gap item.
    gap_ready_ids: list[str | None] = attrs.field(factory=list)
    lost_seen: int = 0
    longest_wait: float = 0.0
    error: BaseException | None = None
    got_final: bool = False
    exited: bool = False
    snapshots: int = 0
    gaps: int = 0
    lost_statistic: int = 0
    reconnects: int = 0

    def on_transition(self, transition: Transition) -> None:
        self.transitions.append((transition.time, transition.state))
        if transition.delay is not None:
            self.longest_wait = max(self.longest_wait, transition.delay)
        if transition.state is ConnectionState.OPEN and self.ws is not None:
            lost = self.ws.statistics().lost
            if lost > self.lost_seen:
                # The handshake just ended with lost: true. The client's
                # last_event_id is now the ready id, where the Gap leaves it.
                self.lost_seen = lost
                self.gap_ready_ids.append(self.ws.last_event_id)


def client_options(record: ClientRecord, network: MemoryNetwork, seed: int) -> dict[str, Any]:
    """Realistic options: retry forever, pings that find a half-open link."""
    return {
        "backoff": BACKOFF,
        "max_attempts": None,
        "stable_after": STABLE_AFTER,
        "connect_timeout": CONNECT_TIMEOUT,
        "resume_timeout": RESUME_TIMEOUT,
        "close_timeout": CLOSE_TIMEOUT,
        "ping_interval": PING_INTERVAL,
        "ping_timeout": PING_TIMEOUT,
        "max_server_delay": MAX_SERVER_DELAY,
        "random": random.Random(seed * 1_000 + record.number),
        "open_stream": network.client(record.name),
        "on_transition": record.on_transition,
    }


# -- checks ---------------------------------------------------------------------------


#: The end of an iterator whose items may be None.
_END: Final = object()


def check_items(record: ClientRecord, published: Published) -> list[str]:
    """Check one client's items against the log; return the problems.

    ``position`` is where the client's ``lastEventId`` stands (0: none):

    * a ``ServerEvent`` must be the event right after ``position``, with the
      data that was published;
    * a ``Snapshot`` with id X stands for every event up to X: X must be a
      published id (or ``None`` before any), not behind ``position``, and its
      data the state as of X; the next event must be the one right after X;
    * a ``Gap`` carries ``last_id``, the client's ``lastEventId`` before the
      handshake: it must be the id at ``position``. The events after it up to
      the ``ready`` id of that handshake are the lost ones (at least one,
      unless the client had nothing yet), and the next event must be the one
      right after that ``ready`` id;
    * nothing else (a raw message) may appear.
    """
    problems: list[str] = []
    position = 0
    gaps = iter(record.gap_ready_ids)

    def problem(n: int, text: str) -> None:
        if len(problems) < 5:
            problems.append(f"{record.name} item {n}: {text}")

    for n, item in enumerate(record.items):
        if isinstance(item, ServerEvent):
            at = published.index.get(item.id)
            if at is None or at == 0:
                problem(n, f"event {item.id!r} was never published")
                continue
            if at != position + 1:
                kind = "duplicate or out of order" if at <= position else "missing events"
                problem(n, f"{kind}: event {item.id} after {published.ids[position]!r}")
            if item.data != published.data[at]:
                problem(n, f"event {item.id} carries {item.data!r}")
            position = at
        elif isinstance(item, Snapshot):
            record.snapshots += 1
            at = published.index.get(item.id)
            if at is None:
                problem(n, f"snapshot {item.id!r} is not a published id")
                continue
            if at < position:
                problem(n, f"snapshot {item.id} takes the client back from {position}")
            if item.data != snapshot_data(at, published):
                problem(n, f"snapshot {item.id} carries {item.data!r}")
            position = at
        elif isinstance(item, Gap):
            record.gaps += 1
            if item.last_id != published.ids[position]:
                problem(n, f"gap after {item.last_id!r}, but the client was at {position}")
            ready_id = next(gaps, "<no lost handshake for this gap>")
            at = published.index.get(ready_id)
            if at is None:
                problem(n, f"gap: the ready id {ready_id!r} is not a published id")
                continue
            if at < position or (at == position and position > 0):
                problem(n, f"gap after {item.last_id!r} loses nothing (ready {ready_id!r})")
            position = at
        else:
            problem(n, f"unexpected raw message {item!r:.60}")
    if next(gaps, _END) is not _END:
        problems.append(f"{record.name}: more lost handshakes than Gap items")
    if record.gaps != record.lost_statistic:
        problems.append(
            f"{record.name}: {record.gaps} Gap items, statistics say {record.lost_statistic} lost"
        )
    if not record.items or record.items[-1] != ServerEvent(
        published.ids[-1] or "", published.data[-1]
    ):
        last = record.items[-1] if record.items else None
        problems.append(f"{record.name}: the last item is {last!r:.80}, not the final event")
    elif position != published.count:
        problems.append(f"{record.name}: ends at {position}, not {published.count}")
    return problems


def check_ready(record: ClientRecord, healed_at: float, bound: float) -> tuple[list[str], float]:
    """Ready again within ``bound`` of ``healed_at``, and ready from then on.

    Returns:
        The problems, and how long after the heal the client was ready for
        good (0 if it was ready on a good connection all along).
    """
    problems: list[str] = []
    before_close = [(t, s) for t, s in record.transitions if s is not ConnectionState.CLOSED]
    if not before_close or before_close[-1][1] is not ConnectionState.OPEN:
        last = before_close[-1] if before_close else None
        problems.append(f"{record.name}: not ready at the end (last transition {last})")
        return problems, math.inf
    ready_at = before_close[-1][0]
    took = max(0.0, ready_at - healed_at)
    if took > bound:
        problems.append(
            f"{record.name}: ready for good {took:.1f} s after the heal, over the bound {bound:.1f}"
        )
    longest = max(BACKOFF.max_delay, MAX_SERVER_DELAY)
    if record.longest_wait > longest:
        problems.append(f"{record.name}: waited {record.longest_wait:.1f} s, over {longest}")
    return problems, took


# -- logs ------------------------------------------------------------------------------


def _is_pong_race(exc_info: Any) -> bool:
    """trio-websocket's reader pongs a ping that came after the server's close frame.

    wsproto refuses the pong (LOCAL_CLOSING) and the reader task dies with
    ``LocalProtocolError`` (python-trio/trio-websocket#184); the server
    catches it per connection after its close frame went out (docs/explanation/differences.md).
    """
    if not exc_info or exc_info[1] is None:
        return False
    return all(
        isinstance(leaf, wsproto.utilities.LocalProtocolError)
        and str(leaf).startswith("Event Pong(")
        and "LOCAL_CLOSING" in str(leaf)
        for leaf in leaves(exc_info[1])
    )


class LogTally(logging.Handler):
    """Counts what is logged at WARNING and above; the unexpected is kept."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.expected: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg if isinstance(record.msg, str) else ""
        exc = record.exc_info[1] if record.exc_info else None
        if message.startswith("snapshot for client") and isinstance(exc, SnapshotUnavailable):
            self.expected["snapshot failed"] += 1
        elif message.startswith("snapshot id %r is unknown to the log"):
            self.expected["stale snapshot"] += 1
        elif message == "connection failed" and _is_pong_race(record.exc_info):
            self.expected["pong during close (trio-websocket#184)"] += 1
        elif record.name == "trio_reconnect" and message == RETRIED_FAILURE_MESSAGE:
            self.expected["client retried a failure"] += 1  # the chaos itself
        elif len(self.unexpected) < 20:
            text = f"{record.levelname} {record.name}: {record.getMessage()}"
            if exc is not None:
                text += f" [{type(exc).__name__}: {exc!r:.300}]"
            self.unexpected.append(text)


@contextlib.contextmanager
def watching_logs() -> Iterator[LogTally]:
    """Count the warnings and errors logged inside the block (not propagated)."""
    tally = LogTally()
    loggers = [logging.getLogger(name) for name in ("trio_reconnect", "trio-websocket")]
    saved = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(tally)
        logger.propagate = False
    try:
        yield tally
    finally:
        for logger, propagate in zip(loggers, saved, strict=True):
            logger.propagate = propagate
            logger.removeHandler(tally)


# -- tasks ------------------------------------------------------------------------------


def _is_client_task(name: str) -> bool:
    return name.startswith(("trio_reconnect._client.", "trio_reconnect._attempt.")) or (
        ".<locals>.watched" in name
    )


# -- one run -----------------------------------------------------------------------------


@attrs.define(eq=False)
class RunReport:
    """What one run did and found (plain values)."""

    problems: list[str] = attrs.field(factory=list)
    faults: collections.Counter[str] = attrs.field(factory=collections.Counter)
    #: Network links each fault kind hit, clients the server closed, etc.
    hits: collections.Counter[str] = attrs.field(factory=collections.Counter)
    outcomes: collections.Counter[str] = attrs.field(factory=collections.Counter)
    logs: collections.Counter[str] = attrs.field(factory=collections.Counter)
    events: int = 0
    items: int = 0
    #: Server connections left open on black-holed links after the clients left.
    ghosts: int = 0
    longest_recovery: float = 0.0
    ready_bound: float = 0.0
    virtual_end: float = 0.0
    #: A digest of every client's items and transitions: equal for equal runs.
    fingerprint: str = ""


@attrs.define(eq=False)
class _Chaos:
    """The state of one run: the server, the network and the fault bookkeeping."""

    profile: Profile
    schedule: Schedule
    report: RunReport
    network: MemoryNetwork
    server: ReconnectServer
    published: Published
    records: list[ClientRecord]
    names: list[str]
    partitions: collections.Counter[str] = attrs.field(factory=collections.Counter)
    spikes: list[Fault] = attrs.field(factory=list)
    storms: list[Fault] = attrs.field(factory=list)
    outages: list[Fault] = attrs.field(factory=list)
    normal_admission: AdmissionControl | None = None
    blackholed: set[str] = attrs.field(factory=set)

    # -- the server's application side

    async def snapshot(self) -> tuple[str | None, Any]:
        schedule = self.schedule
        if self.outages:
            if not any(f.stale for f in self.outages):
                self.report.outcomes["snapshot provider failed"] += 1
                raise SnapshotUnavailable("the snapshot store is down")
            # A snapshot older than the log can hold: the server cannot place it.
            position = max(0, self.published.count - self.profile.log_size - 5)
            await trio.sleep(schedule.snapshot_delay)
            self.report.outcomes["stale snapshot served"] += 1
            return self.published.ids[position], snapshot_data(position, self.published)
        position = max(0, self.published.count - schedule.snapshot_lag)
        await trio.sleep(schedule.snapshot_delay)  # events are published meanwhile
        if schedule.snapshot_late:
            position = max(0, self.published.count - schedule.snapshot_lag)
        return self.published.ids[position], snapshot_data(position, self.published)

    async def publisher(self) -> None:
        rng = random.Random(self.schedule.seed ^ 0x5EED)
        low, high = self.profile.publish_every
        n = 0
        while True:
            pause = rng.uniform(low, high)
            if trio.current_time() + pause >= self.profile.duration:
                break
            await trio.sleep(pause)
            n += 1
            await self.server.publish({"n": n})  # recorded by RecordingLog
        await trio.sleep_until(self.profile.duration)
        await self.server.publish({"n": n + 1, "final": True})

    # -- the clients

    async def run_client(self, record: ClientRecord) -> None:
        options = client_options(record, self.network, self.schedule.seed)
        final_deadline = self.profile.duration + FINAL_GRACE
        try:
            async with open_reconnecting_websocket(URL, **options) as ws:
                record.ws = ws
                with trio.move_on_at(final_deadline):
                    async for item in ws:
                        record.items.append(item)
                        if (
                            isinstance(item, ServerEvent)
                            and isinstance(item.data, dict)
                            and item.data.get("final") is True
                        ):
                            record.got_final = True
                            break
                statistics = ws.statistics()
                record.lost_statistic = statistics.lost
                record.reconnects = statistics.reconnects
        except Exception as exc:
            record.error = exc
        record.exited = True

    # -- faults

    def _pick(self, fault: Fault) -> list[str]:
        if fault.share >= 1.0:
            return []  # the network's form for "everyone"
        count = max(1, round(fault.share * len(self.names)))
        return random.Random(fault.pick).sample(self.names, count)

    def _apply_latency(self) -> None:
        if self.spikes:
            self.network.latency = max(f.latency for f in self.spikes)
            self.network.jitter = max(f.jitter for f in self.spikes)
        else:
            self.network.latency = self.schedule.latency
            self.network.jitter = self.schedule.jitter

    def _apply_admission(self) -> None:
        if self.normal_admission is None:
            self.normal_admission = self.server._parts.admission.limiter
        if self.storms:
            rate = min(f.rate for f in self.storms)
            # No public way to change the admission rate of a running server.
            self.server._parts.admission.limiter = AdmissionControl(
                rate, refusal_rate=self.server.spread.rate
            )
        else:
            self.server._parts.admission.limiter = self.normal_admission

    def _hint_reason(self, fault: Fault, word: str) -> str:
        if fault.hint_ms is None:
            return word
        return json.dumps({"reason": word, "retryAfter": fault.hint_ms})

    async def inject(self, fault: Fault) -> None:
        self.report.faults[fault.kind.value] += 1
        names = self._pick(fault)
        kind = fault.kind
        network = self.network
        hits = self.report.hits
        if kind is FaultKind.DROP_CLOSE:
            hits["links closed with a close frame"] += network.drop(
                *names, code=fault.code, reason=self._hint_reason(fault, "proxy")
            )
        elif kind is FaultKind.DROP_BARE:
            hits["links closed with a bare FIN"] += network.drop(*names, code=None)
        elif kind is FaultKind.RESET:
            hits["links reset"] += network.reset(*names)
        elif kind is FaultKind.BLACKHOLE:
            targets = set(names)
            for link in network.links:
                if not targets or link.client in targets:
                    self.blackholed.add(repr(link.server_stream))
            hits["links black-holed"] += network.blackhole(*names)
        elif kind is FaultKind.REFUSE:
            network.refuse(fault.duration, *names)
        elif kind is FaultKind.PARTITION:
            cut = names or self.names
            self.partitions.update(cut)
            network.partition(*cut)
            await trio.sleep(fault.duration)
            self.partitions.subtract(cut)
            network.heal(*[name for name in cut if self.partitions[name] <= 0])
        elif kind is FaultKind.LATENCY:
            self.spikes.append(fault)
            self._apply_latency()
            await trio.sleep(fault.duration)
            self.spikes.remove(fault)
            self._apply_latency()
        elif kind is FaultKind.ADMISSION:
            self.storms.append(fault)
            self._apply_admission()
            await trio.sleep(fault.duration)
            self.storms.remove(fault)
            self._apply_admission()
        elif kind is FaultKind.RESTART_REFUSE:
            hits["clients closed by restarts"] += len(self.server.clients)
            await self.server.restart(refuse_for=fault.duration)
        elif kind is FaultKind.RESTART:
            hits["clients closed by restarts"] += len(self.server.clients)
            await self.server.restart()
        elif kind is FaultKind.SERVER_CLOSE:
            await self._server_close(fault)
        elif kind is FaultKind.SNAPSHOT_OUTAGE:
            self.outages.append(fault)
            await trio.sleep(fault.duration)
            self.outages.remove(fault)

    async def _server_close(self, fault: Fault) -> None:
        clients: Sequence[ConnectedClient] = self.server.clients
        if fault.share < 1.0:
            count = max(1, round(fault.share * len(clients))) if clients else 0
            clients = random.Random(fault.pick).sample(list(clients), count)
        self.report.hits["clients closed by the server"] += len(clients)
        reason = self._hint_reason(fault, "shedding")
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(client.aclose, fault.code or 1000, reason)

    async def fault_runner(self) -> None:
        async with trio.open_nursery() as nursery:
            for fault in self.schedule.faults:
                await trio.sleep_until(fault.at)
                nursery.start_soon(self.inject, fault)

    # -- the end

    async def settle_server(self) -> None:
        """Wait until the server holds only ghosts; check; then drain it."""

        def leftovers() -> list[ConnectedClient]:
            return [c for c in self.server.clients if c.remote not in self.blackholed]

        with trio.move_on_after(SERVER_CLOSE_TIMEOUT + 5.0):
            while leftovers():
                await trio.sleep(0.1)
        for client in leftovers()[:5]:
            self.report.problems.append(
                f"the server still holds {client!r:.200} ({client.state.value}) after every "
                "client left"
            )
        self.report.ghosts = len(self.server.clients)
        with trio.move_on_after(SERVER_CLOSE_TIMEOUT + 5.0) as scope:
            await self.server.drain()
        if scope.cancelled_caught or self.server.clients:
            self.report.problems.append(f"drain() left {len(self.server.clients)} connections open")


async def _main(profile: Profile, schedule: Schedule, report: RunReport) -> None:
    baseline = set(live_tasks())
    network = MemoryNetwork(
        random=random.Random(schedule.seed), latency=schedule.latency, jitter=schedule.jitter
    )
    published = Published()
    names = [f"c{i:03d}" for i in range(profile.clients)]
    chaos: _Chaos
    server = ReconnectServer(
        RecordingLog(ReplayLog(profile.log_size, start=1), published),
        snapshot=lambda: chaos.snapshot(),
        max_replay=profile.max_replay,
        close_timeout=SERVER_CLOSE_TIMEOUT,
        rng=random.Random(schedule.seed + 1),
    )
    records = [ClientRecord(i, name) for i, name in enumerate(names)]
    chaos = _Chaos(profile, schedule, report, network, server, published, records, names)
    with trio.fail_after(profile.duration + FINAL_GRACE + 120.0):
        async with trio.open_nursery() as root:
            await root.start(server.serve_listeners, [network.listen("server", 80)])
            async with trio.open_nursery() as work:
                for record in records:
                    work.start_soon(chaos.run_client, record)
                work.start_soon(chaos.publisher)
                work.start_soon(chaos.fault_runner)
            # Every client block has exited: none of their tasks may be left.
            client_tasks = [name for name in live_tasks().values() if _is_client_task(name)]
            if client_tasks:
                report.problems.append(f"client tasks outlived their blocks: {client_tasks[:5]}")
            await chaos.settle_server()
            root.cancel_scope.cancel()
    left = [name for task, name in live_tasks().items() if task not in baseline]
    if left:
        report.problems.append(f"tasks outlived the run: {left[:10]}")
    report.virtual_end = trio.current_time()
    statistics = server.statistics()
    report.outcomes["server handshakes: snapshot"] += statistics.snapshots
    report.outcomes["server handshakes: lost"] += statistics.lost
    report.outcomes["server handshakes: replayed"] += statistics.replayed
    report.outcomes["server handshakes: fresh"] += statistics.fresh
    report.outcomes["server refused (503)"] += statistics.refused
    check_run(chaos)


def check_run(chaos: _Chaos) -> None:
    """Check every client after the run (see the module docstring)."""
    report = chaos.report
    healed_at = chaos.schedule.healed_at
    bound = ready_bound(chaos.schedule.spike_latency)
    report.ready_bound = bound
    report.events = chaos.published.count
    digest = hashlib.sha256()
    for record in chaos.records:
        digest.update(repr((record.name, record.items, record.transitions)).encode())
        report.items += len(record.items)
        if record.error is not None:
            kinds = [type(leaf).__name__ for leaf in leaves(record.error)]
            report.problems.append(
                f"{record.name}: its block raised {type(record.error).__name__} {kinds} "
                f"{record.error!r:.200}"
            )
        if not record.exited:
            report.problems.append(f"{record.name}: its block did not exit")
        if not record.got_final:
            report.problems.append(f"{record.name}: did not get the final event in time")
        report.problems.extend(check_items(record, chaos.published))
        problems, took = check_ready(record, healed_at, bound)
        report.problems.extend(problems)
        if math.isfinite(took):
            report.longest_recovery = max(report.longest_recovery, took)
        report.outcomes["Snapshot items"] += record.snapshots
        report.outcomes["Gap items"] += record.gaps
        report.outcomes["client reconnects"] += record.reconnects
    report.fingerprint = digest.hexdigest()[:16]


def run_chaos(profile: Profile, schedule: Schedule) -> RunReport:
    """One run, on a fresh MockClock; returns what it did and found."""
    report = RunReport()
    if schedule.healed_at > profile.fault_end:
        raise ValueError("the schedule has faults past profile.fault_end")
    with watching_logs() as logs:
        trio.run(
            _main,
            profile,
            schedule,
            report,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    report.logs.update(logs.expected)
    report.problems.extend(f"logged: {text}" for text in logs.unexpected)
    return report
