"""RedisStreamLog on a real redis-server: ids, data loss, trimming, outages, coredis's pool leak.

The contract every log backend meets is in tests/server/test_log_contract.py;
this file is what only Redis can get wrong. Real time, real processes:
every wait is under ``fail_after``.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import coredis
import pytest
import trio
from coredis.retry import NoRetryPolicy

from trio_reconnect.server._logbase import (
    EventLogError,
    LogDiscontinuityError,
    LogRead,
    LogUnavailableError,
    clock_start_id,
    parse_event_id,
)
from trio_reconnect.server.redis import MAX_REDIS_ID, RedisStreamLog
from trio_reconnect.testing._redis_server import RedisServer

GUARD = 20.0
STREAM = "events"


@asynccontextmanager
async def admin(server: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(server.url) as client:
        yield client


async def entries(server: RedisServer) -> list[tuple[int, bytes]]:
    async with admin(server) as client:
        raw = await client.xrange(STREAM, "-", "+")
    return [(int(_text(e.identifier).split("-")[0]), _bytes(e.field_values[b"d"])) for e in raw]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


async def connections(client: coredis.Redis[bytes], name: str, cmd: str | None = None) -> list[int]:
    found = await client.client_list()
    return [int(c["id"]) for c in found if c["name"] == name and (cmd is None or c["cmd"] == cmd)]


async def fill(log: RedisStreamLog, n: int) -> list[str]:
    return [await log.append(i) for i in range(n)]


async def test_first_id_is_the_clock_then_consecutive(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            before = clock_start_id()
            ids = await fill(log, 50)
            after = clock_start_id()
            first = int(ids[0])
            assert before <= first <= after
            assert ids == [str(first + i) for i in range(50)]
            # In Redis the entry ids are exactly these, each with sequence 0.
            assert [seq for seq, _ in await entries(redis_server)] == [int(i) for i in ids]


async def test_clock_ids_are_formatted_exactly(redis_server: RedisServer) -> None:
    # 16-digit ids: Lua's ``n .. '-0'`` would give "1.79...e+15-0".
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            event_id = await log.append("x")
            assert len(event_id) == 16
            assert parse_event_id(event_id) is not None
            async with admin(redis_server) as client:
                meta = await client.hgetall(STREAM + ":meta")
            assert meta == {b"seq": event_id.encode(), b"first": event_id.encode()}


async def test_redis_flushed_ids_restart_above_and_old_readers_are_told(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            old = await fill(log, 5)
            async with admin(redis_server) as client:
                await client.flushall()
            # Nothing appended yet: an idle tail already finds the loss.
            with pytest.raises(LogDiscontinuityError) as idle:
                await log.tail(old[-1], limit=10, block=0.05)
            assert (idle.value.after, idle.value.oldest, idle.value.newest) == (old[-1], None, None)
            assert await log.newest() is None
            await trio.sleep(0.002)  # the clock moves on
            new = await fill(log, 3)
            assert int(new[0]) > int(old[-1])
            assert new == [str(int(new[0]) + i) for i in range(3)]
            for stale in old:
                assert await log.read_after(stale, limit=100) == LogRead(new[-1], None)
            with pytest.raises(LogDiscontinuityError) as caught:
                await log.tail(old[-1], limit=10, block=0.05)
            assert (caught.value.oldest, caught.value.newest) == (new[0], new[-1])
            whole = await log.read_after(None, limit=100)
            assert whole.events is not None
            assert [e.id for e in whole.events] == new


async def test_counter_lost_but_stream_kept_continues_above_the_stream(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            old = await fill(log, 3)
            async with admin(redis_server) as client:
                await client.delete([STREAM + ":meta"])
                # Entries far above the clock (another writer, a clock that jumped back):
                await client.xadd(STREAM, {"d": "0"}, identifier=f"{MAX_REDIS_ID - 10}-0")
            new = await log.append("after")
            assert int(new) == MAX_REDIS_ID - 9
            assert int(new) > int(old[-1])


async def test_trimming_and_the_exact_held_gap(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM, max_len=10) as log:
            ids = await fill(log, 1_000)
            held = await entries(redis_server)
            oldest = held[0][0]
            # MAXLEN ~10 keeps at least 10 and about 100 more, never everything.
            assert 10 <= len(held) <= 1_000 - 1
            assert [seq for seq, _ in held] == list(range(oldest, int(ids[-1]) + 1))
            # The event just before the oldest held one still has a complete gap ...
            edge = await log.read_after(str(oldest - 1), limit=10_000)
            assert edge.events is not None
            assert [e.id for e in edge.events] == [str(s) for s, _ in held]
            # ... the one before it does not.
            assert await log.read_after(str(oldest - 2), limit=10_000) == LogRead(ids[-1], None)
            assert len(await log.tail(str(oldest - 1), limit=10_000, block=0)) == len(held)
            with pytest.raises(LogDiscontinuityError) as caught:
                await log.tail(str(oldest - 2), limit=10, block=0)
            assert caught.value.oldest == str(oldest)
            assert await log.read_after(None, limit=10_000) == LogRead(ids[-1], None)
            with pytest.raises(LogDiscontinuityError):
                await log.tail(None, limit=10, block=0)


async def test_a_hole_in_the_middle_is_not_held(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            ids = await fill(log, 6)
            async with admin(redis_server) as client:
                await client.xdel(STREAM, [ids[3] + "-0"])
            assert await log.read_after(ids[1], limit=100) == LogRead(ids[-1], None)
            assert [e.id for e in (await log.read_after(ids[3], limit=100)).events or []] == ids[4:]
            with pytest.raises(LogDiscontinuityError):
                await log.tail(ids[2], limit=10, block=0)
            with pytest.raises(LogDiscontinuityError):
                await log.tail(ids[1], limit=10, block=0)


@pytest.mark.parametrize("hostile", ["0005", "5-0", str(MAX_REDIS_ID + 1), "9" * 40])
async def test_hostile_ids_never_reach_redis_as_stream_ids(
    redis_server: RedisServer, hostile: str
) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            await fill(log, 3)
            newest = await log.newest()
            assert await log.read_after(hostile, limit=10) == LogRead(newest, None)
            with pytest.raises(LogDiscontinuityError):
                await log.tail(hostile, limit=10, block=0)


async def test_bad_arguments(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            with pytest.raises(TypeError):
                await log.append(object())
            with pytest.raises(ValueError, match="JSON"):
                await log.append({"x": float("nan")})
            assert await log.newest() is None  # nothing stored
            for bad_limit in (-1, 1.5, True, "3"):
                with pytest.raises(ValueError, match="limit"):
                    await log.read_after(None, limit=bad_limit)  # type: ignore[arg-type]
            for bad_limit in (0, -1):
                with pytest.raises(ValueError, match="limit"):
                    await log.tail(None, limit=bad_limit, block=0)
            for bad_block in (-1.0, float("inf"), float("nan"), None):
                with pytest.raises(ValueError, match="block"):
                    await log.tail(None, limit=1, block=bad_block)  # type: ignore[arg-type]
    for options in ({"max_len": 0}, {"timeout": 0}, {"read_block": -1}, {"max_connections": 0}):
        with pytest.raises(ValueError, match=next(iter(options))):
            RedisStreamLog(redis_server.url, **options)  # type: ignore[arg-type]


async def test_wrong_key_type_is_a_log_error(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with admin(redis_server) as client:
            await client.set(STREAM, "not a stream")
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            with pytest.raises(EventLogError) as caught:
                await log.append(1)
            assert not isinstance(caught.value, LogUnavailableError)
            assert await log.newest() is None  # the failed script wrote nothing


async def test_used_outside_its_context_manager(redis_server: RedisServer) -> None:
    log = RedisStreamLog(redis_server.url)
    with pytest.raises(RuntimeError, match="async with"):
        await log.append(1)


async def test_tail_survives_200_timeouts_and_20_killed_connections(
    redis_server: RedisServer,
) -> None:
    """The regression test of issue 10: coredis loses a pool slot per killed or cancelled XREAD.

    The pool here has 4 slots: without the workaround (shielded reads, a
    client replaced after each connection error) the fifth kill leaves a
    pool that answers nothing.
    """
    with trio.fail_after(60):
        async with (
            RedisStreamLog(
                redis_server.url, stream=STREAM, max_connections=4, read_block=0.02
            ) as log,
            admin(redis_server) as client,
        ):
            ids = await fill(log, 1)
            for _ in range(200):
                assert await log.tail(ids[-1], limit=10, block=0.002) == []
            for _ in range(50):
                with trio.move_on_after(0.003):
                    await log.tail(ids[-1], limit=10, block=1.0)
            for kill in range(20):
                failed: list[BaseException] = []

                async def blocked_tail(failed: list[BaseException] = failed) -> None:
                    try:
                        await log.tail(ids[-1], limit=10, block=10.0)
                    except LogUnavailableError as exc:
                        failed.append(exc)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(blocked_tail)
                    while not (
                        found := await connections(client, "trio_reconnect:log-tail", "xread")
                    ):
                        await trio.sleep(0.002)
                    await client.client_kill(identifier=found[0])
                assert len(failed) == 1, kill
            new = await log.append("still served")
            assert [e.id for e in await log.tail(ids[-1], limit=10, block=1.0)] == [new]
            assert log.client_generations == (1, 21)  # each kill replaced the tail's client
            assert (await log.read_after(ids[-1], limit=10)).events is not None
            assert await log.newest() == new


async def test_coredis_still_leaks_a_pool_slot_per_killed_xread(redis_server: RedisServer) -> None:
    """Canary: the upstream bug the workaround exists for (coredis 6.9).

    When this starts failing, coredis has fixed its pool: the shielding and
    client replacement in server/_redis/_store.py can then be revisited.
    """
    with trio.fail_after(GUARD):
        async with (
            coredis.Redis.from_url(
                redis_server.url, max_connections=2, pool_timeout=0.5, retry_policy=NoRetryPolicy()
            ) as bare,
            admin(redis_server) as client,
        ):
            for _ in range(2):
                async with trio.open_nursery() as nursery:

                    async def read() -> None:
                        with pytest.raises(coredis.exceptions.ConnectionError):
                            await bare.xread({"nothing": "$"}, block=10_000)

                    nursery.start_soon(read)
                    while not (found := await connections(client, "", "xread")):
                        await trio.sleep(0.002)
                    await client.client_kill(identifier=found[0])
            with pytest.raises(TimeoutError):
                await bare.ping()


Op = Callable[[RedisStreamLog], Awaitable[Any]]
OPS: dict[str, Op] = {
    "append": lambda log: log.append("x"),
    "read_after": lambda log: log.read_after(None, limit=10),
    "newest": lambda log: log.newest(),
    "tail": lambda log: log.tail(None, limit=10, block=1.0),
}


async def test_redis_stopped_then_started(redis_server: RedisServer) -> None:
    timeout = 0.5
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM, timeout=timeout) as log:
            old = await fill(log, 3)
            redis_server.stop()
            for name, op in OPS.items():
                start = trio.current_time()
                with pytest.raises(LogUnavailableError, match=str(redis_server.port)):
                    await op(log)
                assert trio.current_time() - start < timeout + 1.0, name
            redis_server.start()
            new = await log.append("back")
            assert int(new) > int(old[-1])
            assert await log.read_after(old[-1], limit=10) == LogRead(new, None)
            with pytest.raises(LogDiscontinuityError):
                await log.tail(old[-1], limit=10, block=0)
            assert [e.id for e in await log.tail(None, limit=10, block=0)] == [new]


async def test_a_blocked_tail_fails_when_redis_stops(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM, timeout=0.5) as log:
            ids = await fill(log, 1)
            failed: list[LogUnavailableError] = []

            async def tail() -> None:
                try:
                    while True:
                        await log.tail(ids[-1], limit=10, block=5.0)
                except LogUnavailableError as exc:
                    failed.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(tail)
                await trio.sleep(0.05)
                redis_server.stop()
            assert len(failed) == 1


@pytest.mark.parametrize("name", sorted(OPS))
async def test_redis_that_stops_answering_is_unavailable_within_the_timeout(
    redis_server: RedisServer, name: str
) -> None:
    # SIGSTOP: the socket stays open and nothing answers (a black hole).
    timeout = 0.3
    with trio.fail_after(GUARD):
        async with RedisStreamLog(
            redis_server.url, stream=STREAM, timeout=timeout, read_block=0.05
        ) as log:
            await fill(log, 1)
            pid = redis_server.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                start = trio.current_time()
                with pytest.raises(LogUnavailableError, match=str(redis_server.port)):
                    await OPS[name](log)
                assert trio.current_time() - start < timeout + 1.5
            finally:
                os.kill(pid, signal.SIGCONT)
            assert await log.newest() is not None


async def test_cancellation_waits_for_the_command_but_no_longer(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM, read_block=0.05) as log:
            ids = await fill(log, 1)
            with trio.move_on_after(0.01) as scope:
                await log.tail(ids[-1], limit=10, block=10.0)
            assert scope.cancelled_caught
            start = trio.current_time()
            with trio.move_on_after(0.001):
                await log.tail(ids[-1], limit=10, block=10.0)
            # The shielded XREAD runs out its short block, then the cancel lands.
            assert trio.current_time() - start < 0.05 + 0.5


async def test_append_never_duplicates_on_connection_errors(redis_server: RedisServer) -> None:
    attempts = 400
    with trio.fail_after(60):
        async with (
            RedisStreamLog(redis_server.url, stream=STREAM, timeout=1.0) as log,
            admin(redis_server) as client,
        ):
            stored: dict[str, int] = {}
            failures = 0

            async def appender() -> None:
                nonlocal failures
                for i in range(attempts):
                    try:
                        stored[await log.append(i)] = i
                    except LogUnavailableError:
                        failures += 1

            async def killer(done: trio.Event) -> None:
                while not done.is_set():
                    for conn in await connections(client, "trio_reconnect:log"):
                        await client.client_kill(identifier=conn)
                    await trio.sleep(0.003)

            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(killer, done)
                await appender()
                done.set()
            held = await entries(redis_server)
            values = [int(payload) for _, payload in held]
            assert failures > 0  # the kills did hit appends
            assert len(values) == len(set(values))  # no event stored twice
            assert len(stored) <= len(held) <= attempts
            assert {str(seq): int(v) for seq, v in held if str(seq) in stored} == stored
            seqs = [seq for seq, _ in held]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # still consecutive


async def test_errors_in_the_block_come_out_bare(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        with pytest.raises(KeyError):
            async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
                await log.append(1)
                raise KeyError("mine")
        with trio.move_on_after(0.05) as scope:
            async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
                await log.tail(await log.newest(), limit=1, block=10.0)
        assert scope.cancelled_caught
        # Redis down from the start: entering works, the first command says why.
        redis_server.stop()
        async with RedisStreamLog(redis_server.url, stream=STREAM, timeout=0.5) as log:
            with pytest.raises(LogUnavailableError):
                await log.append(2)


async def test_a_log_whose_stream_was_deleted_is_not_held(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            ids = await fill(log, 3)
            async with admin(redis_server) as client:
                await client.delete([STREAM])
            assert await log.read_after(None, limit=10) == LogRead(ids[-1], None)
            assert await log.read_after(ids[0], limit=10) == LogRead(ids[-1], None)
            assert await log.read_after(ids[-1], limit=10) == LogRead(ids[-1], [])
            for position in (None, ids[0]):
                with pytest.raises(LogDiscontinuityError):
                    await log.tail(position, limit=10, block=0)
            assert await log.tail(ids[-1], limit=10, block=0) == []
            new = await log.append("next")
            assert int(new) == int(ids[-1]) + 1


async def test_a_tail_that_resumes_after_errors_sees_every_event_once(
    redis_server: RedisServer,
) -> None:
    """Connections of both clients killed under a writer and a reader: nothing lost, nothing twice.

    The reader does what a fan-out does: on LogUnavailableError it reads on
    from the last id it got.
    """
    with trio.fail_after(60):
        async with (
            RedisStreamLog(redis_server.url, stream=STREAM, timeout=1.0, read_block=0.02) as log,
            admin(redis_server) as client,
        ):
            start = await log.append("start")
            seen: list[str] = []
            written: list[str] = []
            reader_errors = 0
            writer_done = trio.Event()

            async def writer() -> None:
                for i in range(300):
                    with contextlib.suppress(LogUnavailableError):
                        written.append(await log.append(i))
                    await trio.sleep(0.001)
                writer_done.set()

            async def reader() -> None:
                nonlocal reader_errors
                position = start
                while True:
                    try:
                        events = await log.tail(position, limit=50, block=0.05)
                    except LogUnavailableError:
                        reader_errors += 1
                        continue
                    seen.extend(e.id for e in events)
                    if events:
                        position = events[-1].id
                    elif writer_done.is_set():
                        return

            async def killer() -> None:
                while not writer_done.is_set():
                    for name in ("trio_reconnect:log", "trio_reconnect:log-tail"):
                        for conn in await connections(client, name):
                            await client.client_kill(identifier=conn)
                    await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                nursery.start_soon(reader)
                nursery.start_soon(killer)
            held = [str(seq) for seq, _ in await entries(redis_server)]
            assert seen == held[1:]  # every stored event once, in order
            assert set(written) <= set(seen)
            assert reader_errors > 0
            assert sum(log.client_generations) > 2


@pytest.mark.parametrize(
    "url",
    [
        "nonsense",
        "http://127.0.0.1:6379/0",
        "redis://",
        "redis://127.0.0.1:99999/0",
        "redis://127.0.0.1:0/0",
        "redis://127.0.0.1:6379/abc",
        "unix://",
        None,
    ],
)
def test_a_bad_url_is_refused_at_once(url: Any) -> None:
    from trio_reconnect.server.redis import RedisRegistry

    for backend in (RedisStreamLog, RedisRegistry):
        with pytest.raises(ValueError, match="URL"):
            backend(url)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379", "redis://:secret@h:1/2", "rediss://h/0", "unix:///tmp/r.sock"]
)
def test_good_urls_are_accepted(url: str) -> None:
    assert RedisStreamLog(url).url == url


async def test_errors_never_show_the_password(redis_server: RedisServer) -> None:
    redis_server.stop()
    url = f"redis://:hunter2@127.0.0.1:{redis_server.port}/0"
    with trio.fail_after(GUARD):
        async with RedisStreamLog(url, timeout=0.5) as log:
            with pytest.raises(LogUnavailableError) as caught:
                await log.append(1)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(log)
    assert str(redis_server.port) in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        anyio.ClosedResourceError(),
        anyio.BrokenResourceError(),
        anyio.EndOfStream(),
        ExceptionGroup("pool", [ValueError("other"), anyio.ClosedResourceError()]),
    ],
)
def test_a_stream_closed_under_a_command_is_the_store_unavailable(error: Exception) -> None:
    # A command still in flight on a client that was replaced meanwhile sees its
    # anyio stream closed: that is a lost connection (LogUnavailableError, the
    # node's outage handling), not a bug of the log (EventLogError, a traceback).
    from trio_reconnect.server._redis._store import unavailable as _unavailable

    assert _unavailable(error)
    assert not _unavailable(ValueError("a reply this log did not expect"))
