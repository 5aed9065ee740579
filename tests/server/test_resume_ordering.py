"""Register first, read second: exactly once across a handshake, on one node and on several.

The log wrapper below lets a test act at the two points where the classic
mistakes go wrong (see the essay in trio_reconnect/server/_resume.py):

* right after the handshake's read returns, and before the handshake goes on
  (events appended here are missed by a server that registers after reading);
* between the fan-out's tail read and its feeding the queues (a fan-out held
  here is behind the handshake's ``ready``; a server that purges the queue
  once at ``ready`` instead of filtering for good sends those events twice).

Each test states the exact id sequence the client must see.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from tests.support.server_clients import connect, handshake, ids, receive_json, resumed
from trio_reconnect import Backoff, Gap, ServerEvent, Snapshot, open_reconnecting_websocket
from trio_reconnect.server import LoggedEvent, LogRead, ReconnectServer, ReplayLog
from trio_reconnect.testing import MemoryNetwork

Hook = Callable[[], Awaitable[None]]


@attrs.define(eq=False)
class ScriptedLog:
    """A :class:`ReplayLog` whose reads and tails stop where the test says."""

    inner: ReplayLog
    #: Awaited after each handshake read (``read_after``) has its answer.
    after_read: Hook | None = None
    #: While set, a tail read that found events waits for this event before returning.
    hold_tail: trio.Event | None = None
    reads: int = 0
    tails_returned: int = 0

    async def append(self, data: Any) -> str:
        return await self.inner.append(data)

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        read = await self.inner.read_after(event_id, limit=limit)
        self.reads += 1
        if self.after_read is not None:
            await self.after_read()
        return read

    async def newest(self) -> str | None:
        return await self.inner.newest()

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        events = await self.inner.tail(after, limit=limit, block=block)
        if events and self.hold_tail is not None:
            await self.hold_tail.wait()
        self.tails_returned += 1
        return events


def numbers(frames: list[dict[str, Any]]) -> list[int]:
    return [int(i) for i in ids(frames)]


async def live(ws: Any, count: int) -> list[int]:
    return [int((await receive_json(ws))["id"]) for _ in range(count)]


async def test_events_appended_right_after_the_read_are_not_lost(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # Mistake (a): reading first and registering second, with a checkpoint in
    # between, loses the events appended (and fed) in between: a gap.
    log = ScriptedLog(ReplayLog(start=1))
    for n in range(3):
        log.inner.append_nowait(n)  # 1, 2, 3
    server = ReconnectServer(log, rng=random.Random(0))

    async def append_and_let_the_fanout_feed_them() -> None:
        log.after_read = None
        for n in range(3):
            await log.inner.append(n)  # 4, 5, 6: after the read's newest (3)
        await wait_all_tasks_blocked()  # the fan-out has read and fed them
        assert server.statistics().events_published == 0  # appended behind its back

    with trio.fail_after(10):
        ws = await connect(nursery, server)
        await wait_all_tasks_blocked()  # the fan-out stands at 3
        log.after_read = append_and_let_the_fanout_feed_them
        frames = await handshake(ws, "1")
        assert numbers(frames) == [2, 3]
        assert frames[-1] == {"type": "ready", "id": "3", "lost": False}
        assert await live(ws, 3) == [4, 5, 6]
        await server.publish("seven")
        assert await live(ws, 1) == [7]


async def test_a_fanout_behind_ready_sends_nothing_twice(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # Mistake (b): purging the queue once at ``ready`` misses the events the
    # lagging fan-out feeds later, and sends them again: duplicates.
    log = ScriptedLog(ReplayLog(start=1))
    server = ReconnectServer(log, rng=random.Random(0))
    with trio.fail_after(10):
        ws = await connect(nursery, server)
        await wait_all_tasks_blocked()  # the fan-out stands at None (empty log)
        held = trio.Event()
        log.hold_tail = held
        for n in range(4):
            await server.publish(n)  # 1..4: read by the fan-out, held before feeding
        await wait_all_tasks_blocked()
        frames = await handshake(ws, None)
        # The handshake read the log after registering: it replays 1..4 itself.
        assert numbers(frames) == [1, 2, 3, 4]
        assert frames[-1] == {"type": "ready", "id": "4", "lost": False}
        (client,) = server.clients
        assert client.statistics().queued == 0  # nothing to purge at ready
        log.hold_tail = None
        held.set()  # now the fan-out feeds 1..4 (and 5), after ready
        await server.publish("five")
        assert await live(ws, 1) == [5]
        await wait_all_tasks_blocked()
        assert client.statistics().events_sent == 1
        await server.publish("six")
        assert await live(ws, 1) == [6]


async def test_a_fanout_far_behind_a_replay_and_events_during_it(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # Both at once: the fan-out is held while events are appended before and
    # after the handshake's read; the client sees each exactly once, in order.
    log = ScriptedLog(ReplayLog(start=1))
    for n in range(5):
        log.inner.append_nowait(n)  # 1..5
    server = ReconnectServer(log, rng=random.Random(0))
    with trio.fail_after(10):
        ws = await connect(nursery, server)
        await wait_all_tasks_blocked()  # the fan-out stands at 5
        held = trio.Event()
        log.hold_tail = held
        await server.publish("six")  # read by the fan-out, held

        async def more() -> None:
            log.after_read = None
            await server.publish("seven")  # after the read (newest 6)

        log.after_read = more
        frames = await handshake(ws, "2")
        assert numbers(frames) == [3, 4, 5, 6]
        held.set()
        log.hold_tail = None
        await server.publish("eight")
        assert await live(ws, 2) == [7, 8]
        await wait_all_tasks_blocked()
        assert server.clients[0].statistics().events_sent == 2


async def test_snapshot_ahead_of_a_lagging_fanout(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # The snapshot is taken at 6, past the read (3); the fan-out, held, feeds
    # 4..6 only after ready: the filter (covered = 6) drops them.
    log = ScriptedLog(ReplayLog(start=1))
    for n in range(3):
        log.inner.append_nowait(n)
    held = trio.Event()

    async def snapshot() -> tuple[str | None, Any]:
        log.hold_tail = held
        for n in range(3):
            await log.inner.append(n)  # 4, 5, 6
        return await log.newest(), "state at 6"

    server = ReconnectServer(log, snapshot=snapshot, rng=random.Random(0))
    with trio.fail_after(10):
        ws = await connect(nursery, server)
        await wait_all_tasks_blocked()
        frames = await handshake(ws, None)
        assert frames == [
            {"type": "snapshot", "id": "6", "data": "state at 6"},
            {"type": "ready", "id": "6", "lost": False},
        ]
        log.hold_tail = None
        held.set()
        await server.publish("seven")
        assert await live(ws, 1) == [7]


async def test_a_snapshot_of_an_id_the_log_never_issued_is_lost(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    log = ReplayLog(start=1)
    for n in range(3):
        log.append_nowait(n)

    async def snapshot() -> tuple[str | None, Any]:
        return "99", "from some other log"

    server = ReconnectServer(log, snapshot=snapshot, rng=random.Random(0))
    with trio.fail_after(10):
        ws = await connect(nursery, server)
        frames = await handshake(ws, None)
        assert frames == [{"type": "ready", "id": "3", "lost": True}]
        await server.publish("four")
        assert await live(ws, 1) == [4]


# ------------------------------------------------------------- several nodes


@attrs.define(eq=False)
class LaggingView:
    """One node's view of a shared log: every read takes a random round trip.

    So a node's fan-out is sometimes ahead of a handshake's read and
    sometimes behind its ``ready``: the two places where a wrong order loses
    or repeats events.
    """

    shared: ReplayLog
    rng: random.Random
    max_lag: float

    async def append(self, data: Any) -> str:
        return await self.shared.append(data)

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        await trio.sleep(self.rng.random() * self.max_lag)  # the request's way to the store
        read = await self.shared.read_after(event_id, limit=limit)
        await trio.sleep(self.rng.random() * self.max_lag)  # and the answer's way back
        return read

    async def newest(self) -> str | None:
        return await self.shared.newest()

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        events = await self.shared.tail(after, limit=limit, block=block)
        if events:
            await trio.sleep(self.rng.random() * self.max_lag)  # behind the others
        return events


async def test_clients_hopping_between_three_nodes_lose_and_repeat_nothing(
    autojump_clock: MockClock,
) -> None:
    rng = random.Random(7)
    network = MemoryNetwork(random=random.Random(8), latency=0.002, jitter=0.002)
    shared = ReplayLog(max_events=100_000, start=1)
    names = ["node0", "node1", "node2"]
    servers = [
        ReconnectServer(
            LaggingView(shared, random.Random(i), max_lag=0.05), rng=random.Random(10 + i)
        )
        for i in range(len(names))
    ]
    clients, events = 16, 600
    seen: dict[int, list[str]] = {n: [] for n in range(clients)}
    others: dict[int, list[object]] = {n: [] for n in range(clients)}
    published: list[str] = []
    done = trio.Event()

    async def client(n: int) -> None:
        picker = random.Random(100 + n)

        def url() -> str:
            return f"ws://{picker.choice(names)}/"

        async with open_reconnecting_websocket(
            url,
            open_stream=network.client(f"c{n}"),
            random=random.Random(n),
            backoff=Backoff(initial=0.02, max_delay=0.2),
            max_attempts=None,
            # The client drops a duplicate id it still remembers; with a window
            # of one, every duplicate the servers send shows in ``seen``.
            dedupe_window=1,
        ) as ws:
            async for item in ws:
                if isinstance(item, ServerEvent):
                    seen[n].append(item.id)
                    if item.id == published[-1] and done.is_set():
                        return
                else:
                    others[n].append(item)

    async def chaos() -> None:
        while not done.is_set():
            await trio.sleep(rng.uniform(0.002, 0.01))
            victim = f"c{rng.randrange(clients)}"
            if rng.random() < 0.5:
                network.reset(victim)
            else:
                network.drop(victim)
            if rng.random() < 0.01:
                nursery.start_soon(rng.choice(servers).restart)

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for name, server in zip(names, servers, strict=True):
                await nursery.start(server.serve_listeners, [network.listen(name, 80)])
            async with trio.open_nursery() as crowd:
                for n in range(clients):
                    crowd.start_soon(client, n)
                nursery.start_soon(chaos)
                for i in range(events):
                    published.append(await rng.choice(servers).publish(i))
                    await trio.sleep(rng.uniform(0.0, 0.02))
                done.set()
                published.append(await servers[0].publish("last"))  # every client stops here
            nursery.cancel_scope.cancel()

    handshakes = [s.statistics() for s in servers]
    hops = sum(h.fresh + h.replayed + h.snapshots + h.lost for h in handshakes) - clients
    # A floor that says the chaos did its work, not an exact count: trio breaks
    # ties between equal deadlines by id(), so the count moves a little from
    # run to run and between the write paths (about 200-280 hops seen).
    assert hops >= 150, hops
    assert all(h.replayed >= 50 for h in handshakes)  # every node resumed clients
    for n in range(clients):
        assert others[n] == [], n  # no Gap, no Snapshot: the log held everything
        assert seen[n] == published, (n, len(seen[n]), len(published))
    assert not any(isinstance(x, Gap | Snapshot) for xs in others.values() for x in xs)


async def test_the_fanout_passes_from_a_closing_connection_to_the_next(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    # Served only through serve_stream, the server has no task of its own:
    # the first connection runs the fan-out, and when it ends another takes
    # over from the same position, losing and repeating nothing.
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(0))
    with trio.fail_after(10):
        first, _ = await resumed(nursery, server, None)
        second, _ = await resumed(nursery, server, None)
        await server.publish("one")
        assert await live(first, 1) == [1]
        assert await live(second, 1) == [1]
        await first.aclose()
        await server.publish("two")  # published while the fan-out changes hands
        await wait_all_tasks_blocked()
        assert [c.statistics().state.value for c in server.clients] == ["ready"]
        await server.publish("three")
        assert await live(second, 2) == [2, 3]
        # A connection that arrives later is fed too.
        third, frames = await resumed(nursery, server, "3")
        assert frames == [{"type": "ready", "id": "3", "lost": False}]
        await second.aclose()
        await server.publish("four")
        assert await live(third, 1) == [4]
