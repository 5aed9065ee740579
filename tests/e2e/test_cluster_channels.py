"""End to end, channels: three real ``serve --redis`` processes, a real redis-server, real clients.

20 library clients, each subscribed with ``ws.subscribe`` to 5 of 20 channels
(a fixed choice per client), while the test process appends to every channel
through its own :class:`~trio_reconnect.server.redis.RedisChannelStore`
for the whole run. Each node in turn is stopped with SIGTERM (it drains its
clients with spread hints) and started again on its port, then one node is
killed with SIGKILL. At the end every client's items in every channel are
exactly the channel's log read back from Redis after the id its subscription
started at: gap-free, duplicate-free, in order, to the newest event, and
with no Gap and no Snapshot (the channel's log never lost anything, so a
Gap would be a bug).
"""

from __future__ import annotations

import functools
import re
import signal
import time
from pathlib import Path

import trio

from tests.support.channel_cluster import (
    ChannelRecorder,
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
from trio_reconnect.testing._redis_server import RedisServer

CLIENTS = 20
CHANNELS = [f"room:{i}" for i in range(20)]
PER_CLIENT = 5
#: serve's ticker is not what this test is about: a slow one.
TICKS = ("--interval", "0.25")


def all_back(recorders: list[ChannelRecorder], opened: int) -> bool:
    """Every client is ready and subscribed, and some reopened since ``opened`` were counted."""
    return all(r.ready and r.subscribed for r in recorders) and (
        sum(r.opened for r in recorders) > opened
    )


def caught_up(recorders: list[ChannelRecorder], heads: dict[str, int]) -> bool:
    return all(r.last_in(c) >= heads[c] for r in recorders for c in r.channels)


async def test_channels_through_a_rolling_deploy_and_a_sigkill(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    nodes = nodes_with_metrics(redis_server.url, tmp_path, *TICKS)
    urls = [node.url for node in nodes]
    recorders = [
        ChannelRecorder(channels=channels_of(i, CHANNELS, PER_CLIENT)) for i in range(CLIENTS)
    ]
    publisher = Publisher(redis_server.url, CHANNELS)
    timings: dict[str, float] = {}
    try:
        with trio.fail_after(60):
            await start_all(nodes)
            async with trio.open_nursery() as nursery:
                for i, recorder in enumerate(recorders):
                    nursery.start_soon(recorder.run, recorder.rotating_urls(urls, i), i)
                await wait_until(lambda: all(r.ready and r.subscribed for r in recorders))
                # Only now: each subscription's start is its subscribed id, no event taken yet.
                nursery.start_soon(publisher.run)
                timings["clients subscribed"] = time.monotonic() - started
                for node in nodes:
                    opened = sum(r.opened for r in recorders)
                    assert await node.stop(signal.SIGTERM) == 0
                    await node.start()
                    await wait_until(functools.partial(all_back, recorders, opened))
                    timings[f"{node.name} rolled"] = time.monotonic() - started
                victim = max(nodes, key=lambda n: sum(r.url == n.url for r in recorders))
                assert sum(r.url == victim.url for r in recorders) > 0
                opened = sum(r.opened for r in recorders)
                assert await victim.stop(signal.SIGKILL) == -signal.SIGKILL
                await victim.start()
                await wait_until(functools.partial(all_back, recorders, opened))
                timings["SIGKILL recovered"] = time.monotonic() - started
                await trio.sleep(0.5)  # events flow on the new connections
                publisher.paused = True
                await trio.sleep(0.05)  # an append in flight ends
                heads = await channel_heads(redis_server.url, CHANNELS)
                await wait_until(functools.partial(caught_up, recorders, heads))
                timings["caught up"] = time.monotonic() - started
                metrics = [await scrape(metrics_port(node)) for node in nodes]
                nursery.cancel_scope.cancel()
            logs = {c: await channel_log(redis_server.url, c) for c in CHANNELS}
            for node in nodes:
                assert await node.stop(signal.SIGTERM) == 0
    finally:
        for node in nodes:
            await node.aclose()
    timings["total"] = time.monotonic() - started
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})

    assert publisher.failed == 0
    for channel in CHANNELS:
        # The log is exactly what was appended (nothing lost on Redis's side).
        assert logs[channel] == publisher.sent[channel]
        assert len(logs[channel]) > 20, channel
    for node in nodes:
        drained = [int(n) for n in re.findall(r"SIGTERM: drained (\d+) clients", node.stdout())]
        assert len(drained) == 2, node.stdout()  # the rolling stop and the final one
        assert drained[0] > 0, node.stdout()
        assert "Traceback" not in node.stderr(), node.stderr()
    # The nodes' channel figures, scraped at the end: every subscription is
    # held somewhere, once; the hops replayed what the clients missed; and
    # nothing was refused, lost or resynced.
    assert sum(metric(m, "channel_subscriptions") for m in metrics) == CLIENTS * PER_CLIENT
    for m in metrics:
        assert metric(m, "channels") <= len(CHANNELS)
        assert metric(m, "channels") > 0 or metric(m, "channel_subscriptions") == 0
    assert sum(metric(m, "channel_events_total", kind="replayed") for m in metrics) > 0
    for name in ("channel_lost_total", "channel_resyncs_total", "channel_notifications_lost_total"):
        assert all(metric(m, name) == 0 for m in metrics), name
    for code in ("forbidden", "invalid", "limit", "unavailable"):
        assert all(metric(m, "channel_refusals_total", code=code) == 0 for m in metrics), code
    for i, recorder in enumerate(recorders):
        # Every client was drained at least once, and followed the node's hint.
        assert recorder.server_directed >= 1, i
        assert recorder.opened >= 2, i
        for channel in recorder.channels:
            items = recorder.per_channel[channel]
            assert all(kind == "event" for kind, _, _ in items), (i, channel, items)
            ids = recorder.channel_ids(channel)
            problem = check_run(ids, recorder.start[channel], logs[channel])
            assert problem is None, (i, channel, problem)
            assert int(ids[-1]) == heads[channel], (i, channel)
