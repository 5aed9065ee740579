"""The fan-out feeds a large batch in steps, and keeps register-first exact meanwhile.

Each test drives a :class:`FanOut` over a :class:`ReplayLog` directly: ten
events appended at once come back from one tail read, and ``step=4`` makes
the fan-out feed them in slices of four events (a task step per subscriber),
then two (two subscribers a step). A subscriber's ``feed`` can start another
task; that task runs at the fan-out's next checkpoint, in the middle of the
feed, which is where these tests register, unregister and cancel. (Trio
may run it just before or just after the fan-out's next step, so the tests
act a few subscribers ahead of the one they watch.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from trio_reconnect.server import LogDiscontinuityError, LogUnavailableError, ReplayLog
from trio_reconnect.server._fanout import DEFAULT_FEED_STEP, FanOut, Subscriber

EVENTS = list(range(1, 11))


class StepCounter(trio.abc.Instrument):
    """Counts task steps: two feeds with the same count ran in the same step."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


@attrs.define(eq=False)
class Recorder:
    """A subscriber: what it was fed, and in which task step."""

    name: str
    steps: StepCounter
    journal: list[str]
    ids: list[int] = attrs.field(factory=list)
    feeds: list[tuple[int, list[int]]] = attrs.field(factory=list)
    #: Called on the n-th feed (from 1), in it.
    on_feed: dict[int, Callable[[], None]] = attrs.field(factory=dict)

    def feed(self, frames: Sequence[tuple[int, str]]) -> None:
        ids = [seq for seq, _ in frames]
        self.ids += ids
        self.feeds.append((self.steps.count, ids))
        self.journal.append(f"{self.name} fed {ids[0]}-{ids[-1]}")
        call = self.on_feed.get(len(self.feeds))
        if call is not None:
            call()


class Hooks:
    def log_unavailable(self, error: LogUnavailableError) -> None:
        raise AssertionError(error)

    def log_available(self) -> None:
        pass

    def discontinuity(self, clients: Sequence[Subscriber], error: LogDiscontinuityError) -> None:
        raise AssertionError(error)


@attrs.define(eq=False)
class Setup:
    log: ReplayLog
    fanout: FanOut
    steps: StepCounter
    journal: list[str] = attrs.field(factory=list)

    def recorder(self, name: str) -> Recorder:
        return Recorder(name, self.steps, self.journal)

    async def register(self, recorder: Recorder) -> int:
        position = await self.fanout.register(recorder)
        self.journal.append(f"{recorder.name} registered at {position}")
        return 0 if position is None else int(position)


@pytest.fixture
async def setup() -> Setup:
    steps = StepCounter()
    trio.lowlevel.add_instrument(steps)
    log = ReplayLog(start=1)
    return Setup(log, FanOut(log, Hooks(), step=4), steps)


async def feed_ten(setup: Setup, nursery: trio.Nursery, recorders: list[Recorder]) -> None:
    """Start the fan-out, register ``recorders``, append ten events at once, wait until fed."""
    nursery.start_soon(setup.fanout.run)
    for recorder in recorders:
        assert await setup.register(recorder) == 0
    for n in EVENTS:
        setup.log.append_nowait(n)
    await wait_all_tasks_blocked()


async def test_a_large_batch_is_fed_in_steps(
    autojump_clock: MockClock, nursery: trio.Nursery, setup: Setup
) -> None:
    recorders = [setup.recorder(f"r{n}") for n in range(6)]
    with trio.fail_after(5):
        await feed_ten(setup, nursery, recorders)
    for recorder in recorders:
        assert recorder.ids == EVENTS
        assert [ids for _, ids in recorder.feeds] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    per_step: dict[int, int] = {}
    for recorder in recorders:
        for step, ids in recorder.feeds:
            per_step[step] = per_step.get(step, 0) + len(ids)
    # Slices of 4 events: one subscriber a step (6 steps each); of 2: two a step (3 steps).
    assert len(per_step) == 6 + 6 + 3
    assert max(per_step.values()) == 4
    assert setup.fanout.position == "10"
    assert setup.fanout.delivered == 10
    assert trio.current_time() == 0  # no time passes: the steps are checkpoints, not sleeps


