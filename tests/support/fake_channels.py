"""A fake version 2 server for the client's channel tests, written from PROTOCOL.md section 4.

:class:`ChannelStore` is the shared log (every channel's events with
consecutive decimal ids, member lists, forced refusals); :func:`serve_v2`
serves one connection of a :class:`~tests.support.fake_server.FakeServer`
from it: the resume with its channel map, ``subscribe``/``unsubscribe`` after
``ready``, and live events of the subscribed channels. Two ``FakeServer``
objects on one store are two nodes of one cluster.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio
import trio_websocket

from trio_reconnect._protocol import encode_event, encode_ready
from trio_reconnect._wire import (
    Presence,
    Refused,
    RefusedCode,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    encode_channel_event,
    encode_channel_snapshot,
    encode_ready_v2,
    parse_client_frame,
    parse_resume_v2,
)

#: The writer's cue to close (followed by the code and the reason).
_CLOSE = "\x00close:"


@attrs.define(eq=False)
class Conn:
    """One served connection."""

    ws: trio_websocket.WebSocketConnection
    node: int
    subs: set[str] = attrs.Factory(set)
    send: trio.MemorySendChannel[str] = attrs.field(init=False)
    receive: trio.MemoryReceiveChannel[str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[str](float("inf"))

    def put(self, frames: list[str]) -> None:
        for frame in frames:
            self.send.send_nowait(frame)


@attrs.define(eq=False)
class ChannelStore:
    """The channels' logs, shared by every node."""

    logs: dict[str, list[tuple[str, Any]]] = attrs.Factory(dict)
    presence: dict[str, dict[str, dict[str, Any]]] = attrs.Factory(dict)
    #: Channels refused with a code, at every ask (resume or subscribe).
    refuse: dict[str, RefusedCode] = attrs.Factory(dict)
    snapshots: set[str] = attrs.Factory(set)
    bases: dict[str, int] = attrs.Factory(dict)
    v1: bool = False
    #: Send the application's own messages back.
    echo: bool = False
    max_replay: int = 1000
    conns: list[Conn] = attrs.Factory(list)
    #: Every resume frame, decoded.
    resumes: list[dict[str, Any]] = attrs.Factory(list)
    #: Every frame a client sent after ready, decoded when JSON (node, frame).
    received: list[tuple[int, Any]] = attrs.Factory(list)
    #: Set whenever a frame arrives.
    arrived: trio.Event = attrs.Factory(trio.Event)

    def publish(self, channel: str, data: Any) -> str:
        log = self.logs.setdefault(channel, [])
        event_id = str(int(self.newest(channel)) + 1)
        log.append((event_id, data))
        frame = encode_channel_event(channel, event_id, data)
        for conn in self.conns:
            if channel in conn.subs:
                conn.put([frame])
        return event_id

    def newest(self, channel: str) -> str:
        log = self.logs.get(channel)
        return log[-1][0] if log else str(self.bases.get(channel, 100))

    def answer_channel(
        self, channel: str, position: str | None, history: int | None = None
    ) -> list[str]:
        code = self.refuse.get(channel)
        if code is not None:
            return [Refused(channel, code, "refused by the test").encode()]
        log = self.logs.get(channel, [])
        ids = [event_id for event_id, _ in log]
        newest = self.newest(channel)
        out: list[str] = []
        lost = False
        base = str(self.bases.get(channel, 100))
        if position is None:
            if history:
                out += [encode_channel_event(channel, i, d) for i, d in log[-history:]]
        elif position == newest:
            pass
        elif position in [base, *ids]:
            start = ids.index(position) + 1 if position in ids else 0
            if len(ids) - start <= self.max_replay:
                out += [encode_channel_event(channel, i, d) for i, d in log[start:]]
            elif channel in self.snapshots:
                out.append(encode_channel_snapshot(channel, newest, {"state": newest}))
            else:
                lost = True
        elif channel in self.snapshots:
            out.append(encode_channel_snapshot(channel, newest, {"state": newest}))
        else:
            lost = True
        if channel in self.presence:
            out.append(Presence(channel, self.presence[channel]).encode())
        out.append(Subscribed(channel, newest, lost).encode())
        return out

    def _note(self, node: int, message: str | bytes) -> None:
        try:
            decoded: Any = json.loads(message)
        except ValueError:
            decoded = message
        self.received.append((node, decoded))
        self.arrived.set()
        self.arrived = trio.Event()

    async def kick(self, code: int = 1012, retry_after_ms: int = 0) -> None:
        """Close every connection with ``code`` and a hint."""
        reason = json.dumps({"reason": "test", "retryAfter": retry_after_ms})
        for conn in list(self.conns):
            conn.put([f"{_CLOSE}{code} {reason}"])
            self.conns.remove(conn)  # it gets nothing more
        await trio.lowlevel.checkpoint()

    async def serve(self, request: trio_websocket.WebSocketRequest, node: int) -> None:
        """Serve one connection (a ``FakeServer`` handler)."""
        ws = await request.accept()
        text = await ws.get_message()
        assert isinstance(text, str)
        self.resumes.append(json.loads(text))
        resume, refused = parse_resume_v2(text)
        conn = Conn(ws, node)
        out = [r.encode() for r in refused]
        active = []
        if not self.v1:
            for channel, position in resume.channels:
                out += self.answer_channel(channel, position)
                if channel not in self.refuse:
                    active.append(channel)
        if self.v1:
            out.append(encode_ready(None, lost=False))
        else:
            out.append(encode_ready_v2(None, lost=False, channels=active))
        conn.subs.update(active)
        conn.put(out)
        self.conns.append(conn)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, conn)
                await self._reader(conn)
                nursery.cancel_scope.cancel()
        finally:
            if conn in self.conns:
                self.conns.remove(conn)

    async def _reader(self, conn: Conn) -> None:
        ws, node = conn.ws, conn.node
        try:
            while True:
                message = await ws.get_message()
                self._note(node, message)
                if self.v1:
                    continue
                frame = parse_client_frame(message)
                if isinstance(frame, Subscribe):
                    answer = self.answer_channel(frame.channel, frame.last_event_id, frame.history)
                    if frame.channel not in self.refuse:
                        conn.subs.add(frame.channel)
                    conn.put(answer)
                elif isinstance(frame, Unsubscribe):
                    conn.subs.discard(frame.channel)
                    conn.put([Unsubscribed(frame.channel).encode()])
                elif isinstance(frame, Refused):
                    conn.put([frame.encode()])
                elif self.echo and isinstance(frame, str):
                    conn.put([frame])
        except trio_websocket.ConnectionClosed:
            return

    async def _writer(self, conn: Conn) -> None:
        try:
            async for frame in conn.receive:
                if frame.startswith(_CLOSE):
                    code, reason = frame[len(_CLOSE) :].split(" ", 1)
                    await conn.ws.aclose(int(code), reason)
                    return
                await conn.ws.send_message(frame)
        except trio_websocket.ConnectionClosed:
            return

    def send_raw(self, text: str) -> None:
        """Send ``text`` on every connection (after what is queued)."""
        for conn in self.conns:
            conn.put([text])


def default_event(event_id: str, data: Any) -> str:
    """A default-stream event frame."""
    return encode_event(event_id, data)
