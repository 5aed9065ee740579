"""Shared pieces of the end-to-end publish/presence tests (issue 19): publishers, members, checks.

A :class:`Publisher` is a library client publishing with acks into several
channels, each ``data`` naming the client and its publish number ``n`` (taken
in the same step as the msgId, so ``n`` grows in the client's order). A
:class:`Member` is a library client subscribed to a presence channel that
records every :class:`~trio_reconnect.Join` and :class:`~trio_reconnect.Leave`
it yields, with the time. :func:`check_logs` reads each channel's log back
from Redis and counts what the issue asks for.
"""

from __future__ import annotations

import collections
import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from trio_reconnect import (
    Backoff,
    ConnectionState,
    Join,
    Leave,
    ReconnectingWebSocket,
    Transition,
    open_reconnecting_websocket,
)
from trio_reconnect.server import ChannelRequest
from trio_reconnect.server.redis import RedisChannelStore

#: Every library client's reconnect settings: fast, never giving up.
CLIENT_OPTIONS: dict[str, Any] = {
    "max_attempts": None,
    "backoff": Backoff(initial=0.05, max_delay=0.5),
    "max_server_delay": 2.0,
}


@attrs.define(eq=False)
class Tracked:
    """Whether a library client is ready, how often it opened, where it went last."""

    ready: bool = False
    opened: int = 0
    url: str | None = None

    def on_transition(self, transition: Transition) -> None:
        self.ready = transition.state is ConnectionState.OPEN
        self.opened += self.ready

    def rotating(self, urls: Callable[[], Sequence[str]], offset: int) -> Callable[[], str]:
        """A url factory: the next of ``urls()`` on every attempt, starting at ``offset``."""
        count = offset

        def next_url() -> str:
            nonlocal count
            now = urls()
            self.url = now[count % len(now)]
            count += 1
            return self.url

        return next_url


async def drain(ws: ReconnectingWebSocket) -> None:
    """Read the default stream (serve's ticks) and drop it."""
    async for _ in ws:
        pass


@attrs.define(eq=False)
class Publisher:
    """A client publishing ``{"c": index, "n": n}`` into ``channels`` in turn, paced."""

    index: int
    channels: Sequence[str]
    pace: float
    limit: int
    tracked: Tracked = attrs.field(factory=Tracked)
    #: n -> (channel, the id of its ack).
    acked: dict[int, tuple[str, str]] = attrs.field(factory=dict)
    started: int = 0
    taken: int = 0
    resent: int = 0
    stop: trio.Event = attrs.field(factory=trio.Event)
    done: trio.Event = attrs.field(factory=trio.Event)
    ws: ReconnectingWebSocket | None = None

    def describe(self) -> str:
        """One line for a failure report."""
        outbox = None if self.ws is None else self.ws._publisher().statistics()
        return (
            f"{self.client_id}: ready={self.tracked.ready} opened={self.tracked.opened} "
            f"url={self.tracked.url} started={self.started} acked={len(self.acked)} {outbox}"
        )

    @property
    def client_id(self) -> str:
        return f"pub{self.index}"

    async def _one(self, ws: ReconnectingWebSocket) -> None:
        # n is taken in the step where publish() takes its msgId (no checkpoint between)
        n, self.taken = self.taken, self.taken + 1
        channel = self.channels[n % len(self.channels)]
        self.acked[n] = (channel, await ws.publish(channel, {"c": self.client_id, "n": n}))

    async def run(self, urls: Callable[[], Sequence[str]]) -> None:
        async with open_reconnecting_websocket(
            self.tracked.rotating(urls, self.index),
            client_id=self.client_id,
            on_transition=self.tracked.on_transition,
            random=random.Random(self.index),
            **CLIENT_OPTIONS,
        ) as ws:
            self.ws = ws
            async with trio.open_nursery() as nursery, trio.open_nursery() as reader:
                # serve's ticks come on the default stream: a full buffer there would stall
                # the connection's reader, and with it every ack (docs/howto/publish.md).
                reader.start_soon(drain, ws)
                while not self.stop.is_set() and self.started < self.limit:
                    nursery.start_soon(self._one, ws)
                    self.started += 1
                    with trio.move_on_after(self.pace):
                        await self.stop.wait()
                await ws.wait_acked()
                reader.cancel_scope.cancel()
            self.resent = ws._publisher().statistics().resent
        self.done.set()