async def test_a_client_registered_between_steps_gets_exactly_the_events_after_its_position(
    autojump_clock: MockClock, nursery: trio.Nursery, setup: Setup
) -> None:
    early = [setup.recorder(f"early{n}") for n in range(5)]
    late = [setup.recorder("late0"), setup.recorder("late1")]
    positions: list[int] = []

    def register_soon(recorder: Recorder) -> Callable[[], None]:
        async def register() -> None:
            positions.append(await setup.register(recorder))

        return lambda: nursery.start_soon(register)

    early[0].on_feed = {1: register_soon(late[0]), 2: register_soon(late[1])}
    with trio.fail_after(5):
        await feed_ten(setup, nursery, early)
    assert positions == [4, 8]
    journal = setup.journal.index
    # Registered while the first slice was being fed, and while the second was.
    assert journal("early0 fed 1-4") < journal("late0 registered at 4") < journal("early4 fed 1-4")
    assert journal("early0 fed 5-8") < journal("late1 registered at 8") < journal("early4 fed 5-8")
    for recorder in early:
        assert recorder.ids == EVENTS
    # Exactly the events after the position each was registered at: no gap, nothing twice.
    assert late[0].ids == [5, 6, 7, 8, 9, 10]
    assert late[1].ids == [9, 10]


async def test_a_client_unregistered_or_registered_again_between_steps(
    autojump_clock: MockClock, nursery: trio.Nursery, setup: Setup
) -> None:
    first, second, third, gone, again = map(
        setup.recorder, ("first", "second", "third", "gone", "again")
    )

    async def leave_and_come_back() -> None:
        setup.fanout.unregister(gone)
        setup.fanout.unregister(again)
        assert await setup.register(again) == 4

    first.on_feed = {1: lambda: nursery.start_soon(leave_and_come_back)}
    with trio.fail_after(5):
        await feed_ten(setup, nursery, [first, second, third, gone, again])
    assert first.ids == second.ids == third.ids == EVENTS
    assert gone.ids == []  # listed for the first slice, but gone before its turn
    # Listed for the first slice under its old registration: fed from its new one only.
    assert again.ids == [5, 6, 7, 8, 9, 10]
    assert len(setup.fanout) == 4


async def test_a_fanout_cancelled_mid_feed_finishes_the_slice_and_the_next_goes_on(
    autojump_clock: MockClock, nursery: trio.Nursery, setup: Setup
) -> None:
    # The position moved when the slice's feed began: the slice goes to every
    # listed subscriber whatever happens; the cancellation lands between slices.
    recorders = [setup.recorder(f"r{n}") for n in range(3)]
    scope = trio.CancelScope()
    recorders[0].on_feed = {1: scope.cancel}
    ended = trio.Event()

    async def run_once() -> None:
        with scope:
            await setup.fanout.run()
        ended.set()

    with trio.fail_after(5):
        nursery.start_soon(run_once)
        for recorder in recorders:
            await setup.register(recorder)
        for n in EVENTS:
            setup.log.append_nowait(n)
        await ended.wait()
        assert [r.ids for r in recorders] == [[1, 2, 3, 4]] * 3
        assert setup.fanout.position == "4"
        nursery.start_soon(setup.fanout.run)  # another volunteer takes over (SoleTask)
        await wait_all_tasks_blocked()
    assert [r.ids for r in recorders] == [EVENTS] * 3


async def test_a_small_feed_is_one_step(autojump_clock: MockClock, nursery: trio.Nursery) -> None:
    # The usual case (one event, fewer clients than the step): no checkpoint at all.
    steps = StepCounter()
    trio.lowlevel.add_instrument(steps)
    log = ReplayLog(start=1)
    setup = Setup(log, FanOut(log, Hooks()), steps)
    recorders = [setup.recorder(f"r{n}") for n in range(DEFAULT_FEED_STEP)]
    with trio.fail_after(5):
        nursery.start_soon(setup.fanout.run)
        for recorder in recorders:
            await setup.register(recorder)
        log.append_nowait("one")
        await wait_all_tasks_blocked()
    assert {r.feeds[0][0] for r in recorders} == {recorders[0].feeds[0][0]}
    assert all(r.ids == [1] for r in recorders)


def test_the_step_is_checked() -> None:
    with pytest.raises(ValueError, match="step"):
        FanOut(ReplayLog(), Hooks(), step=0)
