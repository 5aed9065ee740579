"""Custom retry policies, ignoring server hints, and the bounded attempt history.

These tests use the pytest plugin's fixtures (memory_network, reconnect_server,
connect_client), as a user of the library would.
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import pytest
import trio

from trio_reconnect import (
    Backoff,
    ConnectionState,
    DelaySource,
    Jitter,
    ReconnectFailed,
    Transition,
)
from trio_reconnect.server import ReconnectServer
from trio_reconnect.testing import MemoryNetwork


@attrs.frozen
class Fixed:
    """A RetryPolicy that waits ``value`` every time."""

    value: float

    @property
    def initial(self) -> float:
        return 1.0

    def delay(self, retry: int, rng: random.Random, previous: float | None = None) -> float:
        return self.value


async def _drop_times(
    connect_client: Any, server: ReconnectServer, drops: int, **options: Any
) -> list[Transition]:
    transitions: list[Transition] = []
    async with connect_client(on_transition=transitions.append, **options) as ws:
        with trio.fail_after(600):
            await ws.wait_ready()
            for drop in range(1, drops + 1):
                await server.restart()
                while len(_waits(transitions)) < drop:  # the client has seen the close
                    await trio.sleep(0.001)
                await ws.wait_ready()
    return _waits(transitions)


def _waits(transitions: list[Transition]) -> list[Transition]:
    return [t for t in transitions if t.state is ConnectionState.BACKING_OFF]


async def test_server_hints_are_followed_by_default(
    autojump_clock: trio.abc.Clock, reconnect_server: ReconnectServer, connect_client: Any
) -> None:
    waits = await _drop_times(connect_client, reconnect_server, 1)
    assert [w.delay_source for w in waits] == [DelaySource.SERVER]


async def test_server_hints_can_be_ignored(
    autojump_clock: trio.abc.Clock, reconnect_server: ReconnectServer, connect_client: Any
) -> None:
    backoff = Backoff(initial=2.0, factor=3.0, max_delay=100.0, jitter=Jitter.NONE)
    waits = await _drop_times(
        connect_client, reconnect_server, 3, backoff=backoff, server_hints=False
    )
    # Each drop is of a fresh (unstable) connection, so the streak grows: 2, 6, 18.
    assert [(w.delay, w.delay_source) for w in waits] == [
        (2.0, DelaySource.BACKOFF),
        (6.0, DelaySource.BACKOFF),
        (18.0, DelaySource.BACKOFF),
    ]


async def test_a_custom_retry_policy_times_the_retries(
    autojump_clock: trio.abc.Clock, reconnect_server: ReconnectServer, connect_client: Any
) -> None:
    waits = await _drop_times(
        connect_client, reconnect_server, 2, backoff=Fixed(7.5), server_hints=False
    )
    assert [w.delay for w in waits] == [7.5, 7.5]


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
async def test_a_policy_returning_a_bad_delay_fails_the_client_clearly(
    autojump_clock: trio.abc.Clock,
    memory_network: MemoryNetwork,
    connect_client: Any,
    bad: float,
) -> None:
    # Nothing listens: the first attempt is refused and the policy is asked.
    with trio.fail_after(60), pytest.raises(ReconnectFailed) as failure:
        async with connect_client(backoff=Fixed(bad)) as ws:
            await ws.wait_ready()
    assert isinstance(failure.value.__cause__, ValueError)
    assert "invalid delay" in str(failure.value.__cause__)


# The attempt history's bound (MAX_HISTORY): tests/client/test_bounds.py.
