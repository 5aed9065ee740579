"""End to end, channels: Redis loses one channel's data, restarts with its data, restarts empty.

Three real ``serve --redis`` processes, a real redis-server (with an
append-only file, so that a stop and start keeps its data until the test
deletes it), 20 library clients each subscribed to 5 of 20 channels, and
the test process appending to every channel. Three faults, each once every
client has every event so far:

1. **One channel's data is lost** (its keys deleted, as an eviction or a
   flush would): only the subscribers of the lost channels get a Gap, in
   those channels only, naming exactly the last event they had and the id
   the channel starts again from (issue 18: "a node that finds a
   discontinuity in one channel tells the subscribers of that channel
   exactly what they missed, not everyone").
2. **Redis stops and restarts with its data** under the nodes (shorter
   than ``--outage-limit``): nothing is lost, so nobody gets a Gap; the
   appends made while it was down failed loudly and the nodes' feeds repair
   every channel from Redis once it is back.
3. **Redis stops and restarts empty**: every channel lost its data, so every
   subscription gets exactly one Gap, from the last event it had to the id
   its channel starts again from, then every new event.
"""

from __future__ import annotations

import functools
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trio

from tests.redis.test_redis_channels import command
from tests.support.channel_cluster import (
    ChannelRecorder,
    Item,
    Publisher,
    channel_heads,
    channel_log,
    channels_of,
    check_run,
    metric,
    metrics_port,
    nodes_with_metrics,
    scrape,
)
from tests.support.cluster import start_all, wait_until
from trio_reconnect.server._redis._channel_plan import DEFAULT_CHANNEL_PREFIX, channel_keys
from trio_reconnect.testing._redis_server import RedisServer, find_redis_server

CLIENTS = 20
CHANNELS = [f"room:{i}" for i in range(20)]
PER_CLIENT = 5
#: The channels whose data the first fault deletes.
LOST = CHANNELS[:3]
TICKS = ("--interval", "0.25")


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    """A redis-server whose data survives a stop and start (an fsynced append-only file)."""
    data = tmp_path / "redis-data"
    data.mkdir()
    options = ("--hz", "100", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(data))
    with RedisServer(find_redis_server(), options=options) as server:
        yield server, data


def wipe(directory: Path) -> None:
    """Delete a stopped Redis's data files (it restarts empty)."""
    for path in directory.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def ready(recorders: Sequence[ChannelRecorder]) -> bool:
    return all(r.ready and r.subscribed for r in recorders)


def caught_up(recorders: Sequence[ChannelRecorder], heads: dict[str, int]) -> bool:
    return ready(recorders) and all(r.last_in(c) >= heads[c] for r in recorders for c in r.channels)


def gaps(recorder: ChannelRecorder, channel: str) -> list[int]:
    return [n for n, (kind, _, _) in enumerate(recorder.per_channel[channel]) if kind == "gap"]


def segments(items: Sequence[Item], start: str | None) -> list[tuple[str | None, list[str]]]:
    """The runs between gaps: (the id each starts after, its event ids)."""
    runs: list[tuple[str | None, list[str]]] = [(start, [])]
    for kind, first, second in items:
        if kind == "gap":
            before = runs[-1][1][-1] if runs[-1][1] else runs[-1][0]
            assert first == before, f"the gap names {first}, the client had {before}"
            runs.append((second, []))
        else:
            assert kind == "event", kind
            assert first is not None
            runs[-1][1].append(first)
    return runs


async def settle(url: str, recorders: Sequence[ChannelRecorder], publisher: Publisher) -> None:
    """Hold the publisher, and wait until every client has every event of its channels."""
    publisher.paused = True
    await trio.sleep(0.05)  # an append in flight ends
    heads = await channel_heads(url, CHANNELS)
    await wait_until(functools.partial(caught_up, recorders, heads))


