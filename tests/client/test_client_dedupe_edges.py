"""Edge cases of the client's dedupe window (PROTOCOL.md section 2, step 5).

tests/client/test_client_ids.py covers the window's three rules; these try to break
them: an id the application passed in replayed twice and then sent live
again, a snapshot at an id the client saw before the server lost its log, a
snapshot or gap followed by the very id it stands at (the off-by-one that
the persisted ``last_event_id`` is guarded against), a gap followed by a
replay of ids seen before it, and the window's size boundary.
"""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
import trio_websocket

import trio_reconnect as tr
from tests.support.fake_server import (
    FakeServer,
    accept_and_resume,
    collect,
    send_event,
    send_ready,
    send_snapshot,
    serve_then_restart,
)

PLANNED = json.dumps({"retryAfter": 0})


async def test_a_given_last_event_id_replayed_twice_and_sent_live_is_dropped_each_time(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        assert frame["lastEventId"] == "7"
        await send_event(ws, "7", "seven")
        await send_event(ws, "7", "seven again")
        await send_event(ws, "8", "eight")
        await send_ready(ws, "8")
        await send_event(ws, "7", "seven, live")
        await send_event(ws, "8", "eight, live")
        await send_event(ws, "9", "nine")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 2, last_event_id="7")
    assert items == [tr.ServerEvent("8", "eight"), tr.ServerEvent("9", "nine")]


async def test_a_snapshot_at_an_id_seen_before_the_restart(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The client saw 1..5; the server lost its log, reissues 1..3 and sends a
    # snapshot at "3", then the new 4 and 5: all delivered, though seen before.
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        if n == 1:
            await serve_then_restart(ws, 5)
            return
        assert frame["lastEventId"] == "5"
        await send_snapshot(ws, "3", "new state")
        await send_event(ws, "4", "new 4")
        await send_ready(ws, "4")
        await send_event(ws, "5", "new 5")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 8)
    assert items[5:] == [
        tr.Snapshot("3", "new state"),
        tr.ServerEvent("4", "new 4"),
        tr.ServerEvent("5", "new 5"),
    ]


async def test_the_event_a_snapshot_stands_at_is_not_delivered_after_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # State as of 6 includes event 6: a server that (off by one) sends it
    # after the snapshot, live or replayed on the next connection, must not
    # get it applied twice. The snapshot's id counts as delivered, like an
    # id the application passes in.
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        if n == 1:
            await send_snapshot(ws, "6", "state at 6")
            await send_ready(ws, "6")
            await send_event(ws, "6", "six, live")
            await send_event(ws, "7", "seven")
            await ws.aclose(1012, PLANNED)
            return
        assert frame["lastEventId"] == "7"
        await send_event(ws, "6", "six, replayed")
        await send_event(ws, "7", "seven, replayed")
        await send_event(ws, "8", "eight")
        await send_ready(ws, "8")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 3)
    assert items == [
        tr.Snapshot("6", "state at 6"),
        tr.ServerEvent("7", "seven"),
        tr.ServerEvent("8", "eight"),
    ]


async def test_the_ready_id_of_a_gap_is_not_delivered_after_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Gap(5, 9): events up to and including 9 are gone, the next item is
    # newer than 9 (Gap's docstring). A 9 sent after it is not delivered.
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        assert frame["lastEventId"] == "5"
        await send_ready(ws, "9", lost=True)
        await send_event(ws, "9", "nine")
        await send_event(ws, "10", "ten")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 2, last_event_id="5")
    assert items == [tr.Gap("5", "9"), tr.ServerEvent("10", "ten")]


async def test_a_gap_then_a_replay_of_ids_seen_before_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Connection 2 ends in a gap (the new incarnation's ready id is 1); the
    # replay on connection 3 overlaps connection 2's live events only: the
    # ids seen before the gap (1..4) are new events again, each once.
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        if n == 1:
            await send_ready(ws, None)
            for i in range(1, 5):
                await send_event(ws, str(i), f"old {i}")
            await ws.aclose(1012, PLANNED)
            return
        if n == 2:
            assert frame["lastEventId"] == "4"
            await send_ready(ws, "1", lost=True)
            await send_event(ws, "2", "new 2")
            await send_event(ws, "3", "new 3")
            await ws.aclose(1012, PLANNED)
            return
        assert frame["lastEventId"] == "3"
        for i in range(2, 6):
            await send_event(ws, str(i), f"new {i}")
        await send_ready(ws, "5")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 9)
    assert items == [
        *(tr.ServerEvent(str(i), f"old {i}") for i in range(1, 5)),
        tr.Gap("4", "1"),
        *(tr.ServerEvent(str(i), f"new {i}") for i in range(2, 6)),
    ]


@pytest.mark.parametrize("window", [3, 4, 5])
async def test_the_window_holds_exactly_its_size(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, window: int
) -> None:
    # After 1..4, a replay of 1..4 again. A window of 4 or more drops all of
    # them. A window of 3 has forgotten 1, and delivering 1 again pushes 2
    # out, and so on: all four are delivered again (the window keeps the
    # most recent deliveries, not the highest ids).
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        if n == 1:
            await send_ready(ws, None)
            for i in range(1, 5):
                await send_event(ws, str(i), i)
            await ws.aclose(1012, PLANNED)
            return
        for i in range(1, 5):
            await send_event(ws, str(i), i)
        await send_ready(ws, "4")
        await send_event(ws, "5", 5)
        await trio.sleep_forever()

    again = [1, 2, 3, 4] if window < 4 else []
    items = await collect(FakeServer(nursery, handler), 5 + len(again), dedupe_window=window)
    delivered = [int(item.id) for item in items if isinstance(item, tr.ServerEvent)]
    assert delivered == [1, 2, 3, 4, *again, 5]
