"""The FIFO turn (trio_reconnect/_turn.py): one holder, call order, cancellation.

Driven by pytest-trio's ``autojump_clock`` where anything waits; every test
that waits has a ``fail_after``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from trio_reconnect._turn import Turn


class StepCounter(trio.abc.Instrument):
    """Counts the steps of one task: a schedule point of it starts a new one."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


@contextlib.contextmanager
def counting_steps() -> Iterator[StepCounter]:
    """Count the steps of the calling task while the block runs."""
    counter = StepCounter(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(counter)
    try:
        yield counter
    finally:
        trio.lowlevel.remove_instrument(counter)


async def test_a_free_turn_is_taken_without_a_schedule_point() -> None:
    turn = Turn()
    with counting_steps() as steps:
        async with turn:
            assert turn.locked()
        assert not turn.locked()
        assert steps.steps == 0
        await trio.lowlevel.checkpoint()  # the counter does count a schedule point
        assert steps.steps == 1


async def test_take_is_a_schedule_point_even_when_free() -> None:
    turn = Turn()
    with counting_steps() as steps:
        await turn.take()
        assert steps.steps == 1
    assert turn.locked()
    turn.give_back()
    assert not turn.locked()


@pytest.mark.parametrize("how", ["async with", "take"])
async def test_a_cancelled_task_does_not_take_a_free_turn(how: str) -> None:
    turn = Turn()
    with trio.CancelScope() as scope:
        scope.cancel()
        if how == "take":
            await turn.take()
        else:
            async with turn:
                pytest.fail("took the turn while cancelled")
        pytest.fail("not cancelled")
    assert scope.cancelled_caught
    assert not turn.locked()
    assert turn.take_nowait()


@pytest.mark.parametrize("how", ["async with", "take"])
async def test_waiters_get_the_turn_in_call_order_and_a_cancelled_one_is_skipped(
    how: str, autojump_clock: trio.testing.MockClock
) -> None:
    turn = Turn()
    order: list[tuple[str, float]] = []
    scopes = {name: trio.CancelScope() for name in "abcd"}

    async def wait_for_turn(name: str) -> None:
        with scopes[name]:
            if how == "take":
                await turn.take()
                try:
                    order.append((name, trio.current_time()))
                    await trio.sleep(1)
                finally:
                    turn.give_back()
            else:
                async with turn:
                    order.append((name, trio.current_time()))
                    await trio.sleep(1)

    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            async with turn:
                for name in "abcd":
                    nursery.start_soon(wait_for_turn, name)
                    await trio.sleep(0.1)
                assert not turn.take_nowait()  # held, and others wait
                scopes["b"].cancel()  # waiting: it leaves the queue
                await trio.sleep(1)
            # Handed over: busy for the woken waiter, so nobody can cut in.
            assert turn.locked()
            assert not turn.take_nowait()
    assert order == [("a", 1.4), ("c", 2.4), ("d", 3.4)]
    assert not turn.locked()


async def test_an_error_inside_gives_the_turn_back() -> None:
    turn = Turn()
    with pytest.raises(KeyError):
        async with turn:
            raise KeyError("inside")
    assert not turn.locked()
    assert turn.take_nowait()


async def test_a_waiter_cancelled_as_the_turn_is_handed_to_it_still_gets_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The hand-over is final (as with a trio lock): the waiter holds the turn
    and must give it back, even though its scope was cancelled meanwhile."""
    turn = Turn()
    held: list[bool] = []
    scope = trio.CancelScope()

    async def waiter() -> None:
        with scope:
            async with turn:
                held.append(turn.locked())
                await trio.sleep(1)  # the cancellation lands here
            pytest.fail("not cancelled")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await turn.take()
            nursery.start_soon(waiter)
            await trio.sleep(1)
            turn.give_back()  # handed over: rescheduled with the turn
            scope.cancel()
    assert held == [True]
    assert scope.cancelled_caught
    assert not turn.locked()
