"""RedisChannelStore on a real redis-server: what is Redis-specific.

The ChannelStore contract itself runs on Redis in
tests/server/test_channel_store_contract.py; here: hash tags and slots,
hostile names, the store losing its data, trimming, one round trip for 100
channels, the notification reader's losses (a killed connection, a partial
frame, a restart, AUTH), Redis down, and 10,000 channels on one socket.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from trio_reconnect.server import (
    ChannelEvent,
    ChannelRequest,
    EventLogError,
    LogUnavailableError,
    MemberChange,
    NotificationsLost,
    PublishRequest,
)
from trio_reconnect.server._logbase import parse_event_id
from trio_reconnect.server._redis._channel_plan import channel_keys, notify_channel
from trio_reconnect.server._redis._resp import RespParser, RespValue, encode_command
from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._redis_server import RedisServer, find_redis_server

GUARD = 10.0
HOSTILE = ["{", "}", "}x", "{a}", "%", "%7B", "a%7Bb%7D", "ré{}ü", "🙂 room", "x" * 256]


def command(port: int, *parts: str | int) -> RespValue:
    """One command on a fresh plain socket (no coredis), its reply parsed."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(encode_command(*parts))
        parser = RespParser()
        while True:
            values = parser.feed(sock.recv(65536))
            if values:
                return values[0]


def commandstats(port: int) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT``."""
    info = command(port, "INFO", "commandstats")
    assert isinstance(info, bytes)
    calls: dict[str, int] = {}
    for line in info.decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_") :].partition(":")
            calls[name] = int(rest.split(",")[0].split("=")[1])
    return calls


def seq(event_id: str) -> int:
    number = parse_event_id(event_id)
    assert number is not None
    return number


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisChannelStore]:
    async with RedisChannelStore(redis_server.url) as opened:
        yield opened


async def next_batch(
    stream: AsyncIterator[Sequence[ChannelEvent | MemberChange]],
) -> list[ChannelEvent]:
    """The stream's next batch: events only here (these tests make no member change)."""
    with trio.fail_after(GUARD):
        batch = await stream.__anext__()
    events = [e for e in batch if isinstance(e, ChannelEvent)]
    assert len(events) == len(batch), batch
    return events


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[RedisServer]:
    """A cluster-enabled redis-server with no slots: enough for ``CLUSTER KEYSLOT``."""
    with RedisServer(find_redis_server(), options=("--cluster-enabled", "yes")) as server:
        yield server


def keyslot(server: RedisServer, key: str) -> int:
    slot = command(server.port, "CLUSTER", "KEYSLOT", key)
    assert isinstance(slot, int), slot
    return slot


def test_a_channels_keys_share_one_slot(cluster_node: RedisServer) -> None:
    slots = {}
    for channel in [*HOSTILE, "room:1", "room:2"]:
        found = {keyslot(cluster_node, key) for key in channel_keys("P", channel)}
        assert len(found) == 1, (channel, found)
        slots[channel] = found.pop()
    # Redis hashes exactly the tag: the same tag elsewhere in a key, the same slot.
    assert keyslot(cluster_node, "other{%7Ba%7D}key") == slots["{a}"]
    # A naive "{}x" tag is empty, so Redis would hash the whole key: keys scatter.
    naive = {keyslot(cluster_node, f"P:{{}}x}}:{suffix}") for suffix in ("meta", "log")}
    assert len(naive) == 2


async def test_hostile_names_round_trip(store: RedisChannelStore) -> None:
    with trio.fail_after(GUARD):
        async with store.listen() as live:
            starts = await store.read([ChannelRequest(c, None) for c in HOSTILE], max_replay=10)
            ids = {c: await store.append(c, {"name": c}) for c in HOSTILE}
            got: list[ChannelEvent] = []
            while len(got) < len(HOSTILE):
                got += await next_batch(live)
            assert got == [ChannelEvent(c, ids[c], {"name": c}) for c in HOSTILE]
            answers = await store.read(
                [ChannelRequest(start.channel, start.newest) for start in starts], max_replay=10
            )
            for answer in answers:
                assert answer.events is not None
                assert [(e.id, e.data) for e in answer.events] == [
                    (ids[answer.channel], {"name": answer.channel})
                ]
            assert await store.heads(HOSTILE) == ids


