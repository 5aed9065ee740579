"""Against a third-party server in a subprocess, killed and restarted under a busy client.

The server (``tests/support/third_party_server.py``, the ``websockets``
package) wants ``auth:<token>`` then ``subscribe`` first on every
connection, and closes with 4003 on any other first frame. The client does
that handshake in ``on_connect`` (``resume=False``) and sends an order every
2 ms from another task. The server is SIGKILLed and SIGTERMed and started
again, several times. On every connection the server recorded, the first
frames must be the handshake's (no order precedes them), no order may arrive
twice, and the client must survive (a 4003 would make it fail for good).
"""

from __future__ import annotations

import collections
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio

import trio_reconnect as tr

SERVER = Path(__file__).resolve().parent.parent / "support" / "third_party_server.py"
#: Seconds between orders.
EVERY = 0.002
#: Seconds each server process lives before it is stopped.
LIFETIME = 0.6
#: How each process ends, in turn.
STOPS = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start(port: int, frames: Path) -> trio.Process:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(SERVER), str(port), str(frames)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(20):
        while b"serving" not in seen:
            chunk = await process.stdout.receive_some()
            assert chunk, "the server exited before listening"
            seen += chunk
    return process


async def auth_then_subscribe(conn: tr.Connection) -> None:
    await conn.send_message("auth:token")
    assert await conn.get_message() == "auth-ok"
    await conn.send_message("subscribe")
    assert await conn.get_message() == "subscribed"


async def test_no_frame_out_of_turn_across_kills_and_restarts(tmp_path: Path) -> None:
    port = free_port()
    frames = tmp_path / "frames.jsonl"
    returned: list[int] = []
    opens = 0

    def count_opens(t: tr.Transition) -> None:
        nonlocal opens
        opens += t.state is tr.ConnectionState.OPEN

    async def orders(ws: tr.ReconnectingWebSocket) -> None:
        for i in range(10**9):
            await ws.send_message(f"order-{i}")
            returned.append(i)
            await trio.sleep(EVERY)

    process = await start(port, frames)
    try:
        with trio.fail_after(120):
            async with (
                tr.open_reconnecting_websocket(
                    f"ws://127.0.0.1:{port}/",
                    resume=False,
                    on_connect=auth_then_subscribe,
                    backoff=tr.Backoff(initial=0.01, max_delay=0.05),
                    max_attempts=None,
                    on_transition=count_opens,
                ) as ws,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(orders, ws)
                for stop in STOPS:
                    await trio.sleep(LIFETIME)
                    process.send_signal(stop)
                    await process.wait()
                    process = await start(port, frames)
                while opens < len(STOPS) + 1:
                    await trio.sleep(0.01)
                await trio.sleep(LIFETIME)
                nursery.cancel_scope.cancel()
            assert ws.state is tr.ConnectionState.CLOSED  # left the block, not FAILED
    finally:
        process.kill()
        await process.wait()

    connections: dict[tuple[int, int], list[str]] = collections.defaultdict(list)
    for line in frames.read_text().splitlines():
        record = json.loads(line)
        connections[record["pid"], record["conn"]].append(record["frame"])
    out_of_turn = sum(
        1
        for got in connections.values()
        for frame, expected in zip(got, ["auth:token", "subscribe"], strict=False)
        if frame != expected
    )
    received = [int(f[6:]) for got in connections.values() for f in got if f.startswith("order-")]
    duplicates = len(received) - len(set(received))
    lost = len(set(returned) - set(received))
    print(
        f"\nthird-party server: {len(STOPS) + 1} processes, {len(connections)} connections, "
        f"{len(received)} orders received, {len(returned)} returned, "
        f"{out_of_turn} frames out of turn, {duplicates} duplicates, "
        f"{lost} returned but lost at a kill"
    )
    assert len({pid for pid, _ in connections}) == len(STOPS) + 1
    assert len(connections) >= len(STOPS) + 1
    assert out_of_turn == 0
    assert duplicates == 0
    assert len(received) > 100
