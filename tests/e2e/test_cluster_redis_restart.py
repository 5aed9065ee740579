"""End to end: the redis-server stops and comes back empty under running nodes and clients.

PROTOCOL.md section 3.4: while Redis is down the nodes keep their open
connections, refuse new handshakes with 503 and a ``Retry-After``, and fail
each publish loudly (the ticker logs it and goes on). When Redis returns
empty, ids restart above every earlier one, the nodes find the
discontinuity and close their clients with a hint, and every client is told
exactly what it missed (a Gap right after the last event it had), then gets
every new event.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from pathlib import Path

import trio

from tests.support.cluster import (
    Recorder,
    make_nodes,
    newest_id,
    opening_handshake,
    shared_history,
    start_all,
    wait_until,
)
from trio_reconnect.testing._redis_server import RedisServer

CLIENTS = 21


def consecutive(ids: list[str]) -> bool:
    return all(int(b) == int(a) + 1 for a, b in itertools.pairwise(ids))


async def test_redis_restarted_empty_under_nodes_and_clients(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    # The outage stays shorter than --outage-limit: the nodes keep their clients.
    nodes = make_nodes(
        redis_server.url, tmp_path, "--outage-limit", "60", "--outage-retry-after", "1"
    )
    urls = [node.url for node in nodes]
    recorders = [Recorder() for _ in range(CLIENTS)]
    timings: dict[str, float] = {}
    try:
        with trio.fail_after(90):
            await start_all(nodes)
            async with trio.open_nursery() as nursery:
                for i, recorder in enumerate(recorders):
                    nursery.start_soon(recorder.run, recorder.rotating_urls(urls, i), i)
                await wait_until(lambda: all(r.ready for r in recorders))
                before = await newest_id(redis_server.url)
                await wait_until(lambda: all((r.last_id or 0) >= before for r in recorders))
                old_history = [e.id for e in await shared_history(redis_server.url)]
                opened = [r.opened for r in recorders]

                redis_server.stop()
                timings["redis stopped"] = time.monotonic() - started
                # Every node refuses new handshakes with 503 and a Retry-After ...
                for node in nodes:
                    while True:
                        status, headers = await opening_handshake(node.port)
                        if status == 503:
                            break
                        await trio.sleep(0.05)
                    assert int(headers["retry-after"]) >= 1
                # ... and says that its ticks are not published, while it keeps ticking.
                await wait_until(lambda: all(n.stderr().count("not published") >= 3 for n in nodes))
                timings["503 and failed ticks seen"] = time.monotonic() - started
                # Nothing was closed: the open connections are kept.
                assert [r.opened for r in recorders] == opened
                assert all(r.ready for r in recorders)

                redis_server.start()  # empty, on the same port
                timings["redis started"] = time.monotonic() - started
                # Every client is told, then catches up with the new log.
                await wait_until(
                    lambda: all(any(k == "gap" for k, _ in r.items) for r in recorders)
                )
                target = await newest_id(redis_server.url)
                await wait_until(lambda: all((r.last_id or 0) >= target for r in recorders))
                timings["every client told and caught up"] = time.monotonic() - started
                nursery.cancel_scope.cancel()
            new_events = await shared_history(redis_server.url)
            for node in nodes:
                assert await node.stop(signal.SIGTERM) == 0
    finally:
        for node in nodes:
            await node.aclose()
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})

    new_history = [e.id for e in new_events]
    assert int(new_history[0]) > int(old_history[-1])  # ids restarted above every old one
    for i, recorder in enumerate(recorders):
        items = recorder.items
        assert all(kind != "snapshot" for kind, _ in items)
        gaps = [n for n, (kind, _) in enumerate(items) if kind == "gap"]
        assert gaps, f"client {i} was never told"
        # Before the first gap: a run of the old history from its start.
        first = [id_ for _, id_ in items[: gaps[0]]]
        assert first[: len(old_history)] == old_history[: len(first)]
        assert consecutive(first)  # type: ignore[arg-type]
        assert int(first[-1]) >= before  # type: ignore[arg-type]
        # Each gap names the last event the client had, exactly.
        for n in gaps:
            before_gap = [id_ for kind, id_ in items[:n] if kind == "event"]
            assert items[n][1] == (before_gap[-1] if before_gap else None), (i, items)
        # After the last gap: every new event from some point on, to the newest.
        last = [id_ for _, id_ in items[gaps[-1] + 1 :]]
        assert last, f"client {i} got nothing after its gap"
        start = new_history.index(last[0])  # type: ignore[arg-type]
        assert last == new_history[start : start + len(last)], f"client {i}: not a run"
        assert int(last[-1]) >= target  # type: ignore[arg-type]
    # The tickers went on: every node published into the new log after its failed ticks.
    for node in nodes:
        failed = [int(t) for t in re.findall(r"tick (\d+) not published", node.stderr())]
        ticks = [e.data["tick"] for e in new_events if e.data["node"] == node.name]
        assert failed, node.name
        assert ticks, node.name
        assert min(ticks) > max(failed), node.name
        assert "Traceback" not in node.stderr(), node.stderr()
