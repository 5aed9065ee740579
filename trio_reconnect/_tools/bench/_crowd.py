"""The fan-out clients of ``python -m trio_reconnect bench``: raw websockets that count frames.

The clients live in the measuring process and are as cheap as a websocket
client can be, so that the figure is the server's fan-out and not the
clients' receiving: each is a raw TCP stream that did the HTTP upgrade and
sent a masked ``resume`` frame by hand, and then only walks the frame headers
of what arrives (64 KiB at a time) to count text frames, without decoding a
payload. A close frame from the server fails the run.

A :class:`Crowd` is the clients of one server: told to expect N more frames
(:meth:`Crowd.expect`), it waits until every client has them
(:meth:`Crowd.wait`) and returns each client's ``time.monotonic()`` at its
N-th frame.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Final

import attrs
import trio

from ...testing._pipe import OP_CLOSE, OP_TEXT, frame_at

__all__ = ["STEP_TIMEOUT", "Crowd", "FanoutError", "Hello", "channel_hello", "connect_all"]

#: Seconds a server process has to announce its port, a crowd to connect, a burst to arrive.
STEP_TIMEOUT: Final = 60.0
_RECEIVE_SIZE: Final = 65536
_RESUME: Final = json.dumps({"type": "resume", "lastEventId": None}).encode()


class FanoutError(RuntimeError):
    """A fan-out server did not start, or a client lost its connection."""


def _masked_text(payload: bytes) -> bytes:
    """One client-to-server text frame (clients must mask), for a payload under 126 bytes."""
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | OP_TEXT, 0x80 | len(payload)]) + mask + body


@attrs.define(eq=False)
class _Client:
    """A raw websocket client that counts the text frames it receives."""

    crowd: Crowd
    stream: trio.SocketStream
    buffer: bytearray
    #: Its place in the crowd (:func:`connect_all` sorts by it).
    index: int = 0
    frames: int = 0
    target: int = 1  # the handshake's frames: ``ready`` (and the channels' ``subscribed``)
    waiting: bool = True
    reached_at: float = 0.0

    async def run(self) -> None:
        try:
            await self._run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, FanoutError) as exc:
            self.crowd.fail(f"a {self.crowd.kind} client failed: {exc}")

    async def _run(self) -> None:
        buffer = self.buffer
        self._count()
        while True:
            chunk = await self.stream.receive_some(_RECEIVE_SIZE)
            if not chunk:
                raise FanoutError("the server closed the connection")
            buffer += chunk
            self._count()

    def _count(self) -> None:
        # Walk the frame headers; server frames are unmasked and, from these
        # servers, never fragmented.
        buffer = self.buffer
        offset = 0
        frames = 0
        while (frame := frame_at(buffer, offset)) is not None:
            opcode, start, end = frame
            if opcode == OP_TEXT:
                frames += 1
            elif opcode == OP_CLOSE:
                body = bytes(buffer[start:end])
                code = int.from_bytes(body[:2], "big") if len(body) >= 2 else None
                raise FanoutError(
                    f"closed by the server: {code} {body[2:].decode(errors='replace')}"
                )
            offset = end
        del buffer[:offset]
        self.frames += frames
        if self.waiting and self.frames >= self.target:
            self.waiting = False
            self.reached_at = time.monotonic()
            self.crowd.arrived()


@attrs.define(eq=False)
class Crowd:
    """The clients of one server, and the wait for all of them to reach their target."""

    kind: str
    clients: list[_Client] = attrs.field(factory=list)
    pending: int = 0
    error: str | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    #: ``time.monotonic()`` at the last :meth:`expect`.
    since: float = 0.0

    def expect(self, frames: int | Sequence[int]) -> None:
        """Wait for ``frames`` more on every client, or ``frames[i]`` on the i-th (0: none)."""
        counts = [frames] * len(self.clients) if isinstance(frames, int) else frames
        self.done = trio.Event()
        self.since = time.monotonic()
        self.pending = 0
        for client, count in zip(self.clients, counts, strict=True):
            client.waiting = count > 0
            client.target += count
            self.pending += client.waiting
        if not self.pending:
            self.done.set()

    def arrived(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.done.set()

    async def aclose(self) -> None:
        """Close every client's connection."""
        for client in self.clients:
            await trio.aclose_forcefully(client.stream)

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self.done.set()

    async def wait(self, what: str) -> list[float]:
        """Wait until every client reached its target; the arrival times of those that waited."""
        since = self.since
        with trio.move_on_after(STEP_TIMEOUT):
            await self.done.wait()
        if self.error is not None:
            raise FanoutError(self.error)
        if not self.done.is_set():
            raise FanoutError(
                f"{what}: {self.pending} of {len(self.clients)} {self.kind} clients "
                f"did not get every event within {STEP_TIMEOUT:g} s"
            )
        return [client.reached_at for client in self.clients if client.reached_at >= since]


