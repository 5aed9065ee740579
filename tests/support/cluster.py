"""Shared pieces of the end-to-end cluster tests: node processes, recording clients."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from trio_reconnect import Backoff, ConnectionState, Transition, open_reconnecting_websocket
from trio_reconnect._protocol import Gap, ServerEvent, Snapshot
from trio_reconnect.server import LoggedEvent
from trio_reconnect.server.redis import RedisStreamLog
from trio_reconnect.testing._node_process import NodeProcess
from trio_reconnect.testing._redis_server import _free_port

#: Every node's ``serve`` options: fast ticks, short spreads, a short drain.
NODE_ARGS = (
    "--interval", "0.02",
    "--min-window", "0.5",
    "--spread-base", "0.05",
    "--drain-timeout", "2",
)  # fmt: skip


def make_nodes(redis_url: str, directory: Path, *extra: str, count: int = 3) -> list[NodeProcess]:
    return [
        NodeProcess(f"node{i}", _free_port(), ("--redis", redis_url, *NODE_ARGS, *extra), directory)
        for i in range(count)
    ]


async def start_all(nodes: Sequence[NodeProcess]) -> None:
    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(node.start)


@attrs.define(eq=False)
class Recorder:
    """What one library client delivered, in order: ("event", id), ("gap", last_id), ..."""

    items: list[tuple[str, str | None]] = attrs.field(factory=list)
    ready: bool = False
    opened: int = 0
    #: The URL of the latest attempt (the node it is on, while ``ready``).
    url: str | None = None

    def on_transition(self, transition: Transition) -> None:
        self.ready = transition.state is ConnectionState.OPEN
        self.opened += self.ready

    def rotating_urls(self, urls: Sequence[str], offset: int) -> Callable[[], str]:
        """A url factory: the next node on every attempt, starting at ``offset``."""
        cycle = itertools.cycle([*urls[offset % len(urls) :], *urls[: offset % len(urls)]])

        def next_url() -> str:
            self.url = next(cycle)
            return self.url

        return next_url

    @property
    def event_ids(self) -> list[str]:
        return [i for kind, i in self.items if kind == "event" and i is not None]

    @property
    def last_id(self) -> int | None:
        ids = self.event_ids
        return int(ids[-1]) if ids else None

    async def run(self, url: Callable[[], str], seed: int, **options: Any) -> None:
        async with open_reconnecting_websocket(
            url,
            random=random.Random(seed),
            on_transition=self.on_transition,
            max_attempts=None,
            backoff=Backoff(initial=0.05, max_delay=0.5),
            max_server_delay=2.0,
            # The client's own duplicate filter would hide the server's duplicates.
            dedupe_window=1,
            **options,
        ) as ws:
            async for item in ws:
                if isinstance(item, ServerEvent):
                    self.items.append(("event", item.id))
                elif isinstance(item, Gap):
                    self.items.append(("gap", item.last_id))
                elif isinstance(item, Snapshot):
                    self.items.append(("snapshot", item.id))


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait (polling) until ``predicate()`` holds; the caller bounds it with fail_after."""
    while not predicate():
        await trio.sleep(0.05)


async def shared_history(redis_url: str) -> list[LoggedEvent]:
    async with RedisStreamLog(redis_url) as log:
        read = await log.read_after(None, limit=1_000_000)
    assert read.events is not None
    return list(read.events)


async def newest_id(redis_url: str) -> int:
    async with RedisStreamLog(redis_url) as log:
        newest = await log.newest()
    assert newest is not None
    return int(newest)


async def opening_handshake(port: int) -> tuple[int, dict[str, str]]:
    """A raw websocket upgrade to ``127.0.0.1:port``: the HTTP status and headers of its answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = await stream.receive_some()
            if not chunk:
                break
            reply += chunk
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers
