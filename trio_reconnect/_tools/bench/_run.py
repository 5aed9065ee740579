"""``python -m trio_reconnect bench``: what the reconnecting layer costs, as ratios.

The echo server (:mod:`trio_reconnect._tools.bench._server`) runs in another process
and is reached over loopback TCP; one process measures, one serves, so the
client is not sharing its event loop (or its core) with the server. Three
clients are connected to the same server at once:

* ``ours``: :func:`~trio_reconnect.open_reconnecting_websocket`, pings off;
* ``raw``: trio-websocket's ``open_websocket_url``, the library ours is built
  on, doing the resume handshake by hand;
* ``websockets``: the Trio client of the ``websockets`` package (16 or
  newer), for comparison, when it is installed.

Each round measures, for every client in a rotating order, the sequential
round trips per second (send one message, wait for its echo, repeat) and the
pipelined messages per second (a sender task sends a burst without waiting
while the receiving task takes the echoes). Machines are noisy, so the
figure of merit is the ratio ours / raw taken within the same round; the
reported ratio is the median over the rounds, and the reported rates are the
medians of each client's rates. A first, untimed round warms everything up.
Each measurement also records the measuring process's CPU time per message
(``time.process_time()``; the server's process is not counted), which moves
much less than the rates when other programs load the machine.

The reconnect figure: a separate reconnecting client asks the server to drop
it (``"__drop__"``: close 1012 with ``retryAfter: 0``) and its ``on_transition``
timestamps give the time from the close it observes (the transition out of
``OPEN``) to ``OPEN`` on the new connection (after ``ready``). The baseline,
measured alternately with it, is a fresh trio-websocket connection: TCP
connect, websocket handshake, the resume handshake up to ``ready``, and one
echoed message. Both are medians over the repetitions.

Wall-clock timings use ``trio.current_time()`` (the real monotonic clock
outside tests). docs/results/benchmarks.md explains every figure.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

import trio

from ..._validators import check_int
from .._policy import positive_int, positive_number
from ._chanfanout import ChannelOptions, add_channel_arguments, channel_options, run_channels
from ._chanreport import ChannelFigures
from ._echo_clients import BenchError, Rates, measure_reconnects, measure_throughput
from ._echo_process import bench_server
from ._fanout import (
    DEFAULT_FANOUT_CLIENTS,
    DEFAULT_FANOUT_EVENTS,
    DEFAULT_FANOUT_ROUNDS,
    DEFAULT_LATENCY_EVENTS,
    FanoutError,
    FanoutFigures,
    run_fanout,
)
from ._publish import DEFAULT_PUBLISHES, run_publish
from ._report import (
    TARGET_FANOUT_MEMORY,
    TARGET_FANOUT_REDIS,
    TARGET_PIPE,
    TARGET_RECONNECT,
    TARGET_SEQ,
    BenchResult,
)

__all__ = [
    "DEFAULT_MESSAGES",
    "DEFAULT_PIPELINE",
    "DEFAULT_RECONNECTS",
    "DEFAULT_ROUNDS",
    "DEFAULT_TIMEOUT",
    "MESSAGE_SIZE",
    "MIN_MESSAGE_SIZE",
    "TARGET_FANOUT_MEMORY",
    "TARGET_FANOUT_REDIS",
    "TARGET_PIPE",
    "TARGET_RECONNECT",
    "TARGET_SEQ",
    "BenchError",
    "BenchResult",
    "add_arguments",
    "bench_server",
    "run_bench",
    "run_command",
]

#: Size of every echoed message, in bytes (ASCII text, so also characters).
MESSAGE_SIZE: Final = 100
#: The smallest message size (``echo_payloads`` numbers each message in its
#: first 10 characters, so that no two are alike).
MIN_MESSAGE_SIZE: Final = 16
#: Sequential round trips per client per round.
DEFAULT_MESSAGES: Final = 200
#: Messages in one pipelined burst, per client per round.
DEFAULT_PIPELINE: Final = 500
#: Timed rounds (after one untimed warm-up round).
DEFAULT_ROUNDS: Final = 50
#: Drop-and-reconnect repetitions (each paired with one fresh raw connection).
DEFAULT_RECONNECTS: Final = 150
#: Seconds the whole run may take before it is abandoned.
DEFAULT_TIMEOUT: Final = 900.0
#: The channel figures' sizes: issue 18's.
DEFAULT_CHANNEL_OPTIONS: Final = ChannelOptions()

#: ``--no-websockets``: no client, and the note that says so.
_NO_WEBSOCKETS: Final[tuple[None, str]] = (None, "skipped (--no-websockets)")


# ------------------------------------------------------------------------ run


async def run_bench(
    *,
    messages: int = DEFAULT_MESSAGES,
    pipeline: int = DEFAULT_PIPELINE,
    rounds: int = DEFAULT_ROUNDS,
    reconnects: int = DEFAULT_RECONNECTS,
    size: int = MESSAGE_SIZE,
    websockets: bool = True,
    fanout_clients: int = DEFAULT_FANOUT_CLIENTS,
    fanout_events: int = DEFAULT_FANOUT_EVENTS,
    fanout_rounds: int = DEFAULT_FANOUT_ROUNDS,
    latency_events: int = DEFAULT_LATENCY_EVENTS,
    redis: bool = True,
    publishes: int = DEFAULT_PUBLISHES,
    channels: ChannelOptions | None = DEFAULT_CHANNEL_OPTIONS,
) -> BenchResult:
    """Start the echo server process, measure, stop it; then the fan-out; return the figures.

    Args:
        messages: Sequential round trips per client per round.
        pipeline: Messages in one pipelined burst per client per round.
        rounds: Timed rounds (one untimed warm-up round comes first).
        reconnects: Drop-and-reconnect repetitions (and as many raw connects).
        size: Message size in bytes (at least 16).
        websockets: Include the ``websockets`` comparison row if installed.
        fanout_clients: Clients of each fan-out server.
        fanout_events: Events in one fan-out burst.
        fanout_rounds: Timed fan-out rounds (after one warm-up round).
        latency_events: Latency samples per fan-out server per round.
        redis: Measure the Redis fan-out and the publish figure too (when a
            redis-server is found).
        publishes: Publishes per burst of the publish figure (its rounds
            are the fan-out's).
        channels: The sizes of the channel figures (``None``: not measured).

    Raises:
        ValueError: for a count below 1 or a size below 16.
        BenchError: a server did not start, an echo was wrong, or a fan-out
            client lost its connection.
    """
    _check_options(
        size=size,
        messages=messages,
        pipeline=pipeline,
        rounds=rounds,
        reconnects=reconnects,
        fanout_clients=fanout_clients,
        fanout_events=fanout_events,
        fanout_rounds=fanout_rounds,
        latency_events=latency_events,
        publishes=publishes,
    )
    websockets_connect, note = _websockets_connect() if websockets else _NO_WEBSOCKETS
    started = trio.current_time()
    async with bench_server() as port:
        url = f"ws://127.0.0.1:{port}/bench"
        rates = await measure_throughput(
            url,
            messages=messages,
            pipeline=pipeline,
            rounds=rounds,
            size=size,
            websockets_connect=websockets_connect,
        )
        timings = await measure_reconnects(url, repetitions=reconnects, size=size)
    fanout = await _fanout(
        clients=fanout_clients,
        events=fanout_events,
        rounds=fanout_rounds,
        latency_events=latency_events,
        redis=redis,
    )
    publish = await run_publish(publishes=publishes, rounds=fanout_rounds, redis=redis)
    channel_figures = None if channels is None else await _channels(channels, redis=redis)
    return BenchResult(
        **_throughput_figures(rates),
        **_reconnect_figures(timings),
        websockets_note=note,
        messages=messages,
        pipeline=pipeline,
        rounds=rounds,
        reconnects=reconnects,
        message_size=size,
        duration_s=trio.current_time() - started,
        **_environment(websockets=websockets_connect is not None),
        fanout=fanout,
        publish=publish,
        channels=channel_figures,
    )


async def _channels(options: ChannelOptions, *, redis: bool) -> ChannelFigures:
    """:func:`run_channels`, its failure a :class:`BenchError`."""
    try:
        return await run_channels(options, redis=redis)
    except FanoutError as exc:
        raise BenchError(str(exc)) from exc


async def _fanout(**options: Any) -> FanoutFigures:
    """:func:`run_fanout`, its failure a :class:`BenchError`."""
    try:
        return await run_fanout(**options)
    except FanoutError as exc:
        raise BenchError(str(exc)) from exc


def _environment(*, websockets: bool) -> dict[str, Any]:
    """The :class:`BenchResult` fields naming the versions and the machine."""
    return {
        "python": platform.python_version(),
        "trio": trio.__version__,
        "trio_websocket": _version("trio-websocket") or "?",
        "websockets": _version("websockets") if websockets else None,
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
    }


def _check_options(*, size: int, **counts: int) -> None:
    """Raise ``ValueError`` for a count below 1 or a message size below 16."""
    for name, value in counts.items():
        check_int(name, value, minimum=1)
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_MESSAGE_SIZE:
        raise ValueError(f"size must be an integer of at least {MIN_MESSAGE_SIZE}, got {size!r}")


def _throughput_figures(rates: dict[str, Rates]) -> dict[str, Any]:
    """The :class:`BenchResult` fields of the rounds: medians, per-round ratios to ``raw``."""

    def paired(name: str, kind: str) -> list[float]:
        mine = getattr(rates[name], kind)
        base = getattr(rates["raw"], kind)
        return [a / b for a, b in zip(mine, base, strict=True)]

    other = rates.get("websockets")
    return {
        "seq_ratio": _median(paired("ours", "seq")),
        "pipe_ratio": _median(paired("ours", "pipe")),
        "ours_seq_rps": _median(rates["ours"].seq),
        "raw_seq_rps": _median(rates["raw"].seq),
        "websockets_seq_rps": None if other is None else _median(other.seq),
        "ours_pipe_mps": _median(rates["ours"].pipe),
        "raw_pipe_mps": _median(rates["raw"].pipe),
        "websockets_pipe_mps": None if other is None else _median(other.pipe),
        "websockets_seq_ratio": None if other is None else _median(paired("websockets", "seq")),
        "websockets_pipe_ratio": None if other is None else _median(paired("websockets", "pipe")),
        "ours_seq_cpu_us": _median(rates["ours"].seq_cpu) * 1e6,
        "raw_seq_cpu_us": _median(rates["raw"].seq_cpu) * 1e6,
        "websockets_seq_cpu_us": None if other is None else _median(other.seq_cpu) * 1e6,
        "ours_pipe_cpu_us": _median(rates["ours"].pipe_cpu) * 1e6,
        "raw_pipe_cpu_us": _median(rates["raw"].pipe_cpu) * 1e6,
        "websockets_pipe_cpu_us": None if other is None else _median(other.pipe_cpu) * 1e6,
        "seq_ratios": tuple(paired("ours", "seq")),
        "pipe_ratios": tuple(paired("ours", "pipe")),
    }


def _reconnect_figures(
    timings: tuple[list[float], list[float], list[float], int],
) -> dict[str, Any]:
    """The :class:`BenchResult` fields of :func:`measure_reconnects`'s timings."""
    ours_rc, ours_from_drop, raw_rc, not_immediate = timings
    ours_reconnect = _median(ours_rc)
    raw_connect = _median(raw_rc)
    return {
        "reconnect_ratio": ours_reconnect / raw_connect,
        "ours_reconnect_ms": ours_reconnect * 1000,
        "raw_connect_ms": raw_connect * 1000,
        "ours_drop_to_ready_ms": _median(ours_from_drop) * 1000,
        "reconnects_not_immediate": not_immediate,
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _websockets_connect() -> tuple[Callable[..., Any] | None, str | None]:
    """``websockets.trio.client.connect``, or ``None`` and why it is unavailable.

    Imported lazily and untyped: ``websockets`` is not a dependency.
    """
    try:
        module: Any = importlib.import_module("websockets.trio.client")
    except ImportError as exc:
        version = _version("websockets")
        if version is None:
            return None, "not installed (pip install 'websockets>=16'); row skipped"
        return None, f"websockets {version} has no Trio client ({exc}); needs >= 16; row skipped"
    connect: Callable[..., Any] = module.connect
    return connect, None


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ------------------------------------------------------------ the command line


def _message_size(text: str) -> int:
    value = positive_int(text)
    if value < MIN_MESSAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_MESSAGE_SIZE}, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
    _echo_arguments(parser)
    _fanout_arguments(parser)
    add_channel_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _echo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the echo figures (throughput and reconnect)."""
    parser.add_argument(
        "--messages",
        type=positive_int,
        default=DEFAULT_MESSAGES,
        help=f"sequential round trips per client per round (default {DEFAULT_MESSAGES})",
    )
    parser.add_argument(
        "--pipeline",
        type=positive_int,
        default=DEFAULT_PIPELINE,
        help=f"messages per pipelined burst per client per round (default {DEFAULT_PIPELINE})",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=DEFAULT_ROUNDS,
        help=f"timed rounds, after one warm-up round (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--reconnects",
        type=positive_int,
        default=DEFAULT_RECONNECTS,
        help=f"drop-and-reconnect repetitions (default {DEFAULT_RECONNECTS})",
    )
    parser.add_argument(
        "--size",
        type=_message_size,
        default=MESSAGE_SIZE,
        help=f"message size in bytes, at least {MIN_MESSAGE_SIZE} (default {MESSAGE_SIZE})",
    )
    parser.add_argument(
        "--timeout",
        type=positive_number,
        default=DEFAULT_TIMEOUT,
        help=f"abandon the run after this many seconds (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--no-websockets", action="store_true", help="skip the websockets comparison row"
    )


def _fanout_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the fan-out figures."""
    parser.add_argument(
        "--fanout-clients",
        type=positive_int,
        default=DEFAULT_FANOUT_CLIENTS,
        help=f"clients of each fan-out server (default {DEFAULT_FANOUT_CLIENTS})",
    )
    parser.add_argument(
        "--fanout-events",
        type=positive_int,
        default=DEFAULT_FANOUT_EVENTS,
        help=f"events per fan-out burst (default {DEFAULT_FANOUT_EVENTS})",
    )
    parser.add_argument(
        "--fanout-rounds",
        type=positive_int,
        default=DEFAULT_FANOUT_ROUNDS,
        help=f"timed fan-out rounds, after one warm-up round (default {DEFAULT_FANOUT_ROUNDS})",
    )
    parser.add_argument(
        "--latency-events",
        type=positive_int,
        default=DEFAULT_LATENCY_EVENTS,
        help=f"latency samples per fan-out server per round (default {DEFAULT_LATENCY_EVENTS})",
    )
    parser.add_argument(
        "--publishes",
        type=positive_int,
        default=DEFAULT_PUBLISHES,
        help=f"publishes per burst of the publish figure (default {DEFAULT_PUBLISHES})",
    )
    parser.add_argument(
        "--no-redis",
        action="store_true",
        help="skip every figure on Redis: fan-out, publish, channels (they are null)",
    )


def run_command(args: argparse.Namespace) -> int:
    """Run ``bench`` with parsed ``args``; print the table or the JSON; return 0.

    The ratios are informational: a MISS does not change the exit status.
    When no redis-server is found, one line on stderr says so and the Redis
    figures are null. A run that fails prints one line on stderr and returns 1.

    Raises:
        trio.TooSlowError: the run took longer than ``--timeout``.
    """

    async def bench() -> BenchResult:
        with trio.fail_after(args.timeout):
            return await run_bench(
                messages=args.messages,
                pipeline=args.pipeline,
                rounds=args.rounds,
                reconnects=args.reconnects,
                size=args.size,
                websockets=not args.no_websockets,
                fanout_clients=args.fanout_clients,
                fanout_events=args.fanout_events,
                fanout_rounds=args.fanout_rounds,
                latency_events=args.latency_events,
                redis=not args.no_redis,
                publishes=args.publishes,
                channels=channel_options(args),
            )

    try:
        result = trio.run(bench)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr, flush=True)
        return 1
    if result.fanout.redis_note is not None and not args.no_redis:
        print(f"bench: Redis fan-out not measured: {result.fanout.redis_note}", file=sys.stderr)
    print(result.json() if args.json else result.table(), flush=True)
    return 0
