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
outside tests). docs/benchmarks.md explains every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import trio
import trio_websocket

from ..._client import ReconnectingWebSocket, open_reconnecting_websocket
from ..._protocol import ResumeHandshake
from ..._state import ConnectionState, DelaySource, Transition
from .._policy import positive_int, positive_number
from ._fanout import (
    DEFAULT_FANOUT_CLIENTS,
    DEFAULT_FANOUT_EVENTS,
    DEFAULT_FANOUT_ROUNDS,
    DEFAULT_LATENCY_EVENTS,
    FanoutError,
    FanoutFigures,
    run_fanout,
)
from ._server import DROP, DROP_CODE, READY_PREFIX

__all__ = [
    "DEFAULT_MESSAGES",
    "DEFAULT_PIPELINE",
    "DEFAULT_RECONNECTS",
    "DEFAULT_ROUNDS",
    "DEFAULT_TIMEOUT",
    "MESSAGE_SIZE",
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
#: Sequential round trips per client per round.
DEFAULT_MESSAGES: Final = 200
#: Messages in one pipelined burst, per client per round.
DEFAULT_PIPELINE: Final = 500
#: Timed rounds (after one untimed warm-up round).
DEFAULT_ROUNDS: Final = 50
#: Drop-and-reconnect repetitions (each paired with one fresh raw connection).
DEFAULT_RECONNECTS: Final = 150
#: Seconds the whole run may take before it is abandoned.
DEFAULT_TIMEOUT: Final = 600.0

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

#: Seconds the server process has to announce its port.
_SERVER_START_TIMEOUT: Final = 30.0
#: Seconds it has to exit once its stdin is closed (then it is killed).
_SERVER_EXIT_TIMEOUT: Final = 5.0
#: How long each reconnecting connection must have been ready before it is
#: dropped; the client's ``stable_after`` is half of it, so that every drop
#: is of a stable connection and the ``retryAfter: 0`` is honoured as is
#: (the no-hammering rule only floors hints after *failed* attempts).
_STABLE_FOR: Final = 0.002

Send = Callable[[str], Awaitable[None]]
Receive = Callable[[], Awaitable[object]]


class BenchError(RuntimeError):
    """The benchmark could not run (server did not start, a wrong echo ...)."""


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
    def fanout_redis_pass(self) -> bool | None:
        """``None`` when there was no redis-server to measure."""
        ratio = self.fanout.redis_ratio
        return None if ratio is None else ratio >= TARGET_FANOUT_REDIS

    def as_dict(self) -> dict[str, Any]:
        """Every field (the fan-out's prefixed ``fanout_``), the targets, PASS/MISS as booleans."""
        data = attrs.asdict(self, recurse=False)
        data["seq_ratios"] = list(self.seq_ratios)
        data["pipe_ratios"] = list(self.pipe_ratios)
        del data["fanout"]
        for key, value in attrs.asdict(self.fanout).items():
            data[f"fanout_{key}"] = list(value) if isinstance(value, tuple) else value
        data["targets"] = {
            "seq": TARGET_SEQ,
            "pipe": TARGET_PIPE,
            "reconnect": TARGET_RECONNECT,
            "fanout_memory": TARGET_FANOUT_MEMORY,
            "fanout_redis": TARGET_FANOUT_REDIS,
        }
        data["pass"] = {
            "seq": self.seq_pass,
            "pipe": self.pipe_pass,
            "reconnect": self.reconnect_pass,
            "fanout_memory": self.fanout_memory_pass,
            "fanout_redis": self.fanout_redis_pass,
        }
        return data

    def json(self) -> str:
        """:meth:`as_dict` as one JSON object."""
        return json.dumps(self.as_dict(), indent=2)

    def table(self) -> str:
        """The figures and the ratios against their targets, as aligned text."""

        def rate(value: float | None) -> str:
            return "-" if value is None else f"{value:,.0f}"

        def cpu(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        def verdict(ok: bool) -> str:
            return "PASS" if ok else "MISS"

        lines = [
            f"trio_reconnect bench: {self.message_size}-byte text messages echoed over "
            "loopback TCP by a ReconnectServer in another process",
            f"{self.rounds} rounds (+1 warm-up) x {self.messages} sequential round trips "
            f"and {self.pipeline} pipelined messages per client; {self.reconnects} reconnects; "
            f"{self.duration_s:.1f} s",
            f"python {self.python}, trio {self.trio}, trio-websocket {self.trio_websocket}, "
            f"websockets {self.websockets or '-'}; {self.platform}, {self.cpus} CPUs",
            "",
        ]
        header = ("", "trio_reconnect", "trio-websocket", "websockets")
        rows = [
            (
                "sequential round trips/s",
                rate(self.ours_seq_rps),
                rate(self.raw_seq_rps),
                rate(self.websockets_seq_rps),
            ),
            (
                "pipelined messages/s",
                rate(self.ours_pipe_mps),
                rate(self.raw_pipe_mps),
                rate(self.websockets_pipe_mps),
            ),
            (
                "client CPU us per round trip",
                cpu(self.ours_seq_cpu_us),
                cpu(self.raw_seq_cpu_us),
                cpu(self.websockets_seq_cpu_us),
            ),
            (
                "client CPU us per pipelined message",
                cpu(self.ours_pipe_cpu_us),
                cpu(self.raw_pipe_cpu_us),
                cpu(self.websockets_pipe_cpu_us),
            ),
            (
                "drop->ready / fresh connect->echo, ms",
                f"{self.ours_reconnect_ms:.2f}",
                f"{self.raw_connect_ms:.2f}",
                "-",
            ),
        ]
        lines += _align([header, *rows], right_from=1)
        if self.websockets_note:
            lines.append(f"  websockets: {self.websockets_note}")
        lines.append("")
        ratio_rows = [
            ("ratio (trio_reconnect / trio-websocket)", "value", "target", "result"),
            (
                "sequential round trips/s",
                f"{self.seq_ratio:.3f}",
                f">= {TARGET_SEQ}",
                verdict(self.seq_pass),
            ),
            (
                "pipelined messages/s",
                f"{self.pipe_ratio:.3f}",
                f">= {TARGET_PIPE}",
                verdict(self.pipe_pass),
            ),
            (
                "reconnect: drop->ready / connect+resume+echo",
                f"{self.reconnect_ratio:.3f}",
                f"<= {TARGET_RECONNECT}",
                verdict(self.reconnect_pass),
            ),
        ]
        if self.websockets_seq_ratio is not None and self.websockets_pipe_ratio is not None:
            ratio_rows += [
                (
                    "websockets / trio-websocket, sequential",
                    f"{self.websockets_seq_ratio:.3f}",
                    "-",
                    "",
                ),
                (
                    "websockets / trio-websocket, pipelined",
                    f"{self.websockets_pipe_ratio:.3f}",
                    "-",
                    "",
                ),
            ]
        lines += _align(ratio_rows, right_from=1)
        lines.append(
            f"  (drop -> ready measured from the send of the drop request: "
            f"{self.ours_drop_to_ready_ms:.2f} ms)"
        )
        if self.reconnects_not_immediate:
            lines.append(
                f"  WARNING: {self.reconnects_not_immediate} reconnects did not follow the "
                "server's retryAfter of 0"
            )
        lines += ["", *self._fanout_table()]
        return "\n".join(lines)

    def _fanout_table(self) -> list[str]:
        f = self.fanout

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        def us(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        lines = [
            f"fan-out: {f.events}-event bursts to {f.clients} clients per server (each server "
            "in a process of its own, the clients in this one)",
            f"{f.rounds} rounds (+1 warm-up), {f.latency_events} latency samples per server "
            "per round",
            "",
        ]
        header = ("", "plain broadcast", "memory log", "Redis log")
        rows = [
            (
                "events delivered/s",
                f"{f.plain_eps:,.0f}",
                f"{f.memory_eps:,.0f}",
                "-" if f.redis_eps is None else f"{f.redis_eps:,.0f}",
            ),
            (
                "publish->delivery median, ms",
                ms(f.plain_latency_median_ms),
                ms(f.memory_latency_median_ms),
                ms(f.redis_latency_median_ms),
            ),
            (
                "publish->delivery p99, ms",
                ms(f.plain_latency_p99_ms),
                ms(f.memory_latency_p99_ms),
                ms(f.redis_latency_p99_ms),
            ),
            (
                "server CPU us per delivery",
                us(f.plain_server_cpu_us),
                us(f.memory_server_cpu_us),
                us(f.redis_server_cpu_us),
            ),
            (
                "clients' CPU us per delivery",
                us(f.plain_client_cpu_us),
                us(f.memory_client_cpu_us),
                us(f.redis_client_cpu_us),
            ),
        ]
        lines += _align([header, *rows], right_from=1)
        lines.append("")
        redis_pass = self.fanout_redis_pass
        ratio_rows = [
            ("ratio (ReconnectServer / plain broadcast)", "value", "target", "result"),
            (
                "memory log, events delivered/s",
                f"{f.memory_ratio:.3f}",
                f">= {TARGET_FANOUT_MEMORY}",
                "PASS" if self.fanout_memory_pass else "MISS",
            ),
            (
                "Redis log, events delivered/s",
                "-" if f.redis_ratio is None else f"{f.redis_ratio:.3f}",
                f">= {TARGET_FANOUT_REDIS}",
                "-" if redis_pass is None else ("PASS" if redis_pass else "MISS"),
            ),
        ]
        lines += _align(ratio_rows, right_from=1)
        if f.redis_note:
            lines.append(f"  Redis: {f.redis_note}")
        elif f.redis_version:
            lines.append(
                f"  Redis: redis-server {f.redis_version} on loopback, started by the bench"
            )
        return lines


def _align(rows: Sequence[tuple[str, ...]], *, right_from: int) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            cell.rjust(width) if i >= right_from else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


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


def _payloads(count: int, size: int) -> list[str]:
    """``count`` distinct ASCII messages of ``size`` characters (not JSON)."""
    return [f"m{i:09d}".ljust(size, "x")[:size] for i in range(count)]


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ------------------------------------------------------------------ the server


async def _read_line(stream: trio.abc.ReceiveStream) -> str:
    data = bytearray()
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise BenchError(f"the bench server exited before announcing its port: {data!r}")
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()


@contextlib.asynccontextmanager
async def bench_server(host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run :mod:`trio_reconnect._tools.bench._server` in a child process; yield its port.

    On the way out its stdin is closed (it exits on its own), and it is
    killed if it has not exited within a few seconds.
    """
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_reconnect._tools.bench._server", "--host", host],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(_SERVER_START_TIMEOUT):
            line = await _read_line(process.stdout)
        if not line.startswith(READY_PREFIX):
            raise BenchError(f"unexpected first line from the bench server: {line!r}")
        yield int(line[len(READY_PREFIX) :])
    finally:
        with trio.CancelScope(shield=True):
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()  # end of file on stdin: the server exits
            with trio.move_on_after(_SERVER_EXIT_TIMEOUT):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


# ------------------------------------------------------------------ throughput


async def _sequential(send: Send, receive: Receive, payloads: Sequence[str]) -> tuple[float, float]:
    """Round trips per second (send one, wait for its echo, repeat), and CPU s per message."""
    cpu = time.process_time()
    start = trio.current_time()
    for payload in payloads:
        await send(payload)
        echo = await receive()
        if echo != payload:
            raise BenchError(f"wrong echo: sent {payload[:16]!r}..., got {echo!r:.40}")
    elapsed = trio.current_time() - start
    return len(payloads) / elapsed, (time.process_time() - cpu) / len(payloads)


async def _pipelined(send: Send, receive: Receive, payloads: Sequence[str]) -> tuple[float, float]:
    """Messages per second (one task sends them all while this one takes the
    echoes), and CPU s per message."""

    async def sender() -> None:
        for payload in payloads:
            await send(payload)

    cpu = time.process_time()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        for payload in payloads:
            echo = await receive()
            if echo != payload:
                raise BenchError(f"wrong echo: expected {payload[:16]!r}..., got {echo!r:.40}")
        elapsed = trio.current_time() - start
    return len(payloads) / elapsed, (time.process_time() - cpu) / len(payloads)


async def _resume_by_hand(send: Send, receive: Receive) -> None:
    """The resume handshake without our client: the frames come from :mod:`._protocol`."""
    handshake = ResumeHandshake(None)
    await send(handshake.frame())
    while handshake.result is None:
        message = await receive()
        if not isinstance(message, str | bytes):
            raise BenchError(f"not a websocket message: {message!r:.40}")
        handshake.receive(message)


async def _raw_resume(ws: trio_websocket.WebSocketConnection) -> None:
    """The resume handshake on a raw trio-websocket connection."""
    await _resume_by_hand(ws.send_message, ws.get_message)


@attrs.define(eq=False)
class _Rates:
    seq: list[float] = attrs.field(factory=list)
    pipe: list[float] = attrs.field(factory=list)
    seq_cpu: list[float] = attrs.field(factory=list)
    pipe_cpu: list[float] = attrs.field(factory=list)


async def _throughput(
    url: str,
    *,
    messages: int,
    pipeline: int,
    rounds: int,
    size: int,
    websockets_connect: Callable[..., Any] | None,
) -> dict[str, _Rates]:
    seq_payloads = _payloads(messages, size)
    pipe_payloads = _payloads(pipeline, size)
    clients: dict[str, tuple[Send, Receive]] = {}
    async with contextlib.AsyncExitStack() as stack:
        ours = await stack.enter_async_context(open_reconnecting_websocket(url, ping_interval=None))
        await ours.wait_ready()
        clients["ours"] = (ours.send_message, ours.get_message)
        raw = await stack.enter_async_context(trio_websocket.open_websocket_url(url))
        await _raw_resume(raw)
        clients["raw"] = (raw.send_message, raw.get_message)
        if websockets_connect is not None:
            other = await stack.enter_async_context(
                websockets_connect(url, ping_interval=None, compression=None, proxy=None)
            )
            await _resume_by_hand(other.send, other.recv)
            clients["websockets"] = (other.send, other.recv)

        rates = {name: _Rates() for name in clients}
        names = list(clients)
        for number in range(rounds + 1):  # round 0 is the warm-up
            shift = number % len(names)
            order = names[shift:] + names[:shift]
            for name in order:
                rate, cpu = await _sequential(*clients[name], seq_payloads)
                if number:
                    rates[name].seq.append(rate)
                    rates[name].seq_cpu.append(cpu)
            for name in order:
                rate, cpu = await _pipelined(*clients[name], pipe_payloads)
                if number:
                    rates[name].pipe.append(rate)
                    rates[name].pipe_cpu.append(cpu)
    return rates


# ------------------------------------------------------------------- reconnect


@attrs.define(eq=False)
class _ReconnectWatch:
    """Timestamps from ``on_transition``: the last loss and the last ``OPEN``."""

    opened_at: float | None = None
    lost_at: float | None = None
    lost_close_code: int | None = None
    not_immediate: int = 0
    opened: trio.Event = attrs.field(factory=trio.Event)

    def on_transition(self, transition: Transition) -> None:
        if transition.state is ConnectionState.BACKING_OFF:
            self.lost_at = transition.time
            self.lost_close_code = transition.close_code
            if transition.delay != 0 or transition.delay_source is not DelaySource.SERVER:
                self.not_immediate += 1
        if transition.state is ConnectionState.OPEN:
            self.opened_at = transition.time
            self.opened.set()


async def _reconnect_once(ws: ReconnectingWebSocket, watch: _ReconnectWatch) -> tuple[float, float]:
    """Drop ``ws`` once; ``(close observed -> ready, drop sent -> ready)`` in seconds."""
    await ws.wait_ready()
    assert watch.opened_at is not None
    stable_at = watch.opened_at + _STABLE_FOR
    if trio.current_time() < stable_at:
        await trio.sleep_until(stable_at)
    watch.opened = trio.Event()
    watch.lost_at = None
    sent_at = trio.current_time()
    await ws.send_message(DROP)
    await watch.opened.wait()
    if watch.lost_at is None or watch.opened_at is None:
        raise BenchError("the reconnect was not observed")
    if watch.lost_close_code != DROP_CODE:
        raise BenchError(f"expected a {DROP_CODE} close, got {watch.lost_close_code}")
    return watch.opened_at - watch.lost_at, watch.opened_at - sent_at


async def _raw_connect_once(url: str, payload: str) -> float:
    """Seconds for a fresh trio-websocket connection: connect, resume, one echo."""
    start = trio.current_time()
    async with trio_websocket.open_websocket_url(url) as ws:
        await _raw_resume(ws)
        await ws.send_message(payload)
        echo = await ws.get_message()
        elapsed = trio.current_time() - start
    if echo != payload:
        raise BenchError(f"wrong echo: {echo!r:.40}")
    return elapsed


async def _reconnects(
    url: str, *, repetitions: int, size: int
) -> tuple[list[float], list[float], list[float], int]:
    watch = _ReconnectWatch()
    payload = _payloads(1, size)[0]
    ours: list[float] = []
    ours_from_drop: list[float] = []
    raw: list[float] = []
    async with open_reconnecting_websocket(
        url,
        ping_interval=None,
        stable_after=_STABLE_FOR / 2,
        max_attempts=None,
        on_transition=watch.on_transition,
    ) as ws:
        await ws.wait_ready()
        await _reconnect_once(ws, watch)  # warm-up, untimed
        await _raw_connect_once(url, payload)
        watch.not_immediate = 0
        for _ in range(repetitions):
            observed, from_drop = await _reconnect_once(ws, watch)
            ours.append(observed)
            ours_from_drop.append(from_drop)
            raw.append(await _raw_connect_once(url, payload))
    return ours, ours_from_drop, raw, watch.not_immediate


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
        redis: Measure the Redis fan-out too (when a redis-server is found).

    Raises:
        ValueError: for a count below 1 or a size below 16.
        BenchError: a server did not start, an echo was wrong, or a fan-out
            client lost its connection.
    """
    for name, value in (
        ("messages", messages),
        ("pipeline", pipeline),
        ("rounds", rounds),
        ("reconnects", reconnects),
        ("fanout_clients", fanout_clients),
        ("fanout_events", fanout_events),
        ("fanout_rounds", fanout_rounds),
        ("latency_events", latency_events),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer of at least 16, got {size!r}")
    if websockets:
        websockets_connect, note = _websockets_connect()
    else:
        websockets_connect, note = None, "skipped (--no-websockets)"

    started = trio.current_time()
    async with bench_server() as port:
        url = f"ws://127.0.0.1:{port}/bench"
        rates = await _throughput(
            url,
            messages=messages,
            pipeline=pipeline,
            rounds=rounds,
            size=size,
            websockets_connect=websockets_connect,
        )
        ours_rc, ours_from_drop, raw_rc, not_immediate = await _reconnects(
            url, repetitions=reconnects, size=size
        )
    try:
        fanout = await run_fanout(
            clients=fanout_clients,
            events=fanout_events,
            rounds=fanout_rounds,
            latency_events=latency_events,
            redis=redis,
        )
    except FanoutError as exc:
        raise BenchError(str(exc)) from exc
    duration = trio.current_time() - started

    def paired(name: str, kind: str) -> list[float]:
        mine = getattr(rates[name], kind)
        base = getattr(rates["raw"], kind)
        return [a / b for a, b in zip(mine, base, strict=True)]

    other = rates.get("websockets")
    ours_reconnect = _median(ours_rc)
    raw_connect = _median(raw_rc)
    return BenchResult(
        seq_ratio=_median(paired("ours", "seq")),
        pipe_ratio=_median(paired("ours", "pipe")),
        reconnect_ratio=ours_reconnect / raw_connect,
        ours_seq_rps=_median(rates["ours"].seq),
        raw_seq_rps=_median(rates["raw"].seq),
        websockets_seq_rps=None if other is None else _median(other.seq),
        ours_pipe_mps=_median(rates["ours"].pipe),
        raw_pipe_mps=_median(rates["raw"].pipe),
        websockets_pipe_mps=None if other is None else _median(other.pipe),
        websockets_seq_ratio=None if other is None else _median(paired("websockets", "seq")),
        websockets_pipe_ratio=None if other is None else _median(paired("websockets", "pipe")),
        ours_reconnect_ms=ours_reconnect * 1000,
        raw_connect_ms=raw_connect * 1000,
        ours_drop_to_ready_ms=_median(ours_from_drop) * 1000,
        ours_seq_cpu_us=_median(rates["ours"].seq_cpu) * 1e6,
        raw_seq_cpu_us=_median(rates["raw"].seq_cpu) * 1e6,
        websockets_seq_cpu_us=None if other is None else _median(other.seq_cpu) * 1e6,
        ours_pipe_cpu_us=_median(rates["ours"].pipe_cpu) * 1e6,
        raw_pipe_cpu_us=_median(rates["raw"].pipe_cpu) * 1e6,
        websockets_pipe_cpu_us=None if other is None else _median(other.pipe_cpu) * 1e6,
        seq_ratios=tuple(paired("ours", "seq")),
        pipe_ratios=tuple(paired("ours", "pipe")),
        reconnects_not_immediate=not_immediate,
        websockets_note=note,
        messages=messages,
        pipeline=pipeline,
        rounds=rounds,
        reconnects=reconnects,
        message_size=size,
        duration_s=duration,
        python=platform.python_version(),
        trio=trio.__version__,
        trio_websocket=_version("trio-websocket") or "?",
        websockets=_version("websockets") if websockets_connect is not None else None,
        platform=platform.platform(terse=True),
        cpus=os.cpu_count(),
        fanout=fanout,
    )


# ------------------------------------------------------------ the command line


def _message_size(text: str) -> int:
    value = positive_int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"must be at least 16, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's options."""
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
        help=f"message size in bytes, at least 16 (default {MESSAGE_SIZE})",
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
        "--no-redis", action="store_true", help="skip the Redis fan-out (its figures are null)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


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
