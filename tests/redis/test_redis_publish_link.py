"""RedisChannelStore.publish on links of our own (:class:`LinkPool`), not through coredis.

On a real redis-server: one EVALSHA per batch on a connection named
``trio_reconnect:publishes``, a flushed script sent again, a script refused
as a whole, Redis frozen or gone mid-call (unavailable, then the re-send is
applied once). On a fake Redis: a connection closed under the call, and the
pool (a link per concurrent call, at most ``size``, a waiting call cancellable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import pytest
import trio

from tests.redis.test_redis_channels import GUARD, command, commandstats
from trio_reconnect.server import EventLogError, LogUnavailableError, PublishRequest
from trio_reconnect.server._redis._channel_plan import channel_keys
from trio_reconnect.server._redis._link import LinkPool
from trio_reconnect.server._redis._resp import RespParser, RespValue, encode_command
from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._redis_server import RedisServer


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisChannelStore]:
    async with RedisChannelStore(redis_server.url) as opened:
        yield opened


def entries(server: RedisServer, channel: str) -> list[RespValue]:
    found = command(server.port, "XRANGE", channel_keys("trio_reconnect", channel)[1], "-", "+")
    assert isinstance(found, list)
    return found


async def test_a_batch_is_one_evalsha_on_a_publish_link(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        await store.publish([PublishRequest("warm", "w", 0)], dedupe_ttl=60)
        command(redis_server.port, "CONFIG", "RESETSTAT")
        items = [PublishRequest("room", f"k{n}", n) for n in range(3)]
        results = await store.publish(items, dedupe_ttl=60)
    assert [r.duplicate for r in results] == [False] * 3
    calls = commandstats(redis_server.port)
    assert calls["evalsha"] == 1
    assert calls["xadd"] == calls["publish"] == calls["set"] == 3
    clients = command(redis_server.port, "CLIENT", "LIST")
    assert isinstance(clients, bytes)
    assert b"name=trio_reconnect:publishes" in clients


async def test_a_flushed_script_is_sent_again_and_applied_once(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        await store.publish([PublishRequest("f", "a", 1)], dedupe_ttl=60)
        command(redis_server.port, "SCRIPT", "FLUSH")
        command(redis_server.port, "CONFIG", "RESETSTAT")
        [result] = await store.publish([PublishRequest("f", "b", 2)], dedupe_ttl=60)
    assert not result.duplicate
    calls = commandstats(redis_server.port)
    assert (calls["evalsha"], calls["eval"], calls["xadd"]) == (1, 1, 1)
    assert len(entries(redis_server, "f")) == 2


async def test_a_script_refused_as_a_whole_is_an_error_and_applies_nothing(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    command(redis_server.port, "ACL", "SETUSER", "default", "-evalsha", "-eval")
    with trio.fail_after(GUARD), pytest.raises(EventLogError, match="NOPERM") as caught:
        await store.publish([PublishRequest("n", "a", 1)], dedupe_ttl=60)
    assert not isinstance(caught.value, LogUnavailableError)
    assert entries(redis_server, "n") == []


async def test_the_first_item_refused_is_unavailable(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    meta = channel_keys("trio_reconnect", "broken")[0]
    assert command(redis_server.port, "SET", meta, "not a hash") == b"OK"
    items = [PublishRequest("broken", "a", 1), PublishRequest("fine", "b", 2)]
    with trio.fail_after(GUARD), pytest.raises(LogUnavailableError, match="refused"):
        await store.publish(items, dedupe_ttl=60)
    assert entries(redis_server, "fine") == []  # nothing after the first failure ran


async def test_redis_frozen_mid_call_is_unavailable_and_the_re_send_is_applied_once(
    redis_server: RedisServer,
) -> None:
    items = [PublishRequest("z", f"k{n}", n) for n in range(5)]
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, timeout=0.2) as store:
            await store.publish([PublishRequest("z", "before", 0)], dedupe_ttl=60)
            command(redis_server.port, "CLIENT", "PAUSE", 600)
            with pytest.raises(LogUnavailableError, match=r"no answer within 0\.2 s"):
                await store.publish(items, dedupe_ttl=60)
            await trio.sleep(0.6)  # the pause ends; the script sent may have run (unknown)
            results = await store.publish(items, dedupe_ttl=60)  # the client's re-send
    assert len({r.id for r in results}) == 5
    stored = entries(redis_server, "z")
    assert len(stored) == 6  # each once, whether the first call ran or not
    assert [e[0] for e in stored[1:]] == [f"{r.id}-0".encode() for r in results]  # type: ignore[index]


async def test_redis_stopped_mid_publishing_is_unavailable_and_the_store_comes_back(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, timeout=0.5) as store:
            await store.publish([PublishRequest("s", "a", 1)], dedupe_ttl=60)
            redis_server.stop()
            with pytest.raises(LogUnavailableError):
                await store.publish([PublishRequest("s", "b", 2)], dedupe_ttl=60)
            redis_server.start()  # back empty (no persistence here)
            [again] = await store.publish([PublishRequest("s", "b", 2)], dedupe_ttl=60)
            [dup] = await store.publish([PublishRequest("s", "b", 2)], dedupe_ttl=60)
    assert not again.duplicate
    assert (dup.id, dup.duplicate) == (again.id, True)
    assert entries(redis_server, "s") != []


async def test_publish_before_the_store_is_open_is_a_runtime_error(
    redis_server: RedisServer,
) -> None:
    store = RedisChannelStore(redis_server.url)
    assert await store.publish([], dedupe_ttl=60) == []
    with pytest.raises(RuntimeError, match="async with"):
        await store.publish([PublishRequest("r", "a", 1)], dedupe_ttl=60)


# -- the pool, on a fake Redis ------------------------------------------------------

Reply = Callable[[list[RespValue]], Awaitable[bytes | None]]


def fake(reply: Reply, seen: list[list[RespValue]]) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    """A server: ``+OK`` to ``CLIENT SETNAME``, ``reply`` to the rest (``None``: it closes)."""

    async def handle(stream: trio.abc.Stream) -> None:
        parser = RespParser()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for value in parser.feed(data):
                assert isinstance(value, list)
                if value[:2] == [b"CLIENT", b"SETNAME"]:
                    await stream.send_all(b"+OK\r\n")
                    continue
                seen.append(value)
                answer = await reply(value)
                if answer is None:
                    await stream.aclose()
                    return
                await stream.send_all(answer)

    return handle


async def test_a_connection_closed_under_the_call_is_unavailable_then_reconnects() -> None:
    seen: list[list[RespValue]] = []

    async def close_the_first(value: list[RespValue]) -> bytes | None:
        return None if len(seen) == 1 else b"+PONG\r\n"

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_tcp, host="127.0.0.1")
            [listener] = await nursery.start(serve, fake(close_the_first, seen), 0)
            port = listener.socket.getsockname()[1]
            pool = LinkPool(f"redis://127.0.0.1:{port}/0", 1.0, "test", 2)
            with pytest.raises(LogUnavailableError, match="closed the connection"):
                await pool.call(encode_command("PING"), what="publish")
            assert await pool.call(encode_command("PING"), what="publish") == b"PONG"
            assert pool.connections == 2
            await pool.aclose()
            nursery.cancel_scope.cancel()


async def test_the_pool_gives_each_call_a_link_up_to_its_size() -> None:
    seen: list[list[RespValue]] = []
    release = trio.Event()

    async def held(value: list[RespValue]) -> bytes:
        await release.wait()
        return b"+OK\r\n"

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_tcp, host="127.0.0.1")
            [listener] = await nursery.start(serve, fake(held, seen), 0)
            port = listener.socket.getsockname()[1]
            pool = LinkPool(f"redis://127.0.0.1:{port}/0", 30.0, "test", 2)
            answers: list[RespValue] = []

            async def call(n: int) -> None:
                answers.append(await pool.call(encode_command("SET", "k", n), what="publish"))

            nursery.start_soon(call, 1)
            nursery.start_soon(call, 2)
            while len(seen) < 2:  # both in flight at once, each on its own link
                await trio.sleep(0.01)
            with trio.move_on_after(0.1) as scope:
                await pool.call(encode_command("SET", "k", 3), what="publish")
            assert scope.cancelled_caught  # a third waited for a link, and nothing was sent
            assert len(seen) == 2
            release.set()
            while len(answers) < 2:
                await trio.sleep(0.01)
            assert await pool.call(encode_command("SET", "k", 4), what="publish") == b"OK"
            assert answers == [b"OK", b"OK"]
            assert [v[2] for v in seen[2:]] == [b"4"]
            assert pool.connections == 2  # the links came back and were reused
            await pool.aclose()
            nursery.cancel_scope.cancel()


async def test_closing_the_pool_under_a_call_fails_it_and_every_later_one() -> None:
    seen: list[list[RespValue]] = []
    never = trio.Event()

    async def silent(value: list[RespValue]) -> bytes:
        await never.wait()
        raise AssertionError("unreachable")  # pragma: no cover

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_tcp, host="127.0.0.1")
            [listener] = await nursery.start(serve, fake(silent, seen), 0)
            port = listener.socket.getsockname()[1]
            pool = LinkPool(f"redis://127.0.0.1:{port}/0", 30.0, "test", 2)
            failed: list[LogUnavailableError] = []

            async def in_flight() -> None:
                with pytest.raises(LogUnavailableError) as caught:
                    await pool.call(encode_command("PING"), what="publish")
                failed.append(caught.value)

            async with trio.open_nursery() as calls:
                calls.start_soon(in_flight)
                while not seen:
                    await trio.sleep(0.01)
                await pool.aclose()
            assert len(failed) == 1
            with pytest.raises(LogUnavailableError, match="closed"):
                await pool.call(encode_command("PING"), what="publish")
            assert pool.connections == 1  # nothing opened after the close
            nursery.cancel_scope.cancel()
