"""The client's dedupe window across snapshots, gaps and a persisted id (PROTOCOL.md section 2).

The window drops an event whose id was delivered recently. It starts with the
``last_event_id`` the application passes in, and it is emptied whenever the
client delivers a ``Snapshot`` or a ``Gap``: the server's order starts again
from that ``ready`` id, so a server in another language that reissues ids
after losing its log does not get its new events swallowed.
"""

from __future__ import annotations

import json

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


async def test_gap_empties_the_window_so_reissued_ids_are_delivered(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        if n == 1:
            await serve_then_restart(ws, 5)
            return
        # A new incarnation that lost its log and counts from 1 again.
        assert frame["lastEventId"] == "5"
        await send_ready(ws, "2", lost=True)
        for i in range(3, 7):
            await send_event(ws, str(i), f"new {i}")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 10)
    assert items[5] == tr.Gap("5", "2")
    assert items[6:] == [tr.ServerEvent(str(i), f"new {i}") for i in range(3, 7)]


async def test_snapshot_empties_the_window(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        if n == 1:
            await serve_then_restart(ws, 5)
            return
        await send_snapshot(ws, "2", "state")
        await send_event(ws, "3", "new 3")  # replayed after the snapshot
        await send_ready(ws, "3")
        await send_event(ws, "3", "new 3")  # the snapshot's order: a duplicate
        await send_event(ws, "4", "new 4")
        await send_event(ws, "5", "new 5")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 9)
    assert items[5:] == [
        tr.Snapshot("2", "state"),
        tr.ServerEvent("3", "new 3"),
        tr.ServerEvent("4", "new 4"),
        tr.ServerEvent("5", "new 5"),
    ]


async def test_window_starts_with_the_given_last_event_id(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        assert frame["lastEventId"] == "7"
        await send_event(ws, "7", "seven again")  # off by one: 7 was processed
        await send_event(ws, "8", "eight")
        await send_ready(ws, "8")
        await send_event(ws, "9", "nine")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 2, last_event_id="7")
    assert items == [tr.ServerEvent("8", "eight"), tr.ServerEvent("9", "nine")]


async def test_window_keeps_dropping_duplicates_across_a_plain_replay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Without a snapshot or gap the window is kept: a replay that overlaps
    # what was delivered is still deduplicated.
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        if n == 1:
            await send_ready(ws, None)
            for i in range(1, 4):
                await send_event(ws, str(i), i)
            await ws.aclose(1012, json.dumps({"retryAfter": 0}))
            return
        for i in range(2, 5):
            await send_event(ws, str(i), i)
        await send_ready(ws, "4")
        await trio.sleep_forever()

    items = await collect(FakeServer(nursery, handler), 4)
    assert items == [tr.ServerEvent(str(i), i) for i in range(1, 5)]


def test_connect_command_says_exactly_what_a_gap_lost() -> None:
    from trio_reconnect._tools._connect import describe_gap

    assert describe_gap(tr.Gap("22", "1733000000000005")) == (
        "gap: the events after 22 up to and including 1733000000000005 were lost"
    )
    assert describe_gap(tr.Gap(None, "9")) == "gap: the events up to and including 9 were lost"
    assert describe_gap(tr.Gap("22", None)) == (
        "gap: the events after 22 were lost (the server holds none since)"
    )