async def test_ids_restart_above_after_the_store_loses_its_data(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        old = [await store.append("lost", i) for i in range(3)]
        command(redis_server.port, "FLUSHALL")
        [again] = await store.read([ChannelRequest("lost", old[-1])], max_replay=100)
        assert again.events is None
        assert seq(again.newest) > seq(old[-1])
        new = await store.append("lost", "after")
        assert seq(new) == seq(again.newest) + 1
        [from_old] = await store.read([ChannelRequest("lost", old[0])], max_replay=100)
        assert from_old.events is None


async def test_an_append_alone_starts_a_channel_from_the_clock(store: RedisChannelStore) -> None:
    with trio.fail_after(GUARD):
        first = await store.append("new", 1)
        assert seq(first) > 10**15
        [answer] = await store.read([ChannelRequest("new", str(seq(first) - 1))], max_replay=5)
        assert answer.events is not None
        assert [e.id for e in answer.events] == [first]


async def test_trimming_keeps_about_channel_max_len(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, channel_max_len=10) as small:
            ids = [await small.append("t", i) for i in range(500)]
            length = command(redis_server.port, "XLEN", channel_keys("trio_reconnect", "t")[1])
            assert isinstance(length, int)
            assert 10 <= length <= 110
            [whole] = await small.read([ChannelRequest("t", ids[-11])], max_replay=100)
            assert whole.events is not None
            assert [e.id for e in whole.events] == ids[-10:]
            [gone] = await small.read([ChannelRequest("t", ids[0])], max_replay=1_000)
            assert gone.events is None
            [fresh] = await small.read([ChannelRequest("t", None, 1_000)], max_replay=1_000)
            assert fresh.events is not None
            assert fresh.events[-1].id == ids[-1]
            assert [e.id for e in fresh.events] == ids[-len(fresh.events) :]


async def test_100_channels_with_nothing_missed_are_one_command(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        channels = [f"room:{i}" for i in range(100)]
        for channel in channels:
            await store.append(channel, 1)
        heads = await store.heads(channels)
        await store.read([ChannelRequest("warm", None)], max_replay=10)  # loads the script
        command(redis_server.port, "CONFIG", "RESETSTAT")
        answers = await store.read([ChannelRequest(c, heads[c]) for c in channels], max_replay=10)
        assert [a.events for a in answers] == [[]] * 100
        calls = commandstats(redis_server.port)
        # One command from the client; the others counted are the script's own.
        assert calls["evalsha"] == 1
        assert "eval" not in calls
        assert calls["hmget"] == 100


async def test_a_read_splits_only_past_its_budget(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, read_budget=10) as store:
            channels = [f"b:{i}" for i in range(5)]
            starts = {
                a.channel: a.newest
                for a in await store.read(
                    [ChannelRequest(c, None) for c in channels], max_replay=10
                )
            }
            written = {c: [await store.append(c, i) for i in range(5)] for c in channels}
            command(redis_server.port, "CONFIG", "RESETSTAT")
            answers = await store.read(
                [ChannelRequest(c, starts[c]) for c in channels], max_replay=10
            )
            for answer in answers:
                assert answer.events is not None
                assert [e.id for e in answer.events] == written[answer.channel]
            # 5 + 5 fit the budget of 10, a third channel does not: calls of 2, 2 and 1.
            assert commandstats(redis_server.port)["evalsha"] == 3


async def test_channels_that_missed_nothing_keep_the_budget_rule(
    redis_server: RedisServer,
) -> None:
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, read_budget=2) as store:
            channels = ["big", "at:1", "at:2"]
            starts = {
                a.channel: a.newest
                for a in await store.read(
                    [ChannelRequest(c, None) for c in channels], max_replay=10
                )
            }
            written = [await store.append("big", i) for i in range(3)]
            newest = {c: (await store.heads([c]))[c] for c in channels}
            command(redis_server.port, "CONFIG", "RESETSTAT")
            requests = [
                ChannelRequest("at:1", newest["at:1"]),
                ChannelRequest("big", starts["big"]),  # 3 entries, past the budget of 2
                ChannelRequest("at:2", newest["at:2"]),
            ]
            answers = await store.read(requests, max_replay=10)
            assert [a.channel for a in answers] == ["at:1", "big", "at:2"]
            assert answers[0].events == []
            assert answers[0].newest == newest["at:1"]
            assert [e.id for e in answers[1].events or []] == written
            assert answers[2].events == []
            assert answers[2].newest == newest["at:2"]
            # The first call stops before "big"; "big" alone (the first of its call
            # passes the budget); "at:2", nothing missed, still waits for a call of its own.
            assert commandstats(redis_server.port)["evalsha"] == 3


async def test_the_append_is_one_script_that_notifies(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        await store.append("warm", 0)
        command(redis_server.port, "CONFIG", "RESETSTAT")
        await store.append("one", {"a": [1, 2]})
        calls = commandstats(redis_server.port)
        assert calls["evalsha"] == 1
        assert calls["publish"] == 1
        assert calls["xadd"] == 1


async def test_a_killed_pubsub_connection_is_a_loss_and_a_new_stream_works(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        async with store.listen() as live:
            first = await store.append("k", 1)
            assert await next_batch(live) == [ChannelEvent("k", first, 1)]
            assert command(redis_server.port, "CLIENT", "KILL", "TYPE", "pubsub") == 1
            with pytest.raises(NotificationsLost, match="notifications lost"):
                await next_batch(live)
            with pytest.raises(NotificationsLost):
                await next_batch(live)  # the stream is over
        async with store.listen() as again:
            second = await store.append("k", 2)
            assert await next_batch(again) == [ChannelEvent("k", second, 2)]


async def test_a_redis_restart_is_a_loss(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        async with store.listen() as live:
            redis_server.restart()
            with pytest.raises(NotificationsLost):
                await next_batch(live)
        async with store.listen() as again:
            event_id = await store.append("r", 1)  # the client reconnects: a failed call at most
            assert await next_batch(again) == [ChannelEvent("r", event_id, 1)]


async def test_redis_down_is_unavailable(redis_server: RedisServer) -> None:
    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, timeout=0.5) as store:
            redis_server.stop()
            with pytest.raises(LogUnavailableError):
                await store.read([ChannelRequest("d", None)], max_replay=10)
            with pytest.raises(LogUnavailableError):
                await store.append("d", 1)
            with pytest.raises(LogUnavailableError):
                await store.heads(["d"])
            with pytest.raises(LogUnavailableError):
                async with store.listen():
                    pass  # pragma: no cover


@pytest.fixture
def password_server(redis_server: RedisServer) -> RedisServer:
    assert command(redis_server.port, "CONFIG", "SET", "requirepass", "s3cr3t") == b"OK"
    return redis_server


async def test_auth_and_select_from_the_url(password_server: RedisServer) -> None:
    url = f"redis://:s3cr3t@127.0.0.1:{password_server.port}/3"
    with trio.fail_after(GUARD):
        async with RedisChannelStore(url) as store, store.listen() as live:
            event_id = await store.append("a", 1)
            assert await next_batch(live) == [ChannelEvent("a", event_id, 1)]


async def test_a_wrong_password_is_unavailable_and_never_shown(
    password_server: RedisServer,
) -> None:
    url = f"redis://:wrong-pw@127.0.0.1:{password_server.port}/0"
    with trio.fail_after(GUARD):
        async with RedisChannelStore(url) as store:
            with pytest.raises(LogUnavailableError) as caught:
                async with store.listen():
                    pass  # pragma: no cover
            assert "wrong-pw" not in str(caught.value)


def fake_redis(
    pushes: Sequence[bytes], *, done: trio.Event, start: trio.Event | None = None
) -> Any:
    """A server that confirms the subscriptions, sends ``pushes`` (one write each), then closes.

    ``start``: the pushes wait for it, so that none arrives in the handshake's read.
    """

    async def handle(stream: trio.abc.Stream) -> None:
        parser = RespParser()
        values: list[RespValue] = []
        while not values:
            try:
                values = parser.feed(await stream.receive_some(65536))
            except trio.BrokenResourceError:  # a client that refused our certificate
                return
        [subscribe] = values
        assert isinstance(subscribe, list)
        for count, name in enumerate(subscribe[1:], 1):
            assert isinstance(name, bytes)
            confirm = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:%d\r\n"
            await stream.send_all(confirm % (len(name), name, count))
        if start is not None:
            await start.wait()
        for push in pushes:
            await stream.send_all(push)
            await trio.sleep(0.01)
        await done.wait()
        await stream.aclose()

    return handle


def push(channel: str, event_id: str, data: Any) -> bytes:
    payload = f"e\n{channel}\n{event_id}\n{json.dumps(data)}"
    return encode_command("message", notify_channel("trio_reconnect", 0), payload)


async def test_the_reader_joins_partial_frames_and_a_closed_socket_is_a_loss() -> None:
    frames = push("a", "1", {"x": "y"}) + push("b", "2", [1])
    pieces = [frames[:7], frames[7:40], frames[40:-3], frames[-3:]]
    done = trio.Event()
    handle = fake_redis(pieces, done=done)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
            port = listener.socket.getsockname()[1]
            store = RedisChannelStore(f"redis://127.0.0.1:{port}/0", notify_shards=2)
            async with store.listen() as live:
                got: list[ChannelEvent] = []
                while len(got) < 2:
                    got += await next_batch(live)
                assert got == [ChannelEvent("a", "1", {"x": "y"}), ChannelEvent("b", "2", [1])]
                done.set()
                with pytest.raises(NotificationsLost, match="closed"):
                    await next_batch(live)
            nursery.cancel_scope.cancel()


async def test_a_close_inside_a_frame_is_a_loss() -> None:
    done = trio.Event()
    done.set()
    handle = fake_redis([push("a", "1", 1)[:-5]], done=done)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
            port = listener.socket.getsockname()[1]
            store = RedisChannelStore(f"redis://127.0.0.1:{port}/0", notify_shards=3)
            async with store.listen() as live:
                with pytest.raises(NotificationsLost):
                    await next_batch(live)
            nursery.cancel_scope.cancel()


def _tasks() -> int:
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    nurseries = list(root.child_nurseries)
    while nurseries:
        nursery = nurseries.pop()
        for task in nursery.child_tasks:
            count += 1
            nurseries += task.child_nurseries
    return count


async def test_10000_channels_take_no_task_or_read_each(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    channels = [f"many:{i}" for i in range(10_000)]
    with trio.fail_after(60):
        await store.heads(["warm"])  # the client's own tasks are up
        tasks_before = _tasks()
        async with store.listen() as live:
            starts = await store.read([ChannelRequest(c, None) for c in channels], max_replay=10)
            assert len(starts) == 10_000
            assert _tasks() == tasks_before
            clients = command(redis_server.port, "CLIENT", "LIST")
            assert isinstance(clients, bytes)
            assert clients.count(b"cmd=subscribe") == 1
            assert len(clients.splitlines()) <= 4  # the store's client, the listener, this one
            picked = channels[::1000]
            ids = [await store.append(c, c) for c in picked]
            got: list[ChannelEvent] = []
            while len(got) < len(picked):
                got += await next_batch(live)
            assert got == [ChannelEvent(c, i, c) for c, i in zip(picked, ids, strict=True)]
            heads = await store.heads(channels)
            assert len(heads) == 10_000


async def test_an_idle_stream_pings_and_stays_live(redis_server: RedisServer) -> None:
    got: list[ChannelEvent] = []
    with trio.fail_after(GUARD):
        async with (
            RedisChannelStore(redis_server.url, notify_ping_interval=0.02) as store,
            store.listen() as live,
        ):

            async def reader() -> None:
                got.extend(await next_batch(live))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.3)  # about 15 PINGs, each answered
                event_id = await store.append("idle", 1)
            assert got == [ChannelEvent("idle", event_id, 1)]
            assert commandstats(redis_server.port)["ping"] >= 5


async def test_a_silent_peer_is_a_loss() -> None:
    done = trio.Event()  # never set: the peer confirms, then never answers again
    handle = fake_redis([], done=done)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
            port = listener.socket.getsockname()[1]
            url = f"redis://127.0.0.1:{port}/0"
            store = RedisChannelStore(url, notify_ping_interval=0.05, timeout=0.1)
            async with store.listen() as live:
                start = trio.current_time()
                with pytest.raises(NotificationsLost, match="PING"):
                    await live.__anext__()
                assert 0.15 <= trio.current_time() - start < 2.0
            nursery.cancel_scope.cancel()


async def test_listen_over_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    options = ("--unixsocket", str(path), "--unixsocketperm", "700")
    with RedisServer(find_redis_server(), options=options) as server, trio.fail_after(GUARD):
        async with (
            RedisChannelStore(server.url) as store,
            RedisChannelStore(f"unix://{path}?db=0").listen() as live,
        ):
            event_id = await store.append("u", "x")
            assert await next_batch(live) == [ChannelEvent("u", event_id, "x")]


async def test_listen_over_tls_checks_the_ca_from_the_url(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    handle = fake_redis([push("t", "5", {"tls": True})], done=trio.Event())
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_ssl_over_tcp, host="127.0.0.1")
            [listener] = await nursery.start(serve, handle, 0, server_context)
            port = listener.transport_listener.socket.getsockname()[1]
            base = f"rediss://localhost:{port}/0?ssl_cert_reqs=required&ssl_check_hostname=true"
            store = RedisChannelStore(f"{base}&ssl_ca_certs={ca_file}", notify_shards=1)
            async with store.listen() as live:
                assert await next_batch(live) == [ChannelEvent("t", "5", {"tls": True})]
            untrusted = RedisChannelStore(base, notify_shards=1, timeout=1.0)
            with pytest.raises(LogUnavailableError):
                async with untrusted.listen():
                    pass  # pragma: no cover
            nursery.cancel_scope.cancel()


async def test_a_lost_counter_restarts_above_the_streams_top_entry(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    meta, log = channel_keys("trio_reconnect", "kept")
    big = 2**53 - 10  # far above the clock: the top entry decides, formatted exactly
    command(redis_server.port, "XADD", log, f"{big}-0", "d", "0")
    with trio.fail_after(GUARD):
        [start] = await store.read([ChannelRequest("kept", None)], max_replay=10)
        assert start.newest == str(big)
        assert await store.append("kept", 1) == str(big + 1)
        command(redis_server.port, "DEL", meta)  # the counter alone is lost (evicted, say)
        assert await store.append("kept", 2) == str(big + 2)
        [old] = await store.read([ChannelRequest("kept", str(big))], max_replay=10)
        assert old.events is None  # below the new incarnation's first - 1


async def test_a_burst_crosses_many_reads_whole_and_in_order(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    # 20,000 notifications of ~300 bytes from one script: several MB, cut
    # wherever the socket cuts them.
    lua = (
        "for i = 1, 20000 do redis.call('PUBLISH', KEYS[1], "
        "'e\\nburst\\n' .. i .. '\\n\"' .. string.rep('y', 280) .. '\"') end return 1"
    )
    shard = notify_channel("trio_reconnect", 0)
    with trio.fail_after(30):
        async with store.listen() as live:
            command(redis_server.port, "EVAL", lua, 1, shard)
            got: list[ChannelEvent] = []
            while len(got) < 20_000:
                got += await next_batch(live)
    assert [e.id for e in got] == [str(i) for i in range(1, 20_001)]
    assert {e.data for e in got} == {"y" * 280}


async def test_publish_dedupe_record_layout_and_ttl(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        [result] = await store.publish([PublishRequest("}x", "abc", {"v": 1})], dedupe_ttl=2.5)
    meta, log = channel_keys("trio_reconnect", "}x")
    record = meta.removesuffix("meta") + "d:abc"
    assert record == "trio_reconnect:{%7Dx}:d:abc"  # in the channel's slot
    assert command(redis_server.port, "GET", record) == result.id.encode()
    pttl = command(redis_server.port, "PTTL", record)
    assert isinstance(pttl, int)
    assert 0 < pttl <= 2_500
    entries = command(redis_server.port, "XRANGE", log, "-", "+")
    assert isinstance(entries, list)
    assert len(entries) == 1


async def test_publish_when_redis_is_down_is_unavailable(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    redis_server.stop()
    with trio.fail_after(GUARD), pytest.raises(LogUnavailableError):
        await store.publish([PublishRequest("room", "k", 1)], dedupe_ttl=60)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("noeviction", None),
        ("volatile-lru", "not 'noeviction'"),
        ("allkeys-lru", "not 'noeviction'"),
    ],
)
async def test_the_eviction_policy_is_checked_at_start(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, policy: str, expected: str | None
) -> None:
    command(redis_server.port, "CONFIG", "SET", "maxmemory-policy", policy)
    async with RedisChannelStore(redis_server.url):
        pass
    warnings = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert expected in warnings[0]


async def test_a_refused_config_get_is_a_warning_not_a_failure(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    command(redis_server.port, "ACL", "SETUSER", "default", "-config")
    async with RedisChannelStore(redis_server.url) as store:
        [result] = await store.publish([PublishRequest("room", "k", 1)], dedupe_ttl=60)
        assert not result.duplicate
    assert any("could not check" in r.getMessage() for r in caplog.records)


# -- group commit: appends that meet share one script call ----------------------


async def test_concurrent_appends_share_one_call_and_ids_stay_consecutive(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    channels = ["same", "other", "third"]
    with trio.fail_after(GUARD):
        starts = await store.read([ChannelRequest(c, None) for c in channels], max_replay=100)
        await store.append("warm", 0)  # the script is loaded
        command(redis_server.port, "CONFIG", "RESETSTAT")
        ids: dict[str, list[str]] = {c: [] for c in channels}

        async def publisher(channel: str, k: int) -> None:
            ids[channel].append(await store.append(channel, {"k": k}))

        async with trio.open_nursery() as nursery:
            # 20 appends to one channel, 5 to each of two others, all in one pass.
            for k in range(30):
                nursery.start_soon(publisher, channels[0] if k < 20 else channels[k % 2 + 1], k)
        calls = commandstats(redis_server.port)
        assert calls["evalsha"] == 1  # one script call carried all 30
        assert calls["xadd"] == calls["publish"] == 30
        for start in starts:
            got = sorted(seq(i) for i in ids[start.channel])
            first = seq(start.newest) + 1
            assert got == list(range(first, first + len(got)))  # consecutive, none reused
        async with store.listen() as live:
            # A caller's own appends keep its order; a lone append still goes at once.
            mine = [await store.append("same", n) for n in range(3)]
            newest = max(seq(i) for i in ids["same"])
            assert [seq(i) for i in mine] == [newest + n for n in (1, 2, 3)]
            events = await next_batch(live)
            while len(events) < 3:
                events += await next_batch(live)
            assert [(e.id, e.data) for e in events] == list(zip(mine, range(3), strict=True))


async def test_a_failed_item_fails_alone_and_the_batch_goes_on(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    meta = channel_keys("trio_reconnect", "broken")[0]
    assert command(redis_server.port, "SET", meta, "not a hash") == b"OK"
    results: dict[str, str | Exception] = {}

    async def append(name: str, channel: str) -> None:
        try:
            results[name] = await store.append(channel, name)
        except Exception as exc:
            results[name] = exc

    with trio.fail_after(GUARD):
        first = await store.append("fine", 0)
        command(redis_server.port, "CONFIG", "RESETSTAT")
        async with trio.open_nursery() as nursery:
            for name, channel in [("a", "fine"), ("b", "broken"), ("c", "fine")]:
                nursery.start_soon(append, name, channel)
    assert commandstats(redis_server.port)["evalsha"] == 1
    broken = results.pop("b")
    assert isinstance(broken, EventLogError)
    assert not isinstance(broken, LogUnavailableError)
    assert "WRONGTYPE" in str(broken)
    assert sorted(seq(str(i)) for i in results.values()) == [seq(first) + 1, seq(first) + 2]
    assert command(redis_server.port, "EXISTS", channel_keys("trio_reconnect", "broken")[1]) == 0


async def test_a_batch_whose_call_fails_fails_every_waiter_with_the_same_error(
    redis_server: RedisServer,
) -> None:
    outcomes: list[BaseException] = []

    async def append(paused: RedisChannelStore, k: int) -> None:
        try:
            await paused.append("p", k)
        except LogUnavailableError as exc:
            outcomes.append(exc)

    with trio.fail_after(GUARD):
        async with RedisChannelStore(redis_server.url, timeout=0.3) as paused:
            before = await paused.append("p", "before")
            # Redis answers nothing for 1 s: the batch's call outlasts its timeout.
            command(redis_server.port, "CLIENT", "PAUSE", 1000)
            async with trio.open_nursery() as nursery:
                for k in range(5):
                    nursery.start_soon(append, paused, k)
            assert len(outcomes) == 5
            assert len({str(e) for e in outcomes}) == 1  # the same clear error for all
            assert "no answer within 0.3 s" in str(outcomes[0])
            await trio.sleep(1.0)  # the pause ends; the sent script may have run (unknown)
            after = await paused.append("p", "after")  # a new connection, never a reused id
            [read] = await paused.read([ChannelRequest("p", before)], max_replay=100)
    assert read.events is not None
    stored = [e.id for e in read.events]
    assert stored[-1] == after
    assert [seq(i) for i in stored] == list(range(seq(before) + 1, seq(after) + 1))
    assert len(stored) in (1, 6)  # the five were stored together, or not at all


async def test_a_queued_append_cancelled_before_its_call_stores_nothing(
    redis_server: RedisServer, store: RedisChannelStore
) -> None:
    with trio.fail_after(GUARD):
        first = await store.append("q", 0)
        command(redis_server.port, "CLIENT", "PAUSE", 300)
        results: list[str] = []

        async def in_flight() -> None:
            results.append(await store.append("q", 1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_flight)
            await trio.sleep(0.05)  # its call is out, waiting for the pause to end
            with trio.move_on_after(0.05) as scope:
                await store.append("q", 2)  # queued behind the call in flight
            assert scope.cancelled_caught
        [read] = await store.read([ChannelRequest("q", first)], max_replay=10)
    assert read.events is not None
    assert [(e.id, e.data) for e in read.events] == [(results[0], 1)]
    assert seq(results[0]) == seq(first) + 1


async def test_data_redis_cannot_carry_fails_in_the_caller_and_the_store_goes_on(
    store: RedisChannelStore,
) -> None:
    with trio.fail_after(GUARD):
        with pytest.raises(ValueError, match="surrogate"):
            await store.append("s", "\ud800")  # JSON encodes it, UTF-8 cannot
        first = await store.append("s", "fine")
        [read] = await store.read([ChannelRequest("s", str(seq(first) - 1))], max_replay=5)
    assert read.events is not None
    assert [(e.id, e.data) for e in read.events] == [(first, "fine")]


async def test_events_nobody_wants_are_left_out_undecoded_and_still_count() -> None:
    unwanted = encode_command("message", notify_channel("trio_reconnect", 0), "e\nb\n2\n{no json")
    frames = push("a", "1", {"x": 1}) + unwanted + push("a", "3", 2)
    done = trio.Event()
    handle = fake_redis([frames], done=done)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
            url = f"redis://127.0.0.1:{listener.socket.getsockname()[1]}/0"
            store = RedisChannelStore(url, notify_shards=1)
            async with store.listen(wanted={"a"}.__contains__) as live:
                got = await next_batch(live)
                while len(got) < 2:
                    got += await next_batch(live)
                # b's data was never decoded: its malformed JSON lost nothing.
                assert got == [ChannelEvent("a", "1", {"x": 1}), ChannelEvent("a", "3", 2)]
            # The backlog bound counts every notification read, wanted or not.
            # The pushes wait for the handshake to end: the bound is a read's,
            # and one read of the handshake and the pushes together (seen under
            # coverage in CI) would hand them over as the handshake's rest.
            go = trio.Event()
            handle = fake_redis([frames], done=done, start=go)
            [listener] = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), handle, 0)
            url = f"redis://127.0.0.1:{listener.socket.getsockname()[1]}/0"
            small = RedisChannelStore(url, notify_shards=1, listener_buffer=2)
            async with small.listen(wanted={"a"}.__contains__) as live:
                go.set()
                with pytest.raises(NotificationsLost, match="more than 2"):
                    await next_batch(live)
            done.set()
            nursery.cancel_scope.cancel()
