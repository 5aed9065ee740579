"""What ``python -m trio_reconnect bench`` reports: the figures, the targets, the table.

:class:`BenchResult` holds one run's figures (the fan-out's in a
:class:`~trio_reconnect._tools.bench._fanout.FanoutFigures`), judges each ratio
against its target (the ``TARGET_*`` constants, stated once here) and prints
itself as aligned text (:meth:`BenchResult.table`) or one JSON object
(:meth:`BenchResult.json`). Pure: no trio import.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import attrs

from ._chanreport import ChannelFigures, channel_passes, channel_table, channel_targets
from ._fanout import FanoutFigures
from ._publish import PublishFigures

__all__ = [
    "TARGET_FANOUT_MEMORY",
    "TARGET_FANOUT_REDIS",
    "TARGET_PIPE",
    "TARGET_PUBLISH",
    "TARGET_RECONNECT",
    "TARGET_SEQ",
    "BenchResult",
    "align",
]

#: ours / raw sequential round trips per second must be at least this.
TARGET_SEQ: Final = 0.97
#: ours / raw pipelined messages per second must be at least this.
TARGET_PIPE: Final = 0.97
#: ours drop-to-ready / raw connect-to-first-echo must be at most this.
TARGET_RECONNECT: Final = 1.25
#: ReconnectServer on the memory log / a plain broadcast, events delivered per second.
TARGET_FANOUT_MEMORY: Final = 0.9
#: ReconnectServer on the Redis log / a plain broadcast, events delivered per second.
TARGET_FANOUT_REDIS: Final = 0.85
#: Acked publishes per second through Redis / plain sends to a broadcast, one client.
TARGET_PUBLISH: Final = 0.7

Row = tuple[str, ...]


@attrs.frozen
class BenchResult:
    """One benchmark run. :meth:`as_dict` is what ``--json`` prints.

    Rates are medians over the timed rounds; ratios are medians of the
    per-round ratios ours / raw (so they need not equal the ratio of the
    medians). ``websockets_*`` are ``None`` when the package is missing.
    """

    seq_ratio: float
    pipe_ratio: float
    reconnect_ratio: float
    ours_seq_rps: float
    raw_seq_rps: float
    websockets_seq_rps: float | None
    ours_pipe_mps: float
    raw_pipe_mps: float
    websockets_pipe_mps: float | None
    websockets_seq_ratio: float | None
    websockets_pipe_ratio: float | None
    ours_reconnect_ms: float
    raw_connect_ms: float
    ours_drop_to_ready_ms: float
    ours_seq_cpu_us: float
    raw_seq_cpu_us: float
    websockets_seq_cpu_us: float | None
    ours_pipe_cpu_us: float
    raw_pipe_cpu_us: float
    websockets_pipe_cpu_us: float | None
    seq_ratios: tuple[float, ...]
    pipe_ratios: tuple[float, ...]
    reconnects_not_immediate: int
    websockets_note: str | None
    messages: int
    pipeline: int
    rounds: int
    reconnects: int
    message_size: int
    duration_s: float
    python: str
    trio: str
    trio_websocket: str
    websockets: str | None
    platform: str
    cpus: int | None
    fanout: FanoutFigures
    #: The channel figures (issue 18); ``None``: not measured (``--no-channels``).
    channels: ChannelFigures | None = None
    #: The publish figure (``None``: not measured, as in tests that build a result).
    publish: PublishFigures | None = None

    @property
    def seq_pass(self) -> bool:
        return self.seq_ratio >= TARGET_SEQ

    @property
    def pipe_pass(self) -> bool:
        return self.pipe_ratio >= TARGET_PIPE

    @property
    def reconnect_pass(self) -> bool:
        return self.reconnect_ratio <= TARGET_RECONNECT

    @property
    def fanout_memory_pass(self) -> bool:
        return self.fanout.memory_ratio >= TARGET_FANOUT_MEMORY

    @property
    def publish_pass(self) -> bool | None:
        """``None`` when there was no redis-server to measure."""
        ratio = None if self.publish is None else self.publish.ratio
        return None if ratio is None else ratio >= TARGET_PUBLISH

    @property
    def fanout_redis_pass(self) -> bool | None:
        """``None`` when there was no redis-server to measure."""
        ratio = self.fanout.redis_ratio
        return None if ratio is None else ratio >= TARGET_FANOUT_REDIS

    def as_dict(self) -> dict[str, Any]:
        """Every field (the fan-out's prefixed ``fanout_``), the targets, PASS/MISS as booleans."""
        data = attrs.asdict(self, recurse=False)
        data["seq_ratios"] = list(self.seq_ratios)
        data["pipe_ratios"] = list(self.pipe_ratios)
        del data["fanout"], data["channels"], data["publish"]
        for prefix, part in (("fanout", self.fanout), ("publish", self.publish)):
            for key, value in ({} if part is None else attrs.asdict(part)).items():
                data[f"{prefix}_{key}"] = list(value) if isinstance(value, tuple) else value
        # The channel figures' keys are named in full already; null when not measured.
        if self.channels is None:
            data.update(dict.fromkeys(a.name for a in attrs.fields(ChannelFigures)))
        else:
            for key, value in attrs.asdict(self.channels).items():
                data[key] = list(value) if isinstance(value, tuple) else value
        data["targets"] = {
            "seq": TARGET_SEQ,
            "pipe": TARGET_PIPE,
            "reconnect": TARGET_RECONNECT,
            "fanout_memory": TARGET_FANOUT_MEMORY,
            "fanout_redis": TARGET_FANOUT_REDIS,
            "publish": TARGET_PUBLISH,
            **channel_targets(),
        }
        data["pass"] = {
            "seq": self.seq_pass,
            "pipe": self.pipe_pass,
            "reconnect": self.reconnect_pass,
            "fanout_memory": self.fanout_memory_pass,
            "fanout_redis": self.fanout_redis_pass,
            "publish": self.publish_pass,
            **channel_passes(self.channels),
        }
        return data

    def json(self) -> str:
        """:meth:`as_dict` as one JSON object."""
        return json.dumps(self.as_dict(), indent=2)

    def table(self) -> str:
        """The figures and the ratios against their targets, as aligned text."""
        lines = [*_heading(self), ""]
        lines += align([("", "trio_reconnect", "trio-websocket", "websockets"), *_rate_rows(self)])
        if self.websockets_note:
            lines.append(f"  websockets: {self.websockets_note}")
        lines.append("")
        lines += align(_ratio_rows(self))
        lines.append(
            f"  (drop -> ready measured from the send of the drop request: "
            f"{self.ours_drop_to_ready_ms:.2f} ms)"
        )
        if self.reconnects_not_immediate:
            lines.append(
                f"  WARNING: {self.reconnects_not_immediate} reconnects did not follow the "
                "server's retryAfter of 0"
            )
        lines += ["", *_fanout_table(self)]
        if self.publish is not None:
            lines += ["", *_publish_table(self.publish, self.publish_pass)]
        if self.channels is not None:
            lines += ["", *channel_table(self.channels, align)]
        return "\n".join(lines)


def align(rows: Sequence[Row], *, right_from: int = 1) -> list[str]:
    """``rows`` as lines of aligned columns: the first left-aligned, the rest right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            cell.rjust(width) if i >= right_from else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _tenths(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _hundredths(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


def _heading(r: BenchResult) -> list[str]:
    return [
        f"trio_reconnect bench: {r.message_size}-byte text messages echoed over "
        "loopback TCP by a ReconnectServer in another process",
        f"{r.rounds} rounds (+1 warm-up) x {r.messages} sequential round trips "
        f"and {r.pipeline} pipelined messages per client; {r.reconnects} reconnects; "
        f"{r.duration_s:.1f} s",
        f"python {r.python}, trio {r.trio}, trio-websocket {r.trio_websocket}, "
        f"websockets {r.websockets or '-'}; {r.platform}, {r.cpus} CPUs",
    ]


def _rate_rows(r: BenchResult) -> list[Row]:
    return [
        (
            "sequential round trips/s",
            _rate(r.ours_seq_rps),
            _rate(r.raw_seq_rps),
            _rate(r.websockets_seq_rps),
        ),
        (
            "pipelined messages/s",
            _rate(r.ours_pipe_mps),
            _rate(r.raw_pipe_mps),
            _rate(r.websockets_pipe_mps),
        ),
        (
            "client CPU us per round trip",
            _tenths(r.ours_seq_cpu_us),
            _tenths(r.raw_seq_cpu_us),
            _tenths(r.websockets_seq_cpu_us),
        ),
        (
            "client CPU us per pipelined message",
            _tenths(r.ours_pipe_cpu_us),
            _tenths(r.raw_pipe_cpu_us),
            _tenths(r.websockets_pipe_cpu_us),
        ),
        (
            "drop->ready / fresh connect->echo, ms",
            f"{r.ours_reconnect_ms:.2f}",
            f"{r.raw_connect_ms:.2f}",
            "-",
        ),
    ]


def _ratio_rows(r: BenchResult) -> list[Row]:
    rows: list[Row] = [
        ("ratio (trio_reconnect / trio-websocket)", "value", "target", "result"),
        (
            "sequential round trips/s",
            f"{r.seq_ratio:.3f}",
            f">= {TARGET_SEQ}",
            _verdict(r.seq_pass),
        ),
        ("pipelined messages/s", f"{r.pipe_ratio:.3f}", f">= {TARGET_PIPE}", _verdict(r.pipe_pass)),
        (
            "reconnect: drop->ready / connect+resume+echo",
            f"{r.reconnect_ratio:.3f}",
            f"<= {TARGET_RECONNECT}",
            _verdict(r.reconnect_pass),
        ),
    ]
    if r.websockets_seq_ratio is not None and r.websockets_pipe_ratio is not None:
        rows += [
            ("websockets / trio-websocket, sequential", f"{r.websockets_seq_ratio:.3f}", "-", ""),
            ("websockets / trio-websocket, pipelined", f"{r.websockets_pipe_ratio:.3f}", "-", ""),
        ]
    return rows


def _fanout_table(r: BenchResult) -> list[str]:
    f = r.fanout
    lines = [
        f"fan-out: {f.events}-event bursts to {f.clients} clients per server (each server "
        "in a process of its own, the clients in this one)",
        f"{f.rounds} rounds (+1 warm-up), {f.latency_events} latency samples per server per round",
        "",
    ]
    lines += align([("", "plain broadcast", "memory log", "Redis log"), *_fanout_rows(f)])
    lines.append("")
    lines += align(
        [
            ("ratio (ReconnectServer / plain broadcast)", "value", "target", "result"),
            (
                "memory log, events delivered/s",
                f"{f.memory_ratio:.3f}",
                f">= {TARGET_FANOUT_MEMORY}",
                _verdict(r.fanout_memory_pass),
            ),
            (
                "Redis log, events delivered/s",
                "-" if f.redis_ratio is None else f"{f.redis_ratio:.3f}",
                f">= {TARGET_FANOUT_REDIS}",
                _verdict(r.fanout_redis_pass),
            ),
        ]
    )
    if f.redis_note:
        lines.append(f"  Redis: {f.redis_note}")
    elif f.redis_version:
        lines.append(f"  Redis: redis-server {f.redis_version} on loopback, started by the bench")
    return lines


def _fanout_rows(f: FanoutFigures) -> list[Row]:
    return [
        (
            "events delivered/s",
            f"{f.plain_eps:,.0f}",
            f"{f.memory_eps:,.0f}",
            "-" if f.redis_eps is None else f"{f.redis_eps:,.0f}",
        ),
        (
            "publish->delivery median, ms",
            _hundredths(f.plain_latency_median_ms),
            _hundredths(f.memory_latency_median_ms),
            _hundredths(f.redis_latency_median_ms),
        ),
        (
            "publish->delivery p99, ms",
            _hundredths(f.plain_latency_p99_ms),
            _hundredths(f.memory_latency_p99_ms),
            _hundredths(f.redis_latency_p99_ms),
        ),
        (
            "server CPU us per delivery",
            _tenths(f.plain_server_cpu_us),
            _tenths(f.memory_server_cpu_us),
            _tenths(f.redis_server_cpu_us),
        ),
        (
            "clients' CPU us per delivery",
            _tenths(f.plain_client_cpu_us),
            _tenths(f.memory_client_cpu_us),
            _tenths(f.redis_client_cpu_us),
        ),
    ]


def _publish_table(p: PublishFigures, verdict: bool | None) -> list[str]:
    lines = [
        f"publish: one client, {p.publishes} publishes in flight per burst, "
        f"{p.rounds} rounds (+1 warm-up); servers in processes of their own",
        "",
    ]
    lines += align(
        [
            ("", "value", "target", "result"),
            ("acked publishes/s through Redis", _rate(p.acked_mps), "", ""),
            ("plain sends/s to a broadcast, back", _rate(p.plain_mps), "", ""),
            (
                "ratio acked / plain",
                "-" if p.ratio is None else f"{p.ratio:.3f}",
                f">= {TARGET_PUBLISH}",
                _verdict(verdict),
            ),
            ("publish -> ack median, ms", _hundredths(p.rtt_median_ms), "", ""),
            ("publish -> ack p99, ms", _hundredths(p.rtt_p99_ms), "", ""),
        ]
    )
    if p.note:
        lines.append(f"  publish: {p.note}")
    return lines
