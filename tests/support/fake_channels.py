"""A fake version 2 server for the client's channel tests, written from PROTOCOL.md section 4.

:class:`ChannelStore` is the shared log (every channel's events with
consecutive decimal ids, member lists, forced refusals); :func:`serve_v2`
serves one connection of a :class:`~tests.support.fake_server.FakeServer`
from it: the resume with its channel map, ``subscribe``/``unsubscribe`` after
``ready``, live events of the subscribed channels, and ``publish`` with its
``ack``/``nack`` (4.5: once per clientId and msgId; after ``unavailable``
every later publish of the connection is ``unavailable`` until that msgId
comes again; ``publish_script`` forces answers). Two ``FakeServer`` objects
on one store are two nodes of one cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio_websocket

from trio_reconnect._protocol import encode_event, encode_ready
from trio_reconnect._wire import (
    Ack,
    Nack,
    NackCode,
    Presence,
    Publish,
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
    client_id: str | None = None
    #: The msgId nacked ``unavailable``: later publishes are too until it comes again.
    blocked: str | None = None
    #: Answers delayed by ``ack_delay``: (when, frame), in order.
    later: list[tuple[float, str]] = attrs.Factory(list)
    later_added: trio.Event = attrs.Factory(trio.Event)
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
    #: ``trio.current_time()`` of each entry of ``received``.
    received_at: list[float] = attrs.Factory(list)
    #: Forced answers to publishes: a NackCode, "drop" (close, not applied),
    #: "apply_and_drop" (applied, then close before the ack), "silent" (no
    #: answer), or None (applied once per (clientId, msgId), acked).
    publish_script: Callable[[Publish], NackCode | str | None] | None = None
    #: Seconds each publish's answer waits (in order).
    ack_delay: float = 0.0
    #: (clientId, msgId) -> the id of its append.
    applied: dict[tuple[str | None, str], str] = attrs.Factory(dict)

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
        self.received_at.append(trio.current_time())
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
        conn = Conn(ws, node, client_id=resume.client_id)
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
                nursery.start_soon(self._delayed, conn)
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
                elif isinstance(frame, Publish | Nack):
                    self._publish(conn, frame)
                elif self.echo and isinstance(frame, str):
                    conn.put([frame])
        except trio_websocket.ConnectionClosed:
            return

    def _publish(self, conn: Conn, frame: Publish | Nack) -> None:
        if isinstance(frame, Nack):  # a publish the parser refused
            self._answer(conn, frame.encode())
            return
        if conn.blocked is not None and conn.blocked != frame.msg_id:
            self._answer(conn, Nack(frame.msg_id, frame.channel, NackCode.UNAVAILABLE).encode())
            return
        conn.blocked = None
        forced = None if self.publish_script is None else self.publish_script(frame)
        if forced == "silent":
            return
        if forced == "drop":
            self._drop(conn)
            return
        if isinstance(forced, NackCode):
            if forced is NackCode.UNAVAILABLE:
                conn.blocked = frame.msg_id
            self._answer(conn, Nack(frame.msg_id, frame.channel, forced, "scripted").encode())
            return
        key = (conn.client_id, frame.msg_id)
        if key not in self.applied:
            self.applied[key] = self.publish(frame.channel, frame.data)
        if forced == "apply_and_drop":
            self._drop(conn)
            return
        self._answer(conn, Ack(frame.msg_id, frame.channel, self.applied[key]).encode())

    def _answer(self, conn: Conn, text: str) -> None:
        if not self.ack_delay:
            conn.put([text])
            return
        conn.later.append((trio.current_time() + self.ack_delay, text))
        conn.later_added.set()

    def _drop(self, conn: Conn) -> None:
        conn.put([f"{_CLOSE}1012 " + json.dumps({"reason": "test", "retryAfter": 0})])
        if conn in self.conns:
            self.conns.remove(conn)

    async def _delayed(self, conn: Conn) -> None:
        while True:
            while not conn.later:
                conn.later_added = trio.Event()
                await conn.later_added.wait()
            when, text = conn.later.pop(0)
            await trio.sleep_until(when)
            conn.put([text])

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
