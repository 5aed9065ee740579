"""The channel figures of ``python -m trio_reconnect bench`` (issue 18).

The machinery is the default stream's fan-out (:mod:`._fanout`): three server
processes side by side (``_fanout_server --channels N``, served by
:mod:`._chanserve`: ``plain``, a pub/sub server on trio-websocket alone;
``memory`` and ``redis``, a ReconnectServer on a MemoryChannelStore or a
RedisChannelStore), interleaved rounds, a warm-up round first. The clients
of each server live in processes of their own (:mod:`._chanclients`, which
runs :mod:`._chanworker`): a plain epoll loop that counts event frames with
one ``recv`` and one ``bytearray.count`` per readable socket, and checks
every frame off the clock, so that the figure is the server's fan-out and
not the measuring side's receiving.

* **Fan-out.** The clients connect 200 at a time (the next 200 once these
  have their ``ready`` and ``subscribed`` answers). Client ``i`` subscribes
  to channels ``(i + k * (N // S)) % N`` for ``k < S`` (``S`` subscriptions
  each; with 2,000 clients, 1,000 channels and 10 each, every channel has 20
  subscribers). A burst: the server
  publishes ``events`` events round robin over the channels, by concurrent
  publisher tasks; every client expects the events of its channels, and the
  rate is ``deliveries / (last arrival - stamp)``. The ratios are the medians
  of the per-round ratios ``memory / plain`` and ``redis / plain``. A latency
  sample is one event on one channel: ``arrival - stamp`` of each of its
  subscribers. Server CPU per delivery: the server process's CPU time over
  the burst (``/proc``, Linux) / deliveries; the client processes' too
  (their ``time.process_time()``), to show whether the measuring side bounds
  the rate.
* **Memory.** The server process's RSS (``VmRSS`` in ``/proc/<pid>/status``,
  Linux) just before its clients connect, and again once every client has
  its ``ready`` and its ``subscribed`` answers (before any publish): the
  growth / clients, in KiB. ``server_memory_ratio`` is memory / plain.
* **Resume** (:mod:`._chanresume`), on the Redis server of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Sequence
from typing import Final

import attrs

from ..._validators import check_int
from .._policy import positive_int
from ._chanclients import ClientProcesses, open_clients
from ._chanreport import ChannelFigures
from ._chanresume import (
    DEFAULT_RESUME_CHANNELS,
    DEFAULT_RESUME_REPETITIONS,
    ResumeTimes,
    measure_resume,
    publish_command,
    resume_ratio,
)
from ._crowd import FanoutError
from ._fanout import KINDS, _p99, _redis, _Samples, _Server, _server, _us

__all__ = ["ChannelOptions", "add_channel_arguments", "channel_options", "run_channels"]

_QUEUE_SIZE: Final = 4096
#: Client processes per server (:mod:`._chanworker`).
CLIENT_PROCESSES: Final = 1
#: Clients connecting (and subscribing) at once: a steady crowd, not a reconnect storm
#: (2,000 handshakes of 10 subscriptions at once on a loaded 2-core machine outlast the
#: handshake timeout of the Redis node, which then refuses them as busy).
_AT_ONCE: Final = 200


@attrs.frozen
class ChannelOptions:
    """The sizes of the channel figures (the defaults are issue 18's)."""

    clients: int = attrs.field(default=2000)
    count: int = attrs.field(default=1000)
    subscriptions: int = attrs.field(default=10)
    events: int = attrs.field(default=2000)
    rounds: int = attrs.field(default=5)
    latency_events: int = attrs.field(default=5)
    resume_channels: int = attrs.field(default=DEFAULT_RESUME_CHANNELS)
    resume_repetitions: int = attrs.field(default=DEFAULT_RESUME_REPETITIONS)

    def __attrs_post_init__(self) -> None:
        for name, value in attrs.asdict(self).items():
            check_int(f"channel {name}", value, minimum=1)
        if self.subscriptions > self.count:
            raise ValueError("channel subscriptions must not exceed the channel count")

    def channels_of(self, client: int) -> list[int]:
        """The channel numbers client ``client`` subscribes to."""
        step = self.count // self.subscriptions
        return [(client + k * step) % self.count for k in range(self.subscriptions)]


def add_channel_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` options of the channel figures (``--channel-*``, ``--resume-*``)."""
    defaults = ChannelOptions()
    for name, help_text in (
        ("clients", "clients of each channel server"),
        ("count", "channels of each channel server"),
        ("subscriptions", "channels each client subscribes to"),
        ("events", "events per channel burst"),
        ("rounds", "timed channel rounds, after one warm-up round"),
        ("latency_events", "channel latency samples per server per round"),
    ):
        default = getattr(defaults, name)
        parser.add_argument(
            f"--channel-{name.replace('_', '-')}",
            type=positive_int,
            default=default,
            help=f"{help_text} (default {default})",
        )
    parser.add_argument(
        "--resume-channels",
        type=positive_int,
        default=defaults.resume_channels,
        help=f"channels of the resume figure's big client (default {defaults.resume_channels})",
    )
    parser.add_argument(
        "--resume-repetitions",
        type=positive_int,
        default=defaults.resume_repetitions,
        help=f"timed resumes per client (default {defaults.resume_repetitions})",
    )
    parser.add_argument("--no-channels", action="store_true", help="skip the channel figures")


def channel_options(args: argparse.Namespace) -> ChannelOptions | None:
    """The parsed ``args``' channel options (``None``: ``--no-channels``)."""
    if args.no_channels:
        return None
    return ChannelOptions(
        clients=args.channel_clients,
        count=args.channel_count,
        subscriptions=args.channel_subscriptions,
        events=args.channel_events,
        rounds=args.channel_rounds,
        latency_events=args.channel_latency_events,
        resume_channels=args.resume_channels,
        resume_repetitions=args.resume_repetitions,
    )


def _rss(server: _Server) -> int | None:
    """The process's resident set size in bytes (``/proc``), or ``None``."""
    try:
        with open(f"/proc/{server.process.pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@attrs.define(eq=False)
class _Plan:
    """Which clients expect what, for a publish of ``count`` events from ``start``."""

    options: ChannelOptions
    subscribers: dict[int, list[int]] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        for client in range(self.options.clients):
            for channel in self.options.channels_of(client):
                self.subscribers.setdefault(channel, []).append(client)

    def expected(self, start: int, count: int) -> list[int]:
        per_channel = [0] * self.options.count
        for number in range(start, start + count):
            per_channel[number % self.options.count] += 1
        frames = [0] * self.options.clients
        for channel, clients in self.subscribers.items():
            for client in clients:
                frames[client] += per_channel[channel]
        return frames

    def latency_channel(self, sample: int) -> int:
        """A channel with subscribers, a different one each sample."""
        channels = sorted(self.subscribers)
        return channels[sample % len(channels)]


async def run_channels(options: ChannelOptions, *, redis: bool = True) -> ChannelFigures:
    """Start the servers, measure, stop them (the module comment).

    Raises:
        FanoutError: a server did not start, or a client lost its connection.
    """
    try:
        return await _run(options, redis)
    except BaseExceptionGroup as group:
        matched, _ = group.split(FanoutError)
        if matched is None:
            raise
        first = matched.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def _run(options: ChannelOptions, redis: bool) -> ChannelFigures:
    plan = _Plan(options)
    async with _redis(redis) as store:
        kinds = [kind for kind in KINDS if kind != "redis" or store.server is not None]
        samples = _Samples(kinds)
        memory: dict[str, float] = {}
        async with contextlib.AsyncExitStack() as stack:
            servers: dict[str, _Server] = {}
            for kind in kinds:
                servers[kind] = await stack.enter_async_context(
                    _server(kind, _argv(kind, options.count, store.server))
                )
            crowds: dict[str, ClientProcesses] = {}
            for kind in kinds:
                before = _rss(servers[kind])
                crowds[kind] = await stack.enter_async_context(
                    open_clients(
                        kind,
                        servers[kind].port,
                        clients=options.clients,
                        count=options.count,
                        subscriptions=options.subscriptions,
                        processes=CLIENT_PROCESSES,
                        at_once=_AT_ONCE,
                    )
                )
                memory[kind] = _growth(before, _rss(servers[kind]), options.clients)
            for number in range(options.rounds + 1):  # round 0 is the warm-up
                shift = number % len(kinds)
                order = kinds[shift:] + kinds[:shift]
                record = samples if number else None
                for kind in order:
                    await _burst(servers[kind], crowds[kind], plan, record)
                for kind in order:
                    for sample in range(options.latency_events):
                        channel = plan.latency_channel(number * options.latency_events + sample)
                        await _latency(servers[kind], crowds[kind], plan, channel, record)
        resume: ResumeTimes | None = None
        if store.server is not None:
            async with _server(
                "redis",
                _argv("redis", max(options.count, options.resume_channels + 1), store.server),
            ) as server:
                resume = await measure_resume(
                    server,
                    channels=options.resume_channels,
                    repetitions=options.resume_repetitions,
                )
    return _figures(options, samples, memory, resume, store.note)


def _argv(kind: str, channels: int, redis_server: object | None) -> list[str]:
    argv = ["--channels", str(channels), "--queue-size", str(_QUEUE_SIZE)]
    if kind == "redis":
        url = getattr(redis_server, "url", None)
        assert url is not None
        argv += ["--redis", url]
    return argv


def _growth(before: int | None, after: int | None, clients: int) -> float:
    """The server's RSS growth per client, in KiB (NaN if unknown)."""
    if before is None or after is None:
        return float("nan")
    return (after - before) / clients / 1024


async def _burst(
    server: _Server, crowd: ClientProcesses, plan: _Plan, samples: _Samples | None
) -> None:
    events = plan.options.events
    await crowd.expect(0, events)
    cpu = server.cpu()
    stamp = await publish_command(server, 0, events)
    arrivals, client_cpu = await crowd.wait("a channel burst")
    after = server.cpu()
    if samples is not None:
        deliveries = sum(plan.expected(0, events))
        samples.rates[server.kind].append(deliveries / (max(arrivals) - stamp))
        samples.client_cpus[server.kind].append(client_cpu / deliveries)
        if cpu is not None and after is not None:
            samples.server_cpus[server.kind].append((after - cpu) / deliveries)


async def _latency(
    server: _Server, crowd: ClientProcesses, plan: _Plan, channel: int, samples: _Samples | None
) -> None:
    await crowd.expect(channel, 1)
    stamp = await publish_command(server, channel, 1)
    arrivals, _ = await crowd.wait("a channel latency sample")
    if samples is not None:
        samples.latencies[server.kind] += [arrival - stamp for arrival in arrivals]


def _figures(
    options: ChannelOptions,
    samples: _Samples,
    memory: dict[str, float],
    resume: ResumeTimes | None,
    note: str | None,
) -> ChannelFigures:
    rates = samples.rates
    has_redis = "redis" in samples.kinds

    def ratios(kind: str) -> tuple[float, ...] | None:
        if kind not in rates:
            return None
        return tuple(a / b for a, b in zip(rates[kind], rates["plain"], strict=True))

    def median(values: Sequence[float] | None) -> float | None:
        return None if not values else statistics.median(values)

    def latency(kind: str, p99: bool) -> float | None:
        values = samples.latencies.get(kind)
        if not values:
            return None
        return (_p99(values) if p99 else statistics.median(values)) * 1000

    def cpu(kind: str, table: dict[str, list[float]] = samples.server_cpus) -> float | None:
        values = table.get(kind)
        return _us(values) if values else None

    memory_ratios = ratios("memory")
    assert memory_ratios is not None
    times = resume or ResumeTimes(many=(), one=(), many_reconnect=(), one_reconnect=())
    return ChannelFigures(
        channel_fanout_memory_ratio=statistics.median(memory_ratios),
        channel_fanout_redis_ratio=median(ratios("redis")),
        server_memory_ratio=_ratio(memory["memory"], memory["plain"]),
        server_memory_redis_ratio=_ratio(memory["redis"], memory["plain"]) if has_redis else None,
        resume_100_channels_ratio=None if resume is None else resume_ratio(resume.many, resume.one),
        resume_100_channels_reconnect_ratio=(
            None if resume is None else resume_ratio(resume.many_reconnect, resume.one_reconnect)
        ),
        channel_plain_eps=statistics.median(rates["plain"]),
        channel_memory_eps=statistics.median(rates["memory"]),
        channel_redis_eps=median(rates.get("redis")),
        channel_fanout_memory_ratios=memory_ratios,
        channel_fanout_redis_ratios=ratios("redis"),
        channel_plain_latency_median_ms=latency("plain", False) or 0.0,
        channel_plain_latency_p99_ms=latency("plain", True) or 0.0,
        channel_memory_latency_median_ms=latency("memory", False) or 0.0,
        channel_memory_latency_p99_ms=latency("memory", True) or 0.0,
        channel_redis_latency_median_ms=latency("redis", False),
        channel_redis_latency_p99_ms=latency("redis", True),
        channel_plain_server_cpu_us=cpu("plain"),
        channel_memory_server_cpu_us=cpu("memory"),
        channel_redis_server_cpu_us=cpu("redis"),
        channel_plain_client_cpu_us=cpu("plain", samples.client_cpus),
        channel_memory_client_cpu_us=cpu("memory", samples.client_cpus),
        channel_redis_client_cpu_us=cpu("redis", samples.client_cpus),
        server_memory_plain_kib=memory["plain"],
        server_memory_memory_kib=memory["memory"],
        server_memory_redis_kib=memory.get("redis"),
        resume_many_channels_ms=_ms(times.many),
        resume_1_channel_ms=_ms(times.one),
        resume_many_channels_reconnect_ms=_ms(times.many_reconnect),
        resume_1_channel_reconnect_ms=_ms(times.one_reconnect),
        channel_redis_note=note,
        channel_clients=options.clients,
        channel_count=options.count,
        channel_subscriptions=options.subscriptions,
        channel_events=options.events,
        channel_rounds=options.rounds,
        channel_latency_events=options.latency_events,
        resume_channels=options.resume_channels,
        resume_repetitions=options.resume_repetitions,
    )


def _ms(values: Sequence[float] | None) -> float | None:
    """The median in ms; ``None`` if not measured."""
    return None if not values else statistics.median(values) * 1000


def _ratio(ours: float, plain: float) -> float | None:
    """``ours / plain``; ``None`` when the plain server's RSS did not grow (or is unknown)."""
    return ours / plain if plain > 0 else None
