"""Leaving the block is bounded by the server's close reply, whatever the client's state.

Real loopback TCP: the server sends ``ready`` the moment the resume frame
arrives, and the application leaves at that moment (or a little later), so
that over the repetitions ``ready`` lands before, during and after the
close. Each exit must take about a round trip, never ``close_timeout``
(5 s): a ``ready`` that arrived while the client was closing used to make
the attempt raise, which killed trio-websocket's reader before the close
reply was read (the exit then waited ``close_timeout``).
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
import trio
import trio_websocket

import trio_reconnect as tr

REPETITIONS = 30
#: An exit slower than this waited for close_timeout (5 s), not a round trip.
PROMPT = 1.0


async def test_leaving_while_ready_is_in_flight_is_prompt(nursery: trio.Nursery) -> None:
    resumed = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        nonlocal resumed
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            ws = await request.accept()
            await ws.get_message()  # resume
            resumed.set()
            await ws.send_message(json.dumps({"type": "ready", "id": None, "lost": False}))
            await ws.get_message()  # until the close

    server: trio_websocket.WebSocketServer = await nursery.start(
        trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None
    )
    exits: list[float] = []
    with trio.fail_after(REPETITIONS * 6):
        for i in range(REPETITIONS):
            resumed = trio.Event()
            async with tr.open_reconnecting_websocket(
                f"ws://127.0.0.1:{server.port}/", ping_interval=None
            ):
                await resumed.wait()
                if i % 3:
                    await trio.sleep(0.0002 * (i % 3))
                started = time.perf_counter()
            exits.append(time.perf_counter() - started)
    assert max(exits) < PROMPT, sorted(exits)


async def test_a_ctrl_c_in_one_of_the_clients_tasks_leaves_bare(nursery: trio.Nursery) -> None:
    """trio delivers Ctrl-C in whichever task runs: in the client's own it
    must still leave the block as a bare KeyboardInterrupt (the README's
    ``except KeyboardInterrupt`` around ``trio.run``), not inside a group."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            ws = await request.accept()
            await ws.get_message()  # resume
            await ws.send_message(json.dumps({"type": "ready", "id": None, "lost": False}))
            await ws.get_message()  # until the close

    server: trio_websocket.WebSocketServer = await nursery.start(
        trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None
    )

    def on_transition(change: tr.Transition) -> None:
        if change.state is tr.ConnectionState.OPEN:
            raise KeyboardInterrupt  # as trio raises it inside the supervisor's task

    # pytest.raises checks the type: a group holding the interrupt fails it.
    with trio.fail_after(10), pytest.raises(KeyboardInterrupt):
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{server.port}/", ping_interval=None, on_transition=on_transition
        ):
            await trio.sleep_forever()
