"""The channel figures of ``python -m trio_reconnect bench`` (issue 18): values, targets, table.

Pure: no trio import. :class:`ChannelFigures` is what
:func:`~trio_reconnect._tools.bench._chanfanout.run_channels` measured; its
fields are the keys ``bench --json`` prints as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

__all__ = [
    "TARGET_CHANNEL_FANOUT_MEMORY",
    "TARGET_CHANNEL_FANOUT_REDIS",
    "TARGET_RESUME_100_CHANNELS",
    "TARGET_SERVER_MEMORY",
    "ChannelFigures",
    "channel_passes",
    "channel_table",
    "channel_targets",
]

#: Ours on MemoryChannelStore / the plain pub/sub server, channel events delivered per second.
TARGET_CHANNEL_FANOUT_MEMORY: Final = 1.5
#: Ours on RedisChannelStore / the plain pub/sub server, channel events delivered per second.
TARGET_CHANNEL_FANOUT_REDIS: Final = 1.2
#: Server RSS growth per subscribed client, ours (MemoryChannelStore) / plain: at most.
TARGET_SERVER_MEMORY: Final = 1.5
#: Resume to ready with 100 channels / with 1 channel, on Redis: at most.
TARGET_RESUME_100_CHANNELS: Final = 3.0

Row = tuple[str, ...]


@attrs.frozen
class ChannelFigures:
    """What the channel benchmarks measured; ``None``: not measured (see ``channel_redis_note``).

    Rates and latencies are medians over the timed rounds; the fan-out ratios
    are medians of the per-round ratios; memory is KiB of RSS growth per
    client (``server_memory_ratio`` is ``None`` when the plain server's did
    not grow: RSS moves by pages, so a tiny run may see none; NaN without
    ``/proc``); the resume times are medians in ms and their ratio is of the
    medians: ``resume_*`` from the client's ``RESUMING`` to ``OPEN`` (resume
    to ready, the target's figure), ``resume_*_reconnect_*`` from
    ``reconnect_now()`` to ``OPEN`` (close, connect and upgrade included).
    """

    channel_fanout_memory_ratio: float
    channel_fanout_redis_ratio: float | None
    server_memory_ratio: float | None
    server_memory_redis_ratio: float | None
    resume_100_channels_ratio: float | None
    resume_100_channels_reconnect_ratio: float | None
    channel_plain_eps: float
    channel_memory_eps: float
    channel_redis_eps: float | None
    channel_fanout_memory_ratios: tuple[float, ...]
    channel_fanout_redis_ratios: tuple[float, ...] | None
    channel_plain_latency_median_ms: float
    channel_plain_latency_p99_ms: float
    channel_memory_latency_median_ms: float
    channel_memory_latency_p99_ms: float
    channel_redis_latency_median_ms: float | None
    channel_redis_latency_p99_ms: float | None
    channel_plain_server_cpu_us: float | None
    channel_memory_server_cpu_us: float | None
    channel_redis_server_cpu_us: float | None
    channel_plain_client_cpu_us: float | None
    channel_memory_client_cpu_us: float | None
    channel_redis_client_cpu_us: float | None
    server_memory_plain_kib: float
    server_memory_memory_kib: float
    server_memory_redis_kib: float | None
    resume_many_channels_ms: float | None
    resume_1_channel_ms: float | None
    resume_many_channels_reconnect_ms: float | None
    resume_1_channel_reconnect_ms: float | None
    channel_redis_note: str | None
    channel_clients: int
    channel_count: int
    channel_subscriptions: int
    channel_events: int
    channel_rounds: int
    channel_latency_events: int
    resume_channels: int
    resume_repetitions: int


def channel_targets() -> dict[str, float]:
    """The targets, by the name ``--json`` gives them."""
    return {
        "channel_fanout_memory": TARGET_CHANNEL_FANOUT_MEMORY,
        "channel_fanout_redis": TARGET_CHANNEL_FANOUT_REDIS,
        "server_memory": TARGET_SERVER_MEMORY,
        "resume_100_channels": TARGET_RESUME_100_CHANNELS,
    }


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def _at_most(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


def channel_passes(f: ChannelFigures | None) -> dict[str, bool | None]:
    """PASS (``True``), MISS (``False``) or not measured (``None``), by target name."""
    if f is None:
        return dict.fromkeys(channel_targets())
    return {
        "channel_fanout_memory": _at_least(
            f.channel_fanout_memory_ratio, TARGET_CHANNEL_FANOUT_MEMORY
        ),
        "channel_fanout_redis": _at_least(
            f.channel_fanout_redis_ratio, TARGET_CHANNEL_FANOUT_REDIS
        ),
        "server_memory": _at_most(f.server_memory_ratio, TARGET_SERVER_MEMORY),
        "resume_100_channels": _at_most(f.resume_100_channels_ratio, TARGET_RESUME_100_CHANNELS),
    }


def _fmt(spec: str) -> Callable[[float | None], str]:
    return lambda value: "-" if value is None else format(value, spec)


def channel_table(f: ChannelFigures, align: Callable[[Sequence[Row]], list[str]]) -> list[str]:
    """The channel figures as aligned lines (``align``: :func:`._report.align`)."""
    rate, tenths, hundredths, ratio = _fmt(",.0f"), _fmt(".1f"), _fmt(".2f"), _fmt(".3f")
    lines = [
        f"channels: {f.channel_clients} clients per server, each subscribed to "
        f"{f.channel_subscriptions} of {f.channel_count} channels; {f.channel_events}-event "
        f"bursts, {f.channel_rounds} rounds (+1 warm-up)",
        "",
    ]
    rows: list[Row] = [
        ("", "plain pub/sub", "MemoryChannelStore", "RedisChannelStore"),
        ("events delivered/s", *map(rate, _three(f, "channel_{}_eps"))),
        (
            "publish->delivery median, ms",
            *map(hundredths, _three(f, "channel_{}_latency_median_ms")),
        ),
        ("publish->delivery p99, ms", *map(hundredths, _three(f, "channel_{}_latency_p99_ms"))),
        ("server CPU us per delivery", *map(tenths, _three(f, "channel_{}_server_cpu_us"))),
        ("clients' CPU us per delivery", *map(tenths, _three(f, "channel_{}_client_cpu_us"))),
        ("server RSS KiB per client", *map(tenths, _three(f, "server_memory_{}_kib"))),
    ]
    lines += align(rows)
    passes = channel_passes(f)
    verdict = {True: "PASS", False: "MISS", None: "-"}
    lines += ["", *align(
        [
            ("ratio", "value", "target", "result"),
            ("channel fan-out, memory / plain", ratio(f.channel_fanout_memory_ratio),
             f">= {TARGET_CHANNEL_FANOUT_MEMORY}", verdict[passes["channel_fanout_memory"]]),
            ("channel fan-out, Redis / plain", ratio(f.channel_fanout_redis_ratio),
             f">= {TARGET_CHANNEL_FANOUT_REDIS}", verdict[passes["channel_fanout_redis"]]),
            ("server memory per client, memory / plain", ratio(f.server_memory_ratio),
             f"<= {TARGET_SERVER_MEMORY}", verdict[passes["server_memory"]]),
            (f"resume to ready, {f.resume_channels} channels / 1 (Redis)",
             ratio(f.resume_100_channels_ratio), f"<= {TARGET_RESUME_100_CHANNELS:g}",
             verdict[passes["resume_100_channels"]]),
        ]
    )]  # fmt: skip
    if f.resume_many_channels_ms is not None:
        lines += [
            f"  (resume to ready, RESUMING -> OPEN: {hundredths(f.resume_many_channels_ms)} ms "
            f"with {f.resume_channels} channels, {hundredths(f.resume_1_channel_ms)} ms with 1; "
            f"{f.resume_repetitions} repetitions)",
            f"  (reconnect, reconnect_now() -> OPEN: "
            f"{hundredths(f.resume_many_channels_reconnect_ms)} ms / "
            f"{hundredths(f.resume_1_channel_reconnect_ms)} ms, ratio "
            f"{ratio(f.resume_100_channels_reconnect_ratio)})",
        ]
    if f.channel_redis_note:
        lines.append(f"  Redis: {f.channel_redis_note}")
    return lines


def _three(f: ChannelFigures, pattern: str) -> list[Any]:
    return [getattr(f, pattern.format(kind)) for kind in ("plain", "memory", "redis")]