@attrs.frozen
class Hello:
    """What a client sends after the upgrade, and how many text frames answer it."""

    frames: Sequence[bytes] = (_RESUME,)
    answers: int = 1


def channel_hello(index: int, channels: Sequence[str]) -> Hello:
    """A version 2 resume (``clientId`` ``bench-<index>``), then a ``subscribe`` per channel."""
    resume = {"type": "resume", "lastEventId": None, "clientId": f"bench-{index}"}
    frames = [json.dumps(resume).encode()]
    for channel in channels:
        frames.append(
            json.dumps({"type": "subscribe", "channel": channel, "lastEventId": None}).encode()
        )
    return Hello(tuple(frames), 1 + len(channels))


async def _connect(
    crowd: Crowd, port: int, nursery: trio.Nursery, index: int, hello: Hello
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await _upgrade(crowd, port, stream, nursery, index, hello)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _upgrade(
    crowd: Crowd,
    port: int,
    stream: trio.SocketStream,
    nursery: trio.Nursery,
    index: int,
    hello: Hello,
) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await stream.send_all(request.encode())
    received = bytearray()
    while b"\r\n\r\n" not in received:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise FanoutError(f"the {crowd.kind} server closed a connection during its upgrade")
        received += chunk
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise FanoutError(f"the {crowd.kind} server refused the upgrade: {head[:60]!r}")
    await stream.send_all(b"".join(_masked_text(frame) for frame in hello.frames))
    client = _Client(crowd, stream, bytearray(rest), index=index, target=hello.answers)
    crowd.clients.append(client)
    crowd.pending += 1
    nursery.start_soon(client.run)


async def connect_all(
    crowd: Crowd,
    port: int,
    count: int,
    nursery: trio.Nursery,
    hello: Callable[[int], Hello] | None = None,
    *,
    at_once: int | None = None,
) -> None:
    """Connect ``count`` clients (the i-th sends ``hello(i)``); wait for their handshakes.

    ``at_once``: connect that many, wait for their answers, then the next
    ones (``None``: all at once).
    """
    # Every client opens its connection at once: a deploy's reconnect storm.
    # (It used to be 10 at a time: with 50 at once on a loaded 2-core machine
    # the Redis node's handshake reads went unsent by coredis's writer, timed
    # out and made the node refuse clients as if Redis were down; the Redis
    # log now bounds the commands in flight, docs/explanation/design.md.)
    step = count if at_once is None else at_once
    for first in range(0, count, step):
        crowd.done = trio.Event()
        with trio.fail_after(STEP_TIMEOUT):
            async with trio.open_nursery() as connecting:
                for index in range(first, min(count, first + step)):
                    greeting = Hello() if hello is None else hello(index)
                    connecting.start_soon(_connect, crowd, port, nursery, index, greeting)
        if crowd.pending:
            await crowd.wait("the ready frames")
    crowd.clients.sort(key=lambda client: client.index)
