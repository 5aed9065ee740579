"""End to end: three real ``serve --redis`` processes, a real redis-server, real clients.

Each node in turn is stopped with SIGTERM (it drains with spread hints) and
started again, then one is killed with SIGKILL (no close frame) and started
again. Every client's delivered events must be exactly the shared history
read back from Redis: gap-free, duplicate-free, in log order, with no Gap
and no Snapshot.
"""

from __future__ import annotations

import functools
import re
import signal
import time
from pathlib import Path

import trio

from tests.support.cluster import (
    Recorder,
    make_nodes,
    newest_id,
    shared_history,
    start_all,
    wait_until,
)
from trio_reconnect.testing._redis_server import RedisServer

CLIENTS = 24


def _all_back(recorders: list[Recorder], opened: int) -> bool:
    """Every client is ready, and some reopened since ``opened`` connections were counted."""
    return all(r.ready for r in recorders) and sum(r.opened for r in recorders) > opened


async def test_rolling_sigterm_then_sigkill(redis_server: RedisServer, tmp_path: Path) -> None:
    started = time.monotonic()
    nodes = make_nodes(redis_server.url, tmp_path)
    urls = [node.url for node in nodes]
    recorders = [Recorder() for _ in range(CLIENTS)]
    timings: dict[str, float] = {}
    try:
        with trio.fail_after(120):
            await start_all(nodes)
            timings["nodes up"] = time.monotonic() - started
            async with trio.open_nursery() as nursery:
                for i, recorder in enumerate(recorders):
                    nursery.start_soon(recorder.run, recorder.rotating_urls(urls, i), i)
                await wait_until(lambda: all(r.ready for r in recorders))
                timings["clients ready"] = time.monotonic() - started
                for node in nodes:
                    opened = sum(r.opened for r in recorders)
                    assert await node.stop(signal.SIGTERM) == 0
                    await node.start()
                    # A rolling deploy waits for its clients to be back before the next node.
                    await wait_until(functools.partial(_all_back, recorders, opened))
                    timings[f"{node.name} rolled"] = time.monotonic() - started
                # Kill the node that holds the most clients (a rotation can leave one empty).
                victim = max(nodes, key=lambda n: sum(r.url == n.url for r in recorders))
                assert sum(r.url == victim.url for r in recorders) > 0
                opened = sum(r.opened for r in recorders)
                assert await victim.stop(signal.SIGKILL) == -signal.SIGKILL
                await victim.start()
                await wait_until(
                    lambda: (
                        all(r.ready for r in recorders)
                        and sum(r.opened for r in recorders) > opened
                    )
                )
                timings["SIGKILL recovered"] = time.monotonic() - started
                target = await newest_id(redis_server.url)
                await wait_until(lambda: all((r.last_id or 0) >= target for r in recorders))
                nursery.cancel_scope.cancel()
            history = [event.id for event in await shared_history(redis_server.url)]
            for node in nodes:
                assert await node.stop(signal.SIGTERM) == 0
    finally:
        for node in nodes:
            await node.aclose()
    timings["total"] = time.monotonic() - started
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})

    # Every node drained clients on its SIGTERM, and said so in one line.
    for node in nodes:
        lines = re.findall(r"SIGTERM: drained (\d+) clients", node.stdout())
        assert len(lines) == 2, node.stdout()  # the rolling stop and the final one
        assert int(lines[0]) > 0, node.stdout()
        assert "Traceback" not in node.stderr(), node.stderr()
    # All three nodes published into the one stream.
    assert len(history) > 50
    for i, recorder in enumerate(recorders):
        assert all(kind == "event" for kind, _ in recorder.items), (i, recorder.items)
        ids = recorder.event_ids
        assert ids == history[: len(ids)], f"client {i} is not a run of the shared history"
        assert int(ids[-1]) >= target
        assert recorder.opened >= 2  # it moved at least once
