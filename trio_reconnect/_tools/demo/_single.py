"""``python -m trio_reconnect demo``: a crowd of real clients through real restarts.

The embedded :class:`~trio_reconnect.server.ReconnectServer` listens on
127.0.0.1; a crowd of :func:`~trio_reconnect.open_reconnecting_websocket`
clients connects over loopback TCP; the server publishes a steady stream of
events and restarts a few times, each time dropping every client with 1012
and a spread ``retryAfter``. The demo then checks, per client, that every
event published arrived exactly once, and reports how evenly the clients
came back (peak arrivals per 100 ms against the planned even rate).

The summary explains its own terms (:meth:`DemoSummary.glossary`): a reader
who has not read the docs should be able to tell from it whether the run went
well.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Final, TextIO

import attrs
import trio

from ..._metrics import HEALTHY_BELOW, INCIDENT_ABOVE, REGRESSION_ABOVE, health_level, percentile
from ..._validators import check_int, check_positive
from ...server import ReconnectServer, ReplayLog, SpreadPolicy
from ._arrivals import ARRIVAL_BIN, AcceptTimes, freeze_heap, peak_per_bin
from ._collect import HeldCollection
from ._crowd import ClientRecord, Crowd, CrowdStatus, open_crowd

__all__ = [
    "DEFAULT_CLIENTS",
    "DEFAULT_DURATION",
    "DEFAULT_RATE",
    "DEFAULT_RESTARTS",
    "DemoSummary",
    "run_demo",
]

#: Clients of the demo (one node or a cluster).
DEFAULT_CLIENTS: Final = 300
#: Seconds of publishing in the one-node demo.
DEFAULT_DURATION: Final = 15.0
#: Restarts of the one-node demo.
DEFAULT_RESTARTS: Final = 3
#: Events per second the demo publishes (one node or a cluster).
DEFAULT_RATE: Final = 5.0

#: Erase from the cursor to the end of the line (ANSI EL), after each redraw.
_CLEAR_TO_END: Final = "\x1b[K"
_WIDTH: Final = 79
_UNIT: Final = re.compile(r"(\d) (s|ms|x)\b")
#: Seconds between looks at whether every client is back after a restart.
_BACK_POLL: Final = 0.05


@attrs.frozen
class DemoSummary:
    """The demo's result (``--json`` prints it as one object)."""

    clients: int
    duration_s: float
    restarts: int
    events_published: int
    delivered_min: int
    delivered_max: int
    duplicated: int
    lost: int
    reconnects: int
    median_reconnect_s: float | None
    p95_reconnect_s: float | None
    health: str
    peak_arrivals_per_100ms: int
    planned_per_100ms: float
    refused_handshakes: int
    #: Seconds of publishing asked for (``duration_s`` adds connecting and catching up).
    publishing_s: float
    #: The server's spread: the first return after ``base``, the last within ``window`` more.
    spread_base_s: float
    spread_window_s: float
    #: The median reconnect less the waits the server asked for (what ``health`` reads).
    median_beyond_server_wait_s: float | None = None
    #: The machine's CPUs, and its load average over the last minute when the demo ended
    #: (``None`` where the system does not tell): the demo's processes share them.
    cpus: int | None = None
    load_average: float | None = None

    @property
    def ok(self) -> bool:
        """Every client got every event exactly once."""
        return self.lost == 0 and self.duplicated == 0

    def table(self) -> str:
        """The summary as an aligned two-column table."""

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f} s"

        rows = [
            ("clients", str(self.clients)),
            (
                "duration",
                f"{self.duration_s:.1f} s ({self.publishing_s:g} s of events,"
                " plus connecting and catching up)",
            ),
            ("server restarts", str(self.restarts)),
            ("events published", str(self.events_published)),
            ("delivered per client", f"{self.delivered_min} .. {self.delivered_max}"),
            ("duplicated (all clients)", str(self.duplicated)),
            ("lost (all clients)", str(self.lost)),
            ("reconnects", str(self.reconnects)),
            ("median reconnect", f"{seconds(self.median_reconnect_s)} ({self._beyond()})"),
            ("p95 reconnect", seconds(self.p95_reconnect_s)),
            (
                "peak vs planned",
                f"{self.peak_arrivals_per_100ms} vs {self.planned_per_100ms:.1f} arrivals"
                f" per 100 ms ({self.peak_ratio:.1f} x the plan)",
            ),
            ("refused handshakes", str(self.refused_handshakes)),
            ("machine", self._machine()),
            ("result", "OK: nothing lost, nothing duplicated" if self.ok else "FAILED"),
        ]
        width = max(len(name) for name, _ in rows)
        table = "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)
        return f"{table}\n\n{self.glossary()}"

    def _machine(self) -> str:
        cpus = "? CPUs" if self.cpus is None else f"{self.cpus} CPU{'' if self.cpus == 1 else 's'}"
        load = "?" if self.load_average is None else f"{self.load_average:.1f}"
        return f"{cpus}, load average {load} (last minute)"

    def _beyond(self) -> str:
        if self.median_beyond_server_wait_s is None:
            return self.health
        beyond = self.median_beyond_server_wait_s
        return f"{beyond:.3f} s beyond the server's asked wait: {self.health}"

    @property
    def peak_ratio(self) -> float:
        """The peak arrivals per 100 ms over the planned even rate (1.0: perfectly even)."""
        return self.peak_arrivals_per_100ms / self.planned_per_100ms

    def glossary(self) -> str:
        """What the table's terms mean, and how to read this run's figures."""
        last = self.spread_base_s + self.spread_window_s
        middle = self.spread_base_s + self.spread_window_s / 2
        herd = self.clients / self.planned_per_100ms
        reconnect = (
            "reconnect: from a dropped connection to ready again, with the missed events replayed."
        )
        if self.reconnects < self.clients * self.restarts:
            reconnect += (
                f" {self.reconnects} is fewer than {self.clients} x {self.restarts} restarts:"
                " a client that was not back yet when the next restart came returned once."
            )
        levels = (
            f"{self.health}: the health level of the median reconnect less the wait the"
            f" server asked for (the client's own part): healthy under"
            f" {HEALTHY_BELOW:g} s, watch from {HEALTHY_BELOW:g} s to {REGRESSION_ABOVE:g} s,"
            f" regression over {REGRESSION_ABOVE:g} s, incident over {INCIDENT_ABOVE:g} s."
        )
        if not self.restarts:
            entries = [reconnect, levels + " With no restart there was no reconnect to measure."]
        else:
            flatter = herd / self.peak_ratio if self.peak_ratio else math.inf
            entries = [
                reconnect,
                levels + f" At each restart the server told every client when to come back,"
                f" spread from {self.spread_base_s:g} s to {last:g} s after it, so a median"
                f" near {middle:g} s is that plan at work, not slowness.",
                f"peak vs planned: the most clients that came back within one 100 ms after a"
                f" restart, against the plan: {self.clients} clients evenly over the"
                f" {self.spread_window_s:g} s window. Without the spread all {self.clients}"
                f" would come back within the same 100 ms, {herd:.0f} x the plan; this run's"
                f" {self.peak_ratio:.1f} x is {flatter:.0f} times flatter. 1 x would be"
                " perfectly even. The demo counts each return when the server accepts its"
                " connection, as a server operator sees it; the clients run in processes of"
                " their own. On a machine busy with other work (a load average above its"
                " CPUs) every process pauses now and then, and the returns that fell due"
                " meanwhile bunch.",
            ]
        # Wrap at spaces, but never between a number and its unit.
        return "\n".join(
            textwrap.fill(
                _UNIT.sub("\\1\0\\2", entry),
                _WIDTH,
                initial_indent="  ",
                subsequent_indent="    ",
            ).replace("\0", " ")
            for entry in entries
        )


