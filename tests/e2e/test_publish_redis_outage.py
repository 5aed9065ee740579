"""End to end: the real redis-server stops and comes back (its data kept) under publishing clients.

Two real ``serve --redis`` nodes, library clients publishing with acks into
several channels. The redis-server process is stopped (SIGTERM) for a few
seconds and started again on its port with its append-only file, so it
comes back with its data. Meanwhile the nodes keep their connections and
answer every publish ``unavailable``; the clients hold their publishes and
send them again (same msgIds, in order) until Redis answers. At the end
every acked publish is in its channel's log exactly once, with its ack's id,
in its client's order, and nothing else is: nothing lost, nothing doubled.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import trio

from tests.support.cluster import NODE_ARGS, start_all, wait_until
from tests.support.publish_cluster import Publisher, check_logs, metric, scrape
from trio_reconnect.testing._node_process import NodeProcess
from trio_reconnect.testing._redis_server import RedisServer, _free_port, find_redis_server

CHANNELS = tuple(f"pub:{k}" for k in range(4))
PUBLISHERS = 4
OUTAGE = 3.0


async def test_publishes_wait_through_a_redis_outage_and_nothing_is_lost(tmp_path: Path) -> None:
    started = time.monotonic()
    # Kept across the restart: an append-only file, synced at every write.
    options = ("--hz", "100", "--appendonly", "yes", "--appendfsync", "always")
    with RedisServer(find_redis_server(), options=options) as redis:
        metric_ports = [_free_port() for _ in range(2)]
        outage = ("--outage-limit", "60", "--outage-retry-after", "1")
        nodes = [
            NodeProcess(
                f"node{i}",
                _free_port(),
                ("--redis", redis.url, *NODE_ARGS, *outage, "--metrics-port", str(port)),
                tmp_path,
            )
            for i, port in enumerate(metric_ports)
        ]
        urls = [node.url for node in nodes]
        publishers = [Publisher(i, CHANNELS, 0.04, 600) for i in range(PUBLISHERS)]
        figures: dict[str, float] = {}

        def unacked() -> int:
            return sum(p.started - len(p.acked) for p in publishers)

        async def unavailable() -> float:
            total = 0.0
            for port in metric_ports:
                total += metric(await scrape(port), "publish_nacks_total", 'code="unavailable"')
            return total

        try:
            with trio.fail_after(60):
                await start_all(nodes)
                async with trio.open_nursery() as nursery:
                    for p in publishers:
                        nursery.start_soon(p.run, lambda: urls)
                    await wait_until(lambda: all(len(p.acked) >= 10 for p in publishers))
                    opened = [p.tracked.opened for p in publishers]

                    redis.stop()
                    stopped = time.monotonic()
                    # Publishes in flight at the stop may still be answered: give them 0.5 s.
                    await wait_until(lambda: time.monotonic() - stopped >= 0.5)
                    acked_settled = sum(len(p.acked) for p in publishers)
                    await wait_until(lambda: time.monotonic() - stopped >= OUTAGE)
                    figures["acked during the outage (after its first 0.5 s)"] = (
                        sum(len(p.acked) for p in publishers) - acked_settled
                    )
                    figures["unacked at restart"] = unacked()
                    figures["unavailable nacks during the outage"] = await unavailable()
                    redis.start()  # the same port and directory: its data comes back

                    await wait_until(lambda: unacked() == 0)
                    figures["all acked after restart (s)"] = time.monotonic() - stopped - OUTAGE
                    for p in publishers:
                        p.stop.set()
                    for p in publishers:
                        await p.done.wait()
                    # The nodes kept every connection (the outage stayed under --outage-limit).
                    assert [p.tracked.opened for p in publishers] == opened
                    nursery.cancel_scope.cancel()
                figures["answered from a dedupe record"] = sum(
                    [
                        metric(await scrape(port), "publishes_duplicate_total")
                        for port in metric_ports
                    ]
                )
                logs = await check_logs(redis.url, CHANNELS, publishers)
                for node in nodes:
                    assert await node.stop(signal.SIGTERM) == 0
        finally:
            for node in nodes:
                await node.aclose()
    figures |= {
        "publishes": sum(p.started for p in publishers),
        "acked": logs.acked,
        "appended": logs.appended,
        "re-sent (client outbox)": sum(p.resent for p in publishers),
        "duplicates appended": logs.duplicates,
        "missing": logs.missing,
        "total (s)": time.monotonic() - started,
    }
    print("figures:", {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()})

    assert figures["publishes"] == logs.acked == logs.appended
    assert logs.duplicates == logs.missing == logs.unacked_appended == 0
    assert logs.out_of_order == logs.wrong_ids == 0
    # Publishes did wait: none acked while Redis was away, all held and re-sent.
    assert figures["acked during the outage (after its first 0.5 s)"] == 0
    assert figures["unacked at restart"] > 0
    assert figures["unavailable nacks during the outage"] > 0
    assert figures["re-sent (client outbox)"] > 0
    for node in nodes:
        assert "Traceback" not in node.stderr(), node.stderr()
