"""Chaos: a crowd of clients, a server and a generated schedule of faults.

A hypothesis property test over the in-memory network on a ``MockClock``
(``autojump_threshold=0``): each example is one ``trio.run`` in which at least
50 clients follow a server that publishes a steady stream of events, for at
least 10 minutes of virtual time, while hypothesis-generated faults happen at
generated times: drops with a close frame (and a hint, sometimes) and without,
resets, half-open links, refused connections, 503 storms (a low admission
rate for a while, ``restart(refuse_for=...)``), server restarts with spread,
per-client closes by the server, latency spikes, partitions with heal, and
snapshot outages. The replay log is small, so clients that were away fall
out of it and get a ``Snapshot``, or a ``Gap`` when the snapshot provider is
down (or answers with a snapshot the log cannot place).

Afterwards, for every client (tests/support/chaos.py has the details):

* its items are the server's log order with no duplicate and no gap, except
  where a ``Snapshot`` (the next event is the one right after its id) or a
  ``Gap`` (its ``last_id`` is exactly where the client stood, and the next
  event is the one right after that handshake's ``ready`` id) accounts for
  the difference exactly; the last item is the final event published;
* it was ready again within a bound derived from its options after the last
  fault ended (:func:`tests.support.chaos.ready_bound`), and stayed ready;
* its block exited cleanly (no exception, no ExceptionGroup), no client task
  outlived it, the server closed every connection, no task outlived the run,
  nothing unexpected was logged.

Profiles (the module-level ``PROFILE``), chosen by the environment variable
``TRIO_RECONNECT_CHAOS``:

* unset (CI): 50 clients, 600 virtual seconds, 8 generated examples with
  10 to 40 faults each, plus the explicit ``COVERAGE`` example: about 55 s of
  wall time on an idle two-core machine (one core is used);
* ``long``: 100 clients, 1800 virtual seconds, 20 generated examples with 20
  to 100 faults each (about 15 minutes of CPU)::

      TRIO_RECONNECT_CHAOS=long python -m pytest tests/client/test_chaos.py -p no:cacheprovider

Examples are derandomized and no example database is used, so every run
generates the same schedules, and hypothesis seeds trio's scheduler for each
example. (A run is bit-for-bit the same in a fresh process; after other
tests, trio's deadline heap can break ties between equal deadlines in
another order, so the same schedule may play out slightly differently.)
The summary (cases run, faults injected per kind, what they hit, outcomes)
is printed at the end of the module, and each fault kind is also a
hypothesis ``event`` (``--hypothesis-show-statistics``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Final

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.support.chaos import Fault, FaultKind, Profile, RunReport, Schedule, run_chaos, schedules

DEFAULT_PROFILE: Final = Profile(
    "default", clients=50, duration=600.0, examples=8, min_faults=10, max_faults=40
)
LONG_PROFILE: Final = Profile(
    "long", clients=100, duration=1_800.0, examples=20, min_faults=20, max_faults=100
)
PROFILE: Final = (
    LONG_PROFILE if os.environ.get("TRIO_RECONNECT_CHAOS", "") == "long" else DEFAULT_PROFILE
)

#: A schedule that makes every resume path happen: clients cut off long enough
#: to fall out of the log come back during a snapshot outage (Gap), during a
#: stale-snapshot outage (Gap, the server cannot place the snapshot) and with
#: the provider healthy (Snapshot); with latency, restarts and a 503 storm.
COVERAGE: Final = Schedule(
    seed=7,
    latency=0.02,
    jitter=0.005,
    snapshot_lag=1,
    snapshot_delay=0.05,
    snapshot_late=True,
    faults=(
        Fault(FaultKind.PARTITION, at=20.0, duration=80.0, share=0.5, pick=1),
        Fault(FaultKind.SNAPSHOT_OUTAGE, at=95.0, duration=60.0),
        Fault(FaultKind.PARTITION, at=160.0, duration=80.0, share=0.2, pick=2),
        Fault(FaultKind.SNAPSHOT_OUTAGE, at=235.0, duration=60.0, stale=True),
        Fault(FaultKind.BLACKHOLE, at=300.0, share=0.2, pick=3),
        Fault(FaultKind.REFUSE, at=300.0, duration=90.0, share=0.2, pick=3),
        Fault(FaultKind.LATENCY, at=320.0, duration=20.0, latency=3.0, jitter=1.0),
        Fault(FaultKind.RESTART_REFUSE, at=400.0, duration=10.0),
        Fault(FaultKind.ADMISSION, at=420.0, duration=30.0, rate=1.0),
        Fault(FaultKind.RESTART, at=425.0),
    ),
)


class Tally:
    """What every example of the module did, for the summary."""

    def __init__(self) -> None:
        self.cases = 0
        self.explicit = 0
        self.wall = 0.0
        self.cpu = 0.0
        self.faults: collections.Counter[str] = collections.Counter()
        self.hits: collections.Counter[str] = collections.Counter()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.logs: collections.Counter[str] = collections.Counter()
        self.events = 0
        self.items = 0
        self.ghosts = 0
        self.longest_recovery = 0.0
        self.ready_bound = 0.0

    def add(self, report: RunReport, wall: float, cpu: float, *, explicit: bool) -> None:
        self.cases += 1
        self.explicit += explicit
        self.wall += wall
        self.cpu += cpu
        self.faults.update(report.faults)
        self.hits.update(report.hits)
        self.outcomes.update(report.outcomes)
        self.logs.update(report.logs)
        self.events += report.events
        self.items += report.items
        self.ghosts += report.ghosts
        self.longest_recovery = max(self.longest_recovery, report.longest_recovery)
        self.ready_bound = max(self.ready_bound, report.ready_bound)

    def summary(self) -> str:
        def block(counter: collections.Counter[str]) -> str:
            return "\n".join(f"    {name:40} {n:8}" for name, n in sorted(counter.items()))

        return (
            f"chaos ({PROFILE.name} profile: {PROFILE.clients} clients, {PROFILE.duration:.0f} "
            f"virtual s per case): {self.cases} cases ({self.cases - self.explicit} generated, "
            f"{self.explicit} explicit), {self.wall:.1f} s wall, "
            f"{self.cpu:.1f} s CPU in runs\n"
            f"  faults injected ({sum(self.faults.values())}):\n{block(self.faults)}\n"
            f"  what they hit:\n{block(self.hits)}\n"
            f"  outcomes:\n{block(self.outcomes)}\n"
            f"  expected log records:\n{block(self.logs)}\n"
            f"  {self.events} events published, {self.items} items delivered, "
            f"{self.ghosts} server-side ghosts of black-holed links (closed by drain); "
            f"slowest recovery after the heal {self.longest_recovery:.1f} s "
            f"(bound {self.ready_bound:.1f} s)"
        )


TALLY: Final = Tally()


@pytest.fixture(scope="module")
def chaos_summary(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """Print the tally once the module's examples have run."""
    yield TALLY
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not TALLY.cases:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        for line in TALLY.summary().splitlines():
            reporter.write_line(line)


