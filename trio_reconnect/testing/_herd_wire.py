"""The rolling deploy's view of the wire: its load balancer, and a tap on the clients' bytes.

A :class:`Balancer` picks a node for every new connection among those its
health check sees up and the deploy has not taken out of its rotation. A
:class:`TappedStream` hands every byte a client receives to a
:class:`FrameTap` too, which reads the event ids out of the server's frames:
duplicates counted on the wire, before the client's own de-duplication.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

import attrs
import trio

from .._protocol import encode_event
from ..server import MemoryRegistry
from ._pipe import OP_TEXT, frame_at

__all__ = ["Balancer", "FrameTap", "TappedStream"]

#: The start of every event frame the server encodes, up to the id's first character.
_EVENT_PREFIX: Final = encode_event("ID", None).encode().partition(b"ID")[0]


@attrs.define(eq=False)
class Balancer:
    """A load balancer: new connections go to the nodes it sees up.

    A node is up when its health check passes (it is announced in the
    registry, alive and not draining) and the deploy has not taken it out of
    the rotation. ``round-robin`` deals the connections out in turn (as a
    real balancer does with new connections); ``random`` picks uniformly.
    """

    names: Sequence[str]
    registry: MemoryRegistry
    mode: str
    rng: random.Random
    out: set[str] = attrs.field(factory=set)
    _turn: int = 0

    async def pick(self) -> str | None:
        healthy = {n.node for n in await self.registry.nodes() if not n.draining}
        up = [name for name in self.names if name in healthy and name not in self.out]
        if not up:
            return None
        if self.mode == "random":
            return self.rng.choice(up)
        self._turn += 1
        return up[self._turn % len(up)]


class FrameTap:
    """Reads the event ids out of the server's frames on one connection (unmasked)."""

    def __init__(self, seen: list[int]) -> None:
        self._seen = seen
        self._buffer = bytearray()
        self._upgraded = False

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            del buffer[: end + 4]
            self._upgraded = True
        while (frame := frame_at(buffer)) is not None:
            opcode, start, end = frame
            if opcode == OP_TEXT and buffer.startswith(_EVENT_PREFIX, start):
                first = start + len(_EVENT_PREFIX)
                self._seen.append(int(buffer[first : buffer.index(b'"', first)]))
            del buffer[:end]


class TappedStream(trio.abc.Stream):
    """A client's stream whose received bytes go through a :class:`FrameTap` too."""

    def __init__(self, stream: trio.abc.Stream, tap: FrameTap) -> None:
        self._stream = stream
        self._tap = tap

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self._stream.receive_some(max_bytes)
        self._tap.feed(bytes(data))
        return bytes(data)

    async def aclose(self) -> None:
        await self._stream.aclose()