@attrs.define(eq=False)
class Member:
    """A client in a presence channel: every Join/Leave it yields, with ``trio.current_time()``."""

    client_id: str
    channel: str
    tracked: Tracked = attrs.field(factory=Tracked)
    changes: list[tuple[str, str, float]] = attrs.field(factory=list)
    members: dict[str, Any] = attrs.field(factory=dict)
    leave: trio.Event = attrs.field(factory=trio.Event)

    def leaves(self, client_id: str) -> list[float]:
        return [t for kind, who, t in self.changes if kind == "leave" and who == client_id]

    async def run(self, urls: Callable[[], Sequence[str]], offset: int) -> None:
        async with (
            open_reconnecting_websocket(
                self.tracked.rotating(urls, offset),
                client_id=self.client_id,
                on_transition=self.tracked.on_transition,
                random=random.Random(offset),
                **CLIENT_OPTIONS,
            ) as ws,
            ws.subscribe(self.channel) as sub,
            trio.open_nursery() as nursery,
        ):

            async def record() -> None:
                async for item in sub:
                    if isinstance(item, (Join, Leave)):
                        kind = "join" if isinstance(item, Join) else "leave"
                        self.changes.append((kind, item.client_id, trio.current_time()))
                    self.members = dict(sub.members)

            nursery.start_soon(record)
            nursery.start_soon(drain, ws)
            await self.leave.wait()
            nursery.cancel_scope.cancel()
            # A clean leave: the block ends (unsubscribe), then the client (close 1000).


#: A member run as its own process (``python -c``), to be SIGKILLed: argv is URL, clientId.
MEMBER_SCRIPT = """
import sys, trio, trio_reconnect as tr
async def main():
    async with tr.open_reconnecting_websocket(sys.argv[1], client_id=sys.argv[2]) as ws:
        async with ws.subscribe("lobby:1"):
            print("subscribed", flush=True)
            async for _ in ws:  # the default stream (serve's ticks), dropped
                pass
trio.run(main)
"""


@attrs.frozen
class LogFigures:
    """What the channels' logs hold against what the publishers were acked."""

    appended: int
    acked: int
    duplicates: int
    missing: int
    unacked_appended: int
    out_of_order: int
    wrong_ids: int


async def read_channel(redis_url: str, channel: str) -> list[tuple[str, Any]]:
    """Every event of ``channel``'s log (id, data), oldest first."""
    async with RedisChannelStore(redis_url) as store:
        (read,) = await store.read([ChannelRequest(channel, None, 100_000)], max_replay=100_000)
    assert read.events is not None
    return [(event.id, event.data) for event in read.events]


async def check_logs(
    redis_url: str, channels: Sequence[str], publishers: Sequence[Publisher]
) -> LogFigures:
    """Read every channel's log and compare it with every publisher's acks."""
    acked = {(p.client_id, n): answer for p in publishers for n, answer in p.acked.items()}
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    out_of_order = wrong_ids = unacked = 0
    for channel in channels:
        last: dict[str, int] = {}
        for event_id, data in await read_channel(redis_url, channel):
            key = (data["c"], data["n"])
            seen[key] += 1
            if last.get(key[0], -1) >= key[1]:
                out_of_order += 1
            last[key[0]] = key[1]
            if key not in acked:
                unacked += 1
            elif acked[key] != (channel, event_id):
                wrong_ids += 1
    return LogFigures(
        appended=sum(seen.values()),
        acked=len(acked),
        duplicates=sum(count - 1 for count in seen.values()),
        missing=sum(1 for key in acked if key not in seen),
        unacked_appended=unacked,
        out_of_order=out_of_order,
        wrong_ids=wrong_ids,
    )


async def scrape(port: int) -> str:
    """The text of ``http://127.0.0.1:port/metrics`` ("" if nothing answers)."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return ""
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        chunks = []
        while chunk := await stream.receive_some():
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def metric(text: str, name: str, labels: str = "") -> float:
    """The sum of the samples of counter ``name`` (``*_name`` with ``{labels}``) in ``text``."""
    if labels:
        pattern = rf"^\w*_{name}\{{[^}}]*{re.escape(labels)}[^}}]*\}} (\S+)$"
    else:
        pattern = rf"^\w*_{name}(?:\{{[^}}]*\}})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, flags=re.MULTILINE))


def publish_frame(channel: str, msg_id: int, data: Any) -> str:
    return json.dumps({"type": "publish", "channel": channel, "msgId": str(msg_id), "data": data})