async def run_demo(
    *,
    clients: int = DEFAULT_CLIENTS,
    duration: float = DEFAULT_DURATION,
    restarts: int = DEFAULT_RESTARTS,
    rate: float = DEFAULT_RATE,
    out: TextIO = sys.stderr,
    progress: bool | None = None,
) -> DemoSummary:
    """Run the demo and return its summary.

    Raises:
        ValueError: for an option out of range (the rules of
            :mod:`trio_reconnect._validators`).

    Args:
        clients: How many clients connect.
        duration: Seconds of publishing (restarts are spread evenly inside).
        restarts: How many times the server drops every client.
        rate: Events published per second.
        out: Where progress goes.
        progress: One updating line (``True``), plain lines (``False``), or
            decided by whether ``out`` is a terminal (``None``).
    """
    check_int("clients", clients, minimum=1)
    check_positive("duration", duration)
    check_int("restarts", restarts, minimum=0)
    check_positive("rate", rate)
    tty = out.isatty() if progress is None else progress
    spread = SpreadPolicy()
    server = ReconnectServer(ReplayLog(max_events=100_000), spread=spread, max_replay=10_000)
    run = _Run(clients, restarts)
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        # Returns are counted where the server sees them, at accept() (_arrivals.py).
        (tcp,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        accepted = AcceptTimes(tcp)
        await nursery.start(server.serve_listeners, [accepted])
        url = f"ws://127.0.0.1:{tcp.socket.getsockname()[1]}/demo"
        print(_opening(clients, url, restarts, duration, rate), file=out, flush=True)
        nursery.start_soon(_report, run, out, tty)
        freeze_heap()  # what the server holds before any client: out of full collections
        async with _collecting(run), open_crowd(url, clients) as run.crowd:
            await run.crowd.wait_until()
            await _publish(server, run, nursery, duration=duration, rate=rate)
            # Let every client come back and catch up before counting.
            with trio.move_on_after(spread.base + spread.window(clients) + 10):
                await run.crowd.wait_until(delivered=server.statistics().events_published)
            final = run.status()
            run.finished = True
            if run.releasing is not None:
                run.releasing.cancel()  # no more waiting for returns: the crowd is leaving
            run.records = await run.crowd.stop()  # every client leaves, closing with 1000
        nursery.cancel_scope.cancel()
    print(("\r" if tty else "") + final + (_CLEAR_TO_END if tty else ""), file=out, flush=True)
    return _summary(run, server, spread, accepted.times, duration=duration, started=started)


@attrs.define(eq=False)
class _Run:
    """What the demo tracks while it runs: the clients, the restarts, the events."""

    clients: int
    restarts: int
    crowd: Crowd | None = None
    records: list[ClientRecord] = attrs.field(factory=list)
    restart_times: list[float] = attrs.field(factory=list)
    published_ids: list[str] = attrs.field(factory=list)
    finished: bool = False
    #: The server process's collection, held from each restart until every client is back.
    collection: HeldCollection = attrs.field(factory=HeldCollection)
    #: The wait for the last restart's clients to be back.
    releasing: trio.CancelScope | None = None

    def status(self) -> str:
        """The progress line."""
        now = CrowdStatus() if self.crowd is None else self.crowd.status
        median = now.median_reconnect
        shown = "-" if median is None else f"{median:.3f}s"
        return (
            f"connected {now.connected:>5}/{self.clients}  median reconnect {shown} "
            f"({health_level(now.median_beyond).value})  events delivered "
            f"{now.delivered:>8}  restarts {len(self.restart_times)}/{self.restarts}"
        )


@contextlib.asynccontextmanager
async def _collecting(run: _Run) -> AsyncIterator[None]:
    """Automatic collection is on again when the demo ends, however it ends."""
    try:
        yield
    finally:
        run.collection.release()


async def _report(run: _Run, out: TextIO, tty: bool) -> None:
    """Print the progress: one line redrawn on a terminal, else a line every 5 s."""
    try:
        while True:
            if tty:
                print("\r" + run.status() + _CLEAR_TO_END, end="", file=out, flush=True)
                await trio.sleep(0.2)
            else:
                print(run.status(), file=out, flush=True)
                await trio.sleep(5)
    finally:
        if tty and not run.finished:  # interrupted: end the live line before the prompt
            print(file=out, flush=True)


async def _publish(
    server: ReconnectServer, run: _Run, nursery: trio.Nursery, *, duration: float, rate: float
) -> None:
    """Publish ``rate`` events a second for ``duration`` s, restarting the server evenly inside."""
    step = duration / (run.restarts + 1)
    next_restart = trio.current_time() + step
    end = trio.current_time() + duration
    while trio.current_time() < end:
        run.published_ids.append(await server.publish({"n": len(run.published_ids) + 1}))
        if len(run.restart_times) < run.restarts and trio.current_time() >= next_restart:
            await _restart(server, run, nursery)
            next_restart += step
        await trio.sleep(1 / rate)


async def _restart(server: ReconnectServer, run: _Run, nursery: trio.Nursery) -> None:
    """Collect garbage in both processes, then restart with automatic collection held."""
    assert run.crowd is not None
    await run.crowd.collect()
    if run.releasing is not None:
        run.releasing.cancel()  # the last restart's clients are not all back: stay held
    run.collection.hold()
    run.restart_times.append(trio.current_time())
    run.releasing = trio.CancelScope()
    nursery.start_soon(_release_when_back, server, run, run.releasing)


async def _release_when_back(server: ReconnectServer, run: _Run, scope: trio.CancelScope) -> None:
    """Restart the server; once every client is back, collect automatically again."""
    await server.restart()  # returns when every dropped connection is gone
    with scope:
        # The server has no event for "all ready"; its count is the truth (a
        # client dropped while resuming comes back once for two drops).
        while server.statistics().ready_clients < run.clients:  # noqa: ASYNC110
            await trio.sleep(_BACK_POLL)
    if not scope.cancel_called:
        run.collection.release()


def _summary(
    run: _Run,
    server: ReconnectServer,
    spread: SpreadPolicy,
    accepted: list[float],
    *,
    duration: float,
    started: float,
) -> DemoSummary:
    """Count what every client got against what was published."""
    records = run.records
    clients = run.clients
    published = len(run.published_ids)
    expected = run.published_ids
    duplicated = sum(len(r.ids) - len(set(r.ids)) for r in records)
    lost = sum(len(set(expected) - set(r.ids)) for r in records)
    durations = [d for r in records for d in r.durations]
    median = percentile(durations, 50)
    beyond = percentile([b for r in records for b in r.beyond], 50)
    peak = 0
    for n, t in enumerate(run.restart_times):  # each restart's returns, until the next restart
        until = run.restart_times[n + 1] if n + 1 < len(run.restart_times) else math.inf
        peak = max(peak, peak_per_bin([a for a in accepted if a < until], t))
    return DemoSummary(
        clients=clients,
        duration_s=trio.current_time() - started,
        restarts=len(run.restart_times),
        events_published=published,
        delivered_min=min(len(set(r.ids)) for r in records),
        delivered_max=max(len(set(r.ids)) for r in records),
        duplicated=duplicated,
        lost=lost,
        reconnects=len(durations),
        median_reconnect_s=median,
        p95_reconnect_s=percentile(durations, 95),
        health=health_level(beyond).value,
        peak_arrivals_per_100ms=peak,
        planned_per_100ms=clients / spread.window(clients) * ARRIVAL_BIN,
        refused_handshakes=server.statistics().refused,
        publishing_s=duration,
        spread_base_s=spread.base,
        spread_window_s=spread.window(clients),
        median_beyond_server_wait_s=beyond,
        cpus=os.cpu_count(),
        load_average=_load_average(),
    )


def _load_average() -> float | None:
    """The last minute's load average, if the system tells."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Windows
        return None


def _opening(clients: int, url: str, restarts: int, duration: float, rate: float) -> str:
    """The line saying what the demo runs."""
    plural = "" if restarts == 1 else "s"
    return (
        f"demo: {clients} clients on the embedded server at {url}; {restarts} restart{plural}"
        f" (each drops every client with close code 1012 and a time to come back) during"
        f" {duration:g} s of events at {rate:g}/s"
    )


def summary_json(summary: DemoSummary) -> str:
    """The summary as one JSON object (with ``peak_ratio``: the peak over the plan)."""
    return json.dumps({**attrs.asdict(summary), "peak_ratio": summary.peak_ratio, "ok": summary.ok})
