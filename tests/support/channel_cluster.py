"""Shared pieces of the end-to-end channel tests: subscribing clients, a publisher, the checks.

A :class:`ChannelRecorder` is one library client (``open_reconnecting_websocket``)
subscribed to a few channels with ``ws.subscribe``; it records, per channel,
what its subscription yielded, in order. A :class:`Publisher` appends events
to every channel through a :class:`~trio_reconnect.server.redis.RedisChannelStore`
of the test process (``serve`` publishes only its ticker into the default
stream). :func:`channel_log` reads a channel's log back from Redis, and
:func:`check_run` says whether a client's items are exactly a run of it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import NODE_ARGS, Recorder
from trio_reconnect import Backoff, open_reconnecting_websocket
from trio_reconnect._protocol import Gap, ServerEvent, Snapshot
from trio_reconnect.server import ChannelRequest, LogUnavailableError
from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._node_process import NodeProcess
from trio_reconnect.testing._redis_server import _free_port

#: Events a channel's log holds (RedisChannelStore's default ``channel_max_len``).
LOG_READ: int = 1_000

#: One item a subscription yielded: ("event", id, None), ("gap", last_id, ready_id), ...
Item = tuple[str, str | None, str | None]


def channels_of(client: int, channels: Sequence[str], count: int) -> list[str]:
    """The ``count`` channels client ``client`` subscribes to (a fixed choice per client)."""
    return sorted(random.Random(client).sample(list(channels), count))


@attrs.define(eq=False)
class ChannelRecorder(Recorder):
    """A client subscribed to ``channels``; ``items[channel]`` is what it yielded, in order."""

    channels: Sequence[str] = ()
    #: Per channel: ``sub.last_event_id`` right after subscribing: the ``subscribed`` id
    #: when no event of the channel was appended meanwhile (the tests publish after).
    start: dict[str, str | None] = attrs.field(factory=dict)
    per_channel: dict[str, list[Item]] = attrs.field(factory=dict)
    #: The client's own statistics when it ended.
    server_directed: int = 0

    def channel_ids(self, channel: str) -> list[str]:
        return [i for kind, i, _ in self.per_channel.get(channel, []) if kind == "event" and i]

    def last_in(self, channel: str) -> int:
        """The newest id the client has in ``channel`` (an event, a gap's restart, or its start)."""
        for kind, first, second in reversed(self.per_channel.get(channel, [])):
            if kind == "event" and first is not None:
                return int(first)
            if kind == "gap" and second is not None:
                return int(second)
        start = self.start.get(channel)
        return int(start) if start is not None else 0

    @property
    def subscribed(self) -> bool:
        return len(self.start) == len(self.channels)

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
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._drain_default, ws)
                    for channel in self.channels:
                        nursery.start_soon(self._follow, ws, channel)
            finally:
                self.server_directed = ws.statistics().server_directed

    @staticmethod
    async def _drain_default(ws: Any) -> None:
        """Read the default stream (serve's ticker), so that it never holds the connection."""
        async for _ in ws:
            pass

    async def _follow(self, ws: Any, channel: str) -> None:
        items = self.per_channel.setdefault(channel, [])
        async with ws.subscribe(channel) as sub:
            self.start[channel] = sub.last_event_id
            async for item in sub:
                if isinstance(item, ServerEvent):
                    items.append(("event", item.id, None))
                elif isinstance(item, Gap):
                    items.append(("gap", item.last_id, item.ready_id))
                elif isinstance(item, Snapshot):
                    items.append(("snapshot", item.id, None))


@attrs.define(eq=False)
class Publisher:
    """Appends ``{"n": k}`` to the channels in turn, every ``interval`` s, until cancelled.

    An append that fails (Redis away) is counted and skipped: whether it was
    stored is unknown, so the checks compare with the log read back from
    Redis, not with ``sent``.
    """

    url: str
    channels: Sequence[str]
    interval: float = 0.005
    sent: dict[str, list[str]] = attrs.field(factory=dict)
    failed: int = 0
    #: While set, appends wait (the test holds the publisher still).
    paused: bool = False

    async def run(self) -> None:
        async with RedisChannelStore(self.url) as store:
            for n, channel in zip(itertools.count(), itertools.cycle(self.channels)):
                while self.paused:
                    await trio.sleep(0.01)
                try:
                    event_id = await store.append(channel, {"n": n})
                except LogUnavailableError:
                    self.failed += 1
                    await trio.sleep(0.05)
                else:
                    self.sent.setdefault(channel, []).append(event_id)
                await trio.sleep(self.interval)


def nodes_with_metrics(redis_url: str, directory: Path, *extra: str) -> list[NodeProcess]:
    """Three ``serve --redis`` nodes, each with ``/metrics`` on its own port (kept on restart)."""
    return [
        NodeProcess(
            f"node{i}",
            _free_port(),
            ("--redis", redis_url, *NODE_ARGS, *extra, "--metrics-port", str(_free_port())),
            directory,
        )
        for i in range(3)
    ]


def metrics_port(node: NodeProcess) -> int:
    args = list(node.serve_args)
    return int(args[args.index("--metrics-port") + 1])


#: A scrape: each sample's value by its name and labels.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metric(samples: Samples, name: str, **labels: str) -> float:
    """One series of a ``serve`` node's scrape (its server label is ``serve``)."""
    key = frozenset({"server": "serve", **labels}.items())
    return samples[f"trio_reconnect_server_{name}", key]


async def scrape(port: int) -> Samples:
    """A ``serve --metrics-port`` node's ``/metrics``, parsed."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := await stream.receive_some():
            reply += chunk
    body = reply.split(b"\r\n\r\n", 1)[1].decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def channel_heads(url: str, channels: Sequence[str]) -> dict[str, int]:
    """Each channel's newest id on Redis now."""
    async with RedisChannelStore(url) as store:
        heads = await store.heads(channels)
    return {channel: int(head) for channel, head in heads.items()}


async def channel_log(url: str, channel: str) -> list[str]:
    """The ids of ``channel``'s log on Redis, oldest first (its newest ``LOG_READ``)."""
    async with RedisChannelStore(url) as store:
        [read] = await store.read([ChannelRequest(channel, None, LOG_READ)], max_replay=LOG_READ)
    assert read.events is not None
    assert len(read.events) < LOG_READ, "the channel's log was trimmed: the check would be partial"
    return [event.id for event in read.events]


def check_run(ids: Sequence[str], after: str | None, log: Sequence[str]) -> str | None:
    """What is wrong with ``ids`` as the run of ``log`` right after ``after``; ``None``: nothing.

    ``after`` is the id the run starts after (a ``subscribed`` id, or a gap's
    ``ready_id``): the run must be every logged event above it, in order,
    with no gap and no duplicate, to its end.
    """
    base = int(after) if after is not None else 0
    expected = [i for i in log if int(i) > base][: len(ids)]
    if list(ids) != expected:
        wrong = next(
            (n for n, (a, b) in enumerate(zip(ids, expected, strict=False)) if a != b), None
        )
        return f"not the run of the log after {after}: first difference at {wrong}, {len(ids)} ids"
    return None
