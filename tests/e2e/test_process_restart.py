"""A deploy, for real: ``python -m trio_reconnect serve`` killed with SIGKILL and started again.

The client runs in this process, over loopback, with the real clock. The new
process knows nothing of the old one (its log starts empty), so the client's
``lastEventId`` is unknown there: the client gets one ``Gap`` (``serve`` has no
snapshot) and then every event the new process publishes after the client is
ready again. Before ids were drawn from the clock, the new process reused the
ids "1", "2", ... that were still in the client's dedupe window, and the
client dropped those events silently (issue 9).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio

import trio_reconnect as tr

ROOT = Path(__file__).resolve().parents[2]
#: Seconds between the ticks ``serve`` publishes: fast, so that the old process
#: has issued many more ids than the new one has when the client is back.
INTERVAL = 0.01
#: Events the client receives from the first process before it is killed.
BEFORE_KILL = 60
#: Live events from the second process, after the client is ready there, that must all arrive.
AFTER_READY = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_serve(port: int, processes: list[trio.Process]) -> trio.Process:
    """Start ``serve`` on ``port`` and return once it listens.

    The process goes into ``processes`` at once, so that the test's cleanup
    kills it even if it never gets to listen.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "trio_reconnect", "serve", "--port", str(port)]
    process = await trio.lowlevel.open_process(
        [*command, "--interval", str(INTERVAL)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=env,
    )
    processes.append(process)
    assert process.stdout is not None
    seen = b""
    while b"serving" not in seen:
        chunk = await process.stdout.receive_some()
        assert chunk, f"serve exited before listening: {seen!r}"
        seen += chunk
    return process


async def test_every_event_after_a_process_restart_is_delivered() -> None:
    port = free_port()
    transitions: list[tr.Transition] = []
    ready_ids: list[str | None] = []  # last_event_id at each OPEN: the ready frame's id
    holder: list[tr.ReconnectingWebSocket] = []

    def on_transition(transition: tr.Transition) -> None:
        transitions.append(transition)
        if transition.state is tr.ConnectionState.OPEN:
            ready_ids.append(holder[0].last_event_id)

    processes: list[trio.Process] = []
    try:
        with trio.fail_after(60):
            await start_serve(port, processes)
            async with tr.open_reconnecting_websocket(
                f"ws://127.0.0.1:{port}/",
                backoff=tr.Backoff(initial=0.02, max_delay=0.1),
                # Never give up: a loaded machine may take seconds to start
                # the new process (fail_after bounds the test instead).
                max_attempts=None,
                on_transition=on_transition,
                ping_interval=None,
            ) as ws:
                holder.append(ws)
                first: list[tr.ServerEvent] = []
                while len(first) < BEFORE_KILL:
                    item = await ws.get_message()
                    assert isinstance(item, tr.ServerEvent), item
                    first.append(item)
                processes[0].send_signal(signal.SIGKILL)
                await processes[0].wait()
                await start_serve(port, processes)

                # Everything until the new connection's ready: the old
                # process's last events (already buffered), then one Gap.
                markers: list[tr.Gap | tr.Snapshot] = []
                while not markers:
                    item = await ws.get_message()
                    if isinstance(item, tr.Gap | tr.Snapshot):
                        markers.append(item)
                    else:
                        assert isinstance(item, tr.ServerEvent), item
                assert len(ready_ids) == 2
                ready_id = ready_ids[1]
                assert ready_id is not None
                # Every event after the ready id, none skipped, no second marker.
                after: list[tr.ServerEvent] = []
                while len(after) < AFTER_READY:
                    item = await ws.get_message()
                    assert isinstance(item, tr.ServerEvent), (item, after)
                    after.append(item)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(5):
                await process.wait()

    assert len(markers) == 1
    ids = [int(event.id) for event in after]
    assert ids == list(range(int(ready_id) + 1, int(ready_id) + 1 + AFTER_READY))
    ticks = [event.data["tick"] for event in after]
    assert ticks == list(range(ticks[0], ticks[0] + AFTER_READY))
    # The new process's ids start above every id the old one issued.
    assert ids[0] > int(first[-1].id)
    # The client was ready on the new process before the events above.
    assert [t.state for t in transitions].count(tr.ConnectionState.OPEN) == 2
