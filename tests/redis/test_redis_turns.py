"""The turns of RedisStreamLog's commands (``max_in_flight``), in virtual time.

Entering a log connects nothing (coredis connects on a client's first
command), and these commands never touch their client, so no redis-server
is needed and the autojump clock gives exact times. What they pin: the wait
for a turn is not on the ``timeout`` clock, is cancellable, and runs
nothing; a command that has its turn is still bounded by ``timeout``.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from trio_reconnect.server import LogUnavailableError
from trio_reconnect.server.redis import DEFAULT_MAX_IN_FLIGHT, RedisStreamLog

URL = "redis://127.0.0.1:1/0"  # never connected to
TIMEOUT = 1.0


def slow(seconds: float, ran: list[float] | None = None) -> Any:
    async def op(_client: Any) -> str:
        if ran is not None:
            ran.append(trio.current_time())
        await trio.sleep(seconds)
        return "done"

    return op


async def test_a_command_waits_its_turn_outside_the_timeout(autojump_clock: MockClock) -> None:
    with trio.fail_after(60):
        async with RedisStreamLog(URL, timeout=TIMEOUT, max_in_flight=2) as log:
            store, owner = log._store, log._main
            ended: dict[str, float] = {}
            started: list[float] = []

            async def command(name: str, seconds: float) -> None:
                assert await store.call(owner, slow(seconds, started), what=name) == "done"
                ended[name] = trio.current_time()

            async with trio.open_nursery() as nursery:
                for n in range(6):  # 3 turns of 2, 0.75 s each: the last waits 1.5 s > timeout
                    nursery.start_soon(command, f"c{n}", 0.75)
                    await trio.testing.wait_all_tasks_blocked()
    assert started == [0.0, 0.0, 0.75, 0.75, 1.5, 1.5]
    assert sorted(ended.values()) == [0.75, 0.75, 1.5, 1.5, 2.25, 2.25]
    assert log.client_generations == (1, 1)  # nothing was taken for a failure


async def test_a_command_past_its_timeout_from_its_turn_is_unavailable(
    autojump_clock: MockClock,
) -> None:
    with trio.fail_after(60):
        async with RedisStreamLog(URL, timeout=TIMEOUT, max_in_flight=1) as log:
            store, owner = log._store, log._main
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(store.call, owner, slow(0.5), what="first"))
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(LogUnavailableError, match="second: no answer within 1 s"):
                    await store.call(owner, slow(TIMEOUT + 1.0), what="second")
                # Its turn came at 0.5; its deadline, timeout later.
                assert trio.current_time() == 0.5 + TIMEOUT
            await trio.testing.wait_all_tasks_blocked()
            assert log.client_generations == (2, 1)  # the missed deadline replaced the client


async def test_a_wait_for_a_turn_is_cancellable_and_runs_nothing(
    autojump_clock: MockClock,
) -> None:
    ran: list[float] = []
    with trio.fail_after(60):
        async with RedisStreamLog(URL, timeout=TIMEOUT, max_in_flight=1) as log:
            store, owner = log._store, log._main
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(store.call, owner, slow(0.75), what="holder"))
                await trio.testing.wait_all_tasks_blocked()
                with trio.move_on_after(0.25) as waiting:
                    await store.call(owner, slow(0.0, ran), what="queued")
                assert waiting.cancelled_caught
                assert trio.current_time() == 0.25
            assert ran == []  # the cancelled command never ran
            # The turn it gave up is not lost: the next command has it once the holder is done.
            assert await store.call(owner, slow(0.0, ran), what="next") == "done"
            assert ran == [0.75]


def test_max_in_flight_default() -> None:
    assert RedisStreamLog(URL).max_in_flight == DEFAULT_MAX_IN_FLIGHT == 16


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True, None])
def test_max_in_flight_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="max_in_flight"):
        RedisStreamLog(URL, max_in_flight=bad)