async def test_channel_data_lost_redis_restarted_with_data_then_empty(
    persistent_redis: tuple[RedisServer, Path], tmp_path: Path
) -> None:
    redis, data = persistent_redis
    started = time.monotonic()
    nodes = nodes_with_metrics(
        redis.url, tmp_path, *TICKS, "--outage-limit", "60", "--outage-retry-after", "1"
    )
    urls = [node.url for node in nodes]
    recorders = [
        ChannelRecorder(channels=channels_of(i, CHANNELS, PER_CLIENT)) for i in range(CLIENTS)
    ]
    publisher = Publisher(redis.url, CHANNELS)
    timings: dict[str, float] = {}
    logs: list[dict[str, list[str]]] = []  # each channel's log before each fault, and at the end
    try:
        with trio.fail_after(90):
            await start_all(nodes)
            async with trio.open_nursery() as nursery:
                for i, recorder in enumerate(recorders):
                    nursery.start_soon(recorder.run, recorder.rotating_urls(urls, i), i)
                await wait_until(lambda: ready(recorders))
                # Only now: each subscription's start is its subscribed id, no event taken yet.
                nursery.start_soon(publisher.run)
                await trio.sleep(0.5)

                # 1. The lost channels' keys are deleted under the nodes.
                await settle(redis.url, recorders, publisher)
                logs.append({c: await channel_log(redis.url, c) for c in CHANNELS})
                for channel in LOST:
                    assert command(
                        redis.port, "DEL", *channel_keys(DEFAULT_CHANNEL_PREFIX, channel)
                    )
                publisher.paused = False
                await wait_until(
                    lambda: all(gaps(r, c) for r in recorders for c in r.channels if c in LOST)
                )
                timings["lost channels told"] = time.monotonic() - started
                told = [await scrape(metrics_port(node)) for node in nodes]
                await trio.sleep(0.5)

                # 2. Redis stops and comes back with its data.
                failed, opened = publisher.failed, [r.opened for r in recorders]
                redis.stop()
                await wait_until(lambda: publisher.failed >= failed + 3)
                redis.start()
                timings["redis back with its data"] = time.monotonic() - started
                await trio.sleep(0.5)

                # 3. Redis stops and comes back empty.
                await settle(redis.url, recorders, publisher)
                timings["caught up after the restart"] = time.monotonic() - started
                # The outage was shorter than --outage-limit: every connection was kept.
                assert [r.opened for r in recorders] == opened
                logs.append({c: await channel_log(redis.url, c) for c in CHANNELS})
                redis.stop()
                wipe(data)
                redis.start()
                publisher.paused = False
                await wait_until(
                    lambda: all(
                        len(gaps(r, c)) >= 2 - (c not in LOST)
                        for r in recorders
                        for c in r.channels
                    )
                )
                timings["everyone told after the empty restart"] = time.monotonic() - started
                await trio.sleep(0.5)
                await settle(redis.url, recorders, publisher)
                timings["caught up"] = time.monotonic() - started
                final = [await scrape(metrics_port(node)) for node in nodes]
                nursery.cancel_scope.cancel()
            logs.append({c: await channel_log(redis.url, c) for c in CHANNELS})
            for node in nodes:
                assert await node.stop(signal.SIGTERM) == 0
    finally:
        for node in nodes:
            await node.aclose()
    timings["total"] = time.monotonic() - started
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})

    assert publisher.failed > 0  # appends failed loudly while Redis was away
    # The nodes counted it: after the lost channels, one resync per subscription
    # to them and nothing else; after the restarts, every subscription resynced
    # or answered lost, and every node's notification stream lost twice.
    pairs = sum(c in LOST for r in recorders for c in r.channels)
    assert sum(metric(m, "channel_resyncs_total") for m in told) == pairs
    assert sum(metric(m, "channel_lost_total") for m in told) == 0
    told_after = sum(
        metric(m, "channel_resyncs_total") + metric(m, "channel_lost_total") for m in final
    )
    assert told_after >= pairs + CLIENTS * PER_CLIENT
    assert all(metric(m, "channel_notifications_lost_total") >= 2 for m in final)
    for node in nodes:
        assert "Traceback" not in node.stderr(), node.stderr()
        # Each node's feed lost its notifications at each stop, and repaired.
        assert node.stderr().count("channel notifications lost") >= 2, node.stderr()
    for i, recorder in enumerate(recorders):
        for channel in recorder.channels:
            items = recorder.per_channel[channel]
            runs = segments(items, recorder.start[channel])
            # Which logs each run comes from: the lost channels restarted twice, the others once.
            sources = [logs[0], logs[1], logs[2]] if channel in LOST else [logs[1], logs[2]]
            assert len(runs) == len(sources), (i, channel, items)
            for (after, ids), log in zip(runs, sources, strict=True):
                problem = check_run(ids, after, log[channel])
                assert problem is None, (i, channel, problem)
                # Every run reaches the end of its log: the client had everything
                # before each loss, and has everything at the end.
                newest = int(ids[-1]) if ids else int(after or 0)
                assert newest == int(log[channel][-1]), (i, channel, after, ids[-1:])
            # A gap restarts above every id the channel issued before.
            for (after, _), log in zip(runs[1:], sources, strict=False):
                assert after is not None
                assert int(after) > int(log[channel][-1])
