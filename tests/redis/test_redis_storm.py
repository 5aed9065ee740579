"""A reconnect storm against one Redis-backed node: a queue of reads is not Redis being down.

What went wrong (measured; docs/explanation/server.md, "A storm of handshake reads"):
coredis 6.9 multiplexes commands on one pooled connection, and that
connection's writer task sends only once no new command has arrived during
its last checkpoint. While a loaded node starts a handshake read in every
scheduler pass, the writer never sends; after the log's ``timeout`` every
read fails "no answer", the client is replaced (failing the others in
flight on it), and the node treats Redis as down. Redis answered none of
them because it was never asked.

The fix bounds the commands in flight per client (``max_in_flight``), so
the trickle stops once that many wait, and the wait for a turn is not on
the ``timeout`` clock. These tests run the trickle for certain: each pass
of the scheduler blocks the loop a few milliseconds (``time.sleep``, as a
loaded node's other handshakes do with the CPU), so the trickle lasts at
least ``READERS`` times that, several times the log's ``timeout``, however
fast the machine. They assert on outcomes and counters, never on times.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
from collections import Counter
from typing import Any

import pytest
import trio

from trio_reconnect.server import LogUnavailableError, ReconnectServer
from trio_reconnect.server.redis import RedisStreamLog
from trio_reconnect.testing._redis_server import RedisServer

GUARD = 60.0
STREAM = "storm"
#: The log's per-command bound in these tests (2 s by default). Not shorter:
#: under coverage, in a long run, one pass of 200 handshakes can take 100 ms,
#: and 0.5 s timed out an answered read once in CI.
TIMEOUT = 1.5
#: Seconds each scheduler pass blocks the loop: READERS * PASS_WORK > 3 * TIMEOUT.
PASS_WORK = 0.016
READERS = 300
CLIENTS = 200


async def _hog(stop: trio.Event) -> None:
    """Block the loop ``PASS_WORK`` seconds in every scheduler pass until ``stop``."""
    while not stop.is_set():
        # The loop's other work (blocking on purpose): nothing else runs meanwhile.
        time.sleep(PASS_WORK)  # noqa: ASYNC251
        await trio.lowlevel.checkpoint()


async def test_a_steady_trickle_of_reads_is_answered(redis_server: RedisServer) -> None:
    errors: list[LogUnavailableError] = []
    held: list[int] = []
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM, timeout=TIMEOUT) as log:
            first = await log.append("x")

            async def reader(n: int) -> None:
                for _ in range(n):  # reader n starts in the n-th scheduler pass
                    await trio.lowlevel.checkpoint()
                try:
                    read = await log.read_after(None, limit=10)
                except LogUnavailableError as exc:
                    errors.append(exc)
                else:
                    assert read.newest == first
                    held.append(len(read.events or ()))

            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_hog, stop)
                async with trio.open_nursery() as readers:
                    for n in range(READERS):
                        readers.start_soon(reader, n)
                stop.set()
            generations = log.client_generations
    assert errors == []
    assert held == [1] * READERS
    assert generations == (1, 1)  # no client was replaced


def _masked(payload: bytes) -> bytes:
    """One client-to-server text frame (masked), for a payload under 126 bytes."""
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def _frames(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes]:
    """The next server frame ``(opcode, payload)`` (unmasked, unfragmented, under 64 KiB)."""
    while True:
        if len(buffer) >= 2:
            length, head = buffer[1] & 0x7F, 2
            if length == 126 and len(buffer) >= 4:
                length, head = int.from_bytes(buffer[2:4], "big"), 4
            if length < 126 and len(buffer) >= head + length:
                frame = (buffer[0] & 0x0F, bytes(buffer[head : head + length]))
                del buffer[: head + length]
                return frame
        chunk = await stream.receive_some(65536)
        if not chunk:
            return (0x8, b"")  # as a close: the server went away
        buffer += chunk


async def _attempt(port: int, last_event_id: str | None) -> str:
    """One connection and resume handshake, and how it ended.

    Returns:
        ``"ready"``, the HTTP status of a refusal (``"503"``), or ``"close CODE REASON"``.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        received = bytearray()
        while b"\r\n\r\n" not in received:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return "eof"
            received += chunk
        head, _, rest = bytes(received).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            return head[9:12].decode()
        resume = {"type": "resume", "lastEventId": last_event_id}
        await stream.send_all(_masked(json.dumps(resume).encode()))
        buffer = bytearray(rest)
        while True:
            opcode, payload = await _frames(stream, buffer)
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                return f"close {code} {json.loads(payload[2:] or b'{}').get('reason')}"
            if opcode == 0x1 and json.loads(payload)["type"] == "ready":
                return "ready"
    finally:
        await trio.aclose_forcefully(stream)


async def test_a_storm_of_handshakes_on_a_loaded_node_never_looks_like_redis_down(
    redis_server: RedisServer,
) -> None:
    first: list[str] = []
    outcomes: Counter[str] = Counter()
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM, timeout=TIMEOUT) as log:
            server = ReconnectServer(log, rng=random.Random(0), ping_interval=None)
            async with trio.open_nursery() as nursery:
                listener = await nursery.start(server.serve, "127.0.0.1", 0)
                await server.publish("before")
                stop = trio.Event()
                nursery.start_soon(_hog, stop)

                async def client() -> None:
                    # A client refused or closed with a hint comes back (at
                    # once: the test is about what the node says, not when).
                    while True:
                        outcome = await _attempt(listener.port, None)
                        outcomes[outcome] += 1
                        if outcome == "ready":
                            return
                        first.append(outcome)
                        if len(first) > CLIENTS:  # without the fix: stop, and report
                            return

                async with trio.open_nursery() as crowd:
                    for _ in range(CLIENTS):
                        crowd.start_soon(client)
                stop.set()
                stats = server.statistics()
                nursery.cancel_scope.cancel()
    # Every client resumed; none was refused or closed because of the log.
    assert outcomes["ready"] == CLIENTS, outcomes
    assert (stats.log_errors, stats.refused, stats.lost) == (0, 0, 0), (stats, outcomes)
    assert all(outcome == "close 1013 busy" for outcome in first), outcomes
    assert stats.replayed == CLIENTS


async def test_a_command_whose_client_is_replaced_under_it_is_unavailable(
    redis_server: RedisServer,
) -> None:
    # Found by the storm: a retired client fails the commands still running
    # on it with whatever coredis raises once its pool has exited (a
    # RuntimeError), which must be the outage it was retired for, not an
    # EventLogError that would escape the handshake.
    with trio.fail_after(GUARD):
        async with RedisStreamLog(redis_server.url, stream=STREAM) as log:
            store, owner = log._store, log._main
            pings = 0

            async def op(client: Any) -> None:
                nonlocal pings
                owner.retire(client)
                while True:  # works until the retired client has left, then raises
                    await client.ping()
                    pings += 1
                    await trio.sleep(0.001)

            with pytest.raises(LogUnavailableError, match="ping"):
                await store.call(owner, op, what="ping")
            assert await log.newest() is None  # its successor serves
            assert log.client_generations == (2, 1)