@settings(
    max_examples=PROFILE.examples,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(schedule=schedules(PROFILE))
@example(schedule=COVERAGE)
def test_chaos(chaos_summary: Tally, schedule: Schedule) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    report = run_chaos(PROFILE, schedule)
    chaos_summary.add(
        report,
        time.perf_counter() - start,
        time.process_time() - cpu,
        explicit=schedule == COVERAGE,
    )
    for kind in sorted(report.faults):
        event(f"fault: {kind}")
    for name in ("Snapshot items", "Gap items"):
        if report.outcomes[name]:
            event(f"delivered: {name}")
    assert not report.problems, "\n".join(report.problems[:40])
    if schedule == COVERAGE:  # it still takes every resume path
        assert report.outcomes["Snapshot items"] > 0
        assert report.outcomes["snapshot provider failed"] > 0
        assert report.outcomes["stale snapshot served"] > 0
        assert report.outcomes["Gap items"] > 0


# -- regressions: small, explicit schedules of bugs the chaos test found ------------

#: Two clients, a log of 10 events: small enough to run in a second.
SMALL: Final = Profile(
    "small",
    clients=2,
    duration=200.0,
    examples=1,
    min_faults=0,
    max_faults=0,
    log_size=10,
    max_replay=5,
)


#: Hypothesis seeds trio's scheduler (trio registers its random with it), so a
#: regression runs under ``@given`` to be the same run every time.
REGRESSION: Final = settings(max_examples=1, database=None, deadline=None)


STALE_SNAPSHOT: Final = Schedule(
    seed=1,
    latency=0.01,
    jitter=0.0,
    snapshot_lag=0,
    snapshot_delay=0.0,
    snapshot_late=False,
    faults=(
        Fault(FaultKind.PARTITION, at=5.0, duration=40.0, share=0.5, pick=0),
        Fault(FaultKind.SNAPSHOT_OUTAGE, at=40.0, duration=45.0, stale=True),
    ),
)


@REGRESSION
@given(schedule=st.just(STALE_SNAPSHOT))
def test_a_snapshot_the_log_cannot_place_is_not_sent(schedule: Schedule) -> None:
    """A client out of the log resumes while the snapshot is older than the log.

    The server cannot place the snapshot and reports lost events. It used to
    send the snapshot frame anyway, before ``ready`` with ``lost: true``: the
    client delivered ``Snapshot("x")`` and then ``Gap(last_id)`` with the id
    it had before the snapshot, two items that contradict each other.
    """
    report = run_chaos(SMALL, schedule)
    assert report.logs["stale snapshot"] >= 1  # the path was taken
    assert report.outcomes["Gap items"] >= 1
    assert not report.problems, "\n".join(report.problems)
