"""A handshake whose log read is slow is "busy", not "log unavailable" (virtual time).

In a reconnect storm the handshake reads queue up behind each other (the
Redis log runs ``max_in_flight`` commands at once, the others wait their
turn). A read that has not ended within the handshake timeout closes its
client with 1013 and a retry hint, counted in ``statistics().busy``; the
node's log health is untouched, so it goes on admitting handshakes, and the
client resumes later with nothing lost. The same storm against a real
redis-server is in tests/redis/test_redis_storm.py.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest
import trio
from trio.testing import MockClock

from tests.support.faulty_log import FaultyLog
from tests.support.server_clients import closed_with, connect, ids, resumed
from trio_reconnect._hints import parse_retry_after_reason
from trio_reconnect._protocol import encode_resume
from trio_reconnect.server import (
    DEFAULT_BASE,
    DEFAULT_MIN_WINDOW,
    LogRead,
    ReconnectServer,
    ReplayLog,
)

HANDSHAKE_TIMEOUT = 4.0


@attrs.define(eq=False)
class SlowLog(FaultyLog):
    """A log whose ``read_after`` (``newest`` too with ``slow_newest``) takes ``delay`` seconds.

    ``newest`` is what the fan-out takes its first position with, so it is
    slowed only once the fan-out has one.
    """

    delay: float = 0.0
    slow: bool = False
    slow_newest: bool = False

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        if self.slow:
            await trio.sleep(self.delay)
        return await super().read_after(event_id, limit=limit)

    async def newest(self) -> str | None:
        if self.slow_newest:
            await trio.sleep(self.delay)
        return await super().newest()


def make_server(log: SlowLog, **kwargs: Any) -> ReconnectServer:
    options: dict[str, Any] = {
        "rng": random.Random(0),
        "ping_interval": None,
        "handshake_timeout": HANDSHAKE_TIMEOUT,
        **kwargs,
    }
    return ReconnectServer(log, **options)


async def test_a_read_slower_than_the_handshake_timeout_is_busy_not_the_log_down(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = SlowLog(ReplayLog(start=1), delay=HANDSHAKE_TIMEOUT + 1.0)
    server = make_server(log)
    with trio.fail_after(60):
        assert await server.publish("one") == "1"
        log.slow = True
        ws = await connect(nursery, server)
        start = trio.current_time()
        await ws.send_message(encode_resume(None))
        close = await closed_with(ws)
        assert trio.current_time() - start == HANDSHAKE_TIMEOUT
        assert close.code == 1013
        assert '"reason":"busy"' in (close.reason or "")
        hint = parse_retry_after_reason(close.reason)
        assert hint is not None
        assert DEFAULT_BASE <= hint <= DEFAULT_BASE + DEFAULT_MIN_WINDOW  # one client's spread
        stats = server.statistics()
        assert (stats.busy, stats.log_errors, stats.replayed) == (1, 0, 0)
        # The log was never reported down: the next handshake is admitted
        # (not refused with 503) and, with the log quick again, the client
        # resumes from the same place and misses nothing.
        log.slow = False
        assert await server.publish("two") == "2"
        _, frames = await resumed(nursery, server, None)
        assert ids(frames) == ["1", "2"]
        stats = server.statistics()
        assert (stats.busy, stats.log_errors, stats.refused, stats.replayed) == (1, 0, 0, 1)


async def test_a_read_within_the_handshake_timeout_is_served(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = SlowLog(ReplayLog(start=1), delay=HANDSHAKE_TIMEOUT - 0.5)
    server = make_server(log)
    with trio.fail_after(60):
        await server.publish("one")
        log.slow = True
        start = trio.current_time()
        _, frames = await resumed(nursery, server, None)
        assert trio.current_time() - start == HANDSHAKE_TIMEOUT - 0.5
        assert ids(frames) == ["1"]
        assert frames[-1] == {"type": "ready", "id": "1", "lost": False}
        assert (server.statistics().busy, server.statistics().log_errors) == (0, 0)


@pytest.mark.parametrize(
    ("snapshot_id", "what"),
    [("5", "newest (a snapshot ahead of the read)"), ("1", "the fill (a snapshot behind)")],
)
async def test_a_slow_read_placing_the_snapshot_is_busy_too(
    autojump_clock: MockClock, nursery: trio.Nursery, snapshot_id: str, what: str
) -> None:
    log = SlowLog(ReplayLog(start=1), delay=HANDSHAKE_TIMEOUT + 1.0)

    async def snapshot() -> tuple[str | None, Any]:
        # The handshake's first read was quick; the one placing the snapshot is not.
        log.slow = log.slow_newest = True
        return snapshot_id, {"state": snapshot_id}

    server = make_server(log, snapshot=snapshot)
    with trio.fail_after(60):
        for n in range(3):
            await server.publish(n)
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume(None))
        close = await closed_with(ws)
        assert close.code == 1013, what
        assert '"reason":"busy"' in (close.reason or ""), what
        stats = server.statistics()
        assert (stats.busy, stats.log_errors, stats.snapshots, stats.lost) == (1, 0, 0, 0), what
