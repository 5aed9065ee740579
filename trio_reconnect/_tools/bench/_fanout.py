"""The fan-out figure of ``python -m trio_reconnect bench``: events/s delivered to many clients.

Three servers run side by side, each in a child process of its own
(:mod:`trio_reconnect._tools.bench._fanout_server`: ``plain``, a minimal
broadcast on trio-websocket alone; ``memory`` and ``redis``, a
:class:`~trio_reconnect.server.ReconnectServer` on a
:class:`~trio_reconnect.server.ReplayLog` or on a
:class:`~trio_reconnect.server.redis.RedisStreamLog`), listening on
127.0.0.1. The Redis one uses a redis-server the bench starts itself
(:class:`~trio_reconnect.testing._redis_server.RedisServer`). The clients
(:mod:`trio_reconnect._tools.bench._crowd`) live in this process; all the
clients of all three servers stay connected for the whole run.

A burst: every client of one server is told to expect N more frames, the
server is told to publish N, and each client records ``time.monotonic()`` as
it completes its N-th frame. The rate is ``N * clients / (last arrival -
stamp)``. ``time.monotonic()`` is the system's monotonic clock, the same in
both processes on Linux and macOS. A latency sample is a burst of one event:
``arrival - stamp`` for every client (from just before the publish to the
delivery, the whole fan-out to all the clients included).

Rounds are interleaved as in the rest of the bench: each round bursts every
server once, in a rotating order, then takes the latency samples; the first
round is a warm-up. The ratios are the medians of the per-round ratios
``memory / plain`` and ``redis / plain``. Each burst also records the CPU time
of the server's process (``/proc``, Linux only) and of this process, per
delivery: figures that move much less than the rates on a loaded machine.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ..._exceptions import leaves
from ..._metrics import nearest_rank
from ..._validators import check_int
from ._crowd import STEP_TIMEOUT, Crowd, FanoutError, connect_all
from ._fanout_server import KINDS
from ._server import READY_PREFIX

if TYPE_CHECKING:
    from ...testing._redis_server import RedisServer

__all__ = [
    "DEFAULT_FANOUT_CLIENTS",
    "DEFAULT_FANOUT_EVENTS",
    "DEFAULT_FANOUT_ROUNDS",
    "DEFAULT_LATENCY_EVENTS",
    "KINDS",
    "FanoutError",
    "FanoutFigures",
    "run_fanout",
]

#: Clients connected to each server.
DEFAULT_FANOUT_CLIENTS: Final = 500
#: Events in one burst, per server per round.
DEFAULT_FANOUT_EVENTS: Final = 50
#: Timed rounds (after one untimed warm-up round).
DEFAULT_FANOUT_ROUNDS: Final = 10
#: Latency samples (single events) per server per round.
DEFAULT_LATENCY_EVENTS: Final = 5

#: Seconds a server process has to exit once its stdin is closed (then it is killed).
_EXIT_TIMEOUT: Final = 5.0
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@attrs.define(eq=False)
class _Lines:
    """Lines from a child's standard output."""

    stream: trio.abc.ReceiveStream
    _buffer: bytes = b""

    async def line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self.stream.receive_some(4096)
            if not chunk:
                raise FanoutError(f"a fan-out server exited (it said {self._buffer!r})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace").strip()


@attrs.define(eq=False)
class _Server:
    """A fan-out server process: its port, and its ``publish`` command."""

    kind: str
    process: trio.Process
    lines: _Lines
    port: int = 0

    def cpu(self) -> float | None:
        """CPU seconds the process used so far (Linux's ``/proc``), or ``None``."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    async def publish(self, count: int) -> float:
        """Have it publish ``count`` events; its ``time.monotonic()`` before the first."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(f"publish {count}\n".encode())
        line = await self.lines.line()
        if not line.startswith("T "):
            raise FanoutError(f"unexpected line from the {self.kind} server: {line!r}")
        return float(line[2:])


@contextlib.asynccontextmanager
async def _server(
    kind: str, argv: Sequence[str], *, module: str = "trio_reconnect._tools.bench._fanout_server"
) -> AsyncIterator[_Server]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", module, "--kind", kind, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        server = _Server(kind, process, _Lines(process.stdout))
        with trio.fail_after(STEP_TIMEOUT):
            line = await server.lines.line()
        if not line.startswith(READY_PREFIX):
            raise FanoutError(f"unexpected first line from the {kind} server: {line!r}")
        server.port = int(line[len(READY_PREFIX) :])
        yield server
    finally:
        with trio.CancelScope(shield=True):
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()
            with trio.move_on_after(_EXIT_TIMEOUT):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


@attrs.frozen
class FanoutFigures:
    """What :func:`run_fanout` measured. Rates in events delivered per second.

    Rates and latencies are medians; ``redis_*`` are ``None`` without a
    redis-server, with the reason in ``redis_note``.
    """

    plain_eps: float
    memory_eps: float
    redis_eps: float | None
    memory_ratio: float
    redis_ratio: float | None
    memory_ratios: tuple[float, ...]
    redis_ratios: tuple[float, ...] | None
    plain_latency_median_ms: float
    plain_latency_p99_ms: float
    memory_latency_median_ms: float
    memory_latency_p99_ms: float
    redis_latency_median_ms: float | None
    redis_latency_p99_ms: float | None
    plain_server_cpu_us: float | None
    memory_server_cpu_us: float | None
    redis_server_cpu_us: float | None
    plain_client_cpu_us: float
    memory_client_cpu_us: float
    redis_client_cpu_us: float | None
    redis_note: str | None
    redis_version: str | None
    clients: int
    events: int
    rounds: int
    latency_events: int


async def run_fanout(
    *,
    clients: int = DEFAULT_FANOUT_CLIENTS,
    events: int = DEFAULT_FANOUT_EVENTS,
    rounds: int = DEFAULT_FANOUT_ROUNDS,
    latency_events: int = DEFAULT_LATENCY_EVENTS,
    redis: bool = True,
) -> FanoutFigures:
    """Start the three servers (two without a redis-server), measure, stop them.

    Args:
        clients: Clients connected to each server.
        events: Events in one burst, per server per round.
        rounds: Timed rounds (one untimed warm-up round comes first).
        latency_events: Latency samples per server per round.
        redis: Measure the Redis server too (if a redis-server is found).

    Raises:
        ValueError: for a count below 1.
        FanoutError: a server did not start, or a client lost its connection.
    """
    for name, value in (
        ("clients", clients),
        ("events", events),
        ("rounds", rounds),
        ("latency_events", latency_events),
    ):
        check_int(name, value, minimum=1)
    try:
        return await _run_fanout(
            clients=clients,
            events=events,
            rounds=rounds,
            latency_events=latency_events,
            redis=redis,
        )
    except BaseExceptionGroup as group:
        matched, _ = group.split(FanoutError)
        if matched is None:
            raise
        first = leaves(matched)[0]
        assert isinstance(first, FanoutError)
        raise first from None


@attrs.define(eq=False)
class _Samples:
    """Per server kind, what the timed rounds measured (seconds, per delivery for CPU)."""

    kinds: Sequence[str]
    rates: dict[str, list[float]] = attrs.field(init=False)
    latencies: dict[str, list[float]] = attrs.field(init=False)
    client_cpus: dict[str, list[float]] = attrs.field(init=False)
    server_cpus: dict[str, list[float]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.rates = {kind: [] for kind in self.kinds}
        self.latencies = {kind: [] for kind in self.kinds}
        self.client_cpus = {kind: [] for kind in self.kinds}
        self.server_cpus = {kind: [] for kind in self.kinds}


@attrs.frozen
class _Redis:
    """The redis-server of the Redis fan-out, or why there is none."""

    server: RedisServer | None
    note: str | None
    version: str | None


@contextlib.asynccontextmanager
async def _redis(wanted: bool) -> AsyncIterator[_Redis]:
    """A redis-server for the run (stopped on the way out), or the reason it is not measured."""
    if not wanted:
        yield _Redis(None, "skipped (--no-redis); the Redis figures are null", None)
        return
    from ...testing._redis_server import RedisServer, RedisServerNotFound, find_redis_server

    note: str | None = None
    try:
        binary = find_redis_server()
        server = RedisServer(binary)
        await trio.to_thread.run_sync(server.start)
    except (RedisServerNotFound, RuntimeError, OSError) as exc:
        note = f"{exc}; the Redis figures are null"
    if note is not None:
        yield _Redis(None, note, None)
        return
    try:
        yield _Redis(server, None, _redis_version(binary))
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.close)


async def _run_fanout(
    *, clients: int, events: int, rounds: int, latency_events: int, redis: bool
) -> FanoutFigures:
    async with _redis(redis) as store:
        kinds = [kind for kind in KINDS if kind != "redis" or store.server is not None]
        samples = _Samples(kinds)
        async with contextlib.AsyncExitStack() as stack:
            servers = await _start_servers(stack, kinds, events, store.server)
            crowds = {kind: Crowd(kind) for kind in kinds}
            for crowd in crowds.values():
                stack.push_async_callback(crowd.aclose)
            nursery = await stack.enter_async_context(trio.open_nursery())
            for kind in kinds:
                await connect_all(crowds[kind], servers[kind].port, clients, nursery)
            for number in range(rounds + 1):  # round 0 is the warm-up
                shift = number % len(kinds)
                order = kinds[shift:] + kinds[:shift]
                record = samples if number else None
                for kind in order:
                    await _burst(servers[kind], crowds[kind], events, record)
                for kind in order:
                    for _ in range(latency_events):
                        await _latency_sample(servers[kind], crowds[kind], record)
            nursery.cancel_scope.cancel()
    return _figures(
        samples,
        store,
        clients=clients,
        events=events,
        rounds=rounds,
        latency_events=latency_events,
    )


async def _start_servers(
    stack: contextlib.AsyncExitStack,
    kinds: Sequence[str],
    events: int,
    redis_server: RedisServer | None,
) -> dict[str, _Server]:
    """Start a server process of each kind (stopped when ``stack`` closes)."""
    from ...server import DEFAULT_QUEUE_SIZE

    queue_size = str(max(DEFAULT_QUEUE_SIZE, 2 * events))
    servers: dict[str, _Server] = {}
    for kind in kinds:
        argv = ["--queue-size", queue_size]
        if kind == "redis":
            assert redis_server is not None
            argv += ["--redis", redis_server.url]
        servers[kind] = await stack.enter_async_context(_server(kind, argv))
    return servers


async def _burst(server: _Server, crowd: Crowd, events: int, samples: _Samples | None) -> None:
    """One burst of ``events`` to every client of ``server``; recorded unless a warm-up."""
    crowd.expect(events)
    server_cpu = server.cpu()
    client_cpu = time.process_time()
    stamp = await server.publish(events)
    arrivals = await crowd.wait("a burst")
    client_cpu = time.process_time() - client_cpu
    after = server.cpu()
    if samples is not None:
        deliveries = events * len(crowd.clients)
        samples.rates[server.kind].append(deliveries / (max(arrivals) - stamp))
        samples.client_cpus[server.kind].append(client_cpu / deliveries)
        if server_cpu is not None and after is not None:
            samples.server_cpus[server.kind].append((after - server_cpu) / deliveries)


async def _latency_sample(server: _Server, crowd: Crowd, samples: _Samples | None) -> None:
    """One event to every client of ``server``; each client's delay recorded unless a warm-up."""
    crowd.expect(1)
    stamp = await server.publish(1)
    arrivals = await crowd.wait("a latency sample")
    if samples is not None:
        samples.latencies[server.kind] += [arrival - stamp for arrival in arrivals]


def _figures(
    samples: _Samples, store: _Redis, *, clients: int, events: int, rounds: int, latency_events: int
) -> FanoutFigures:
    """Medians (p99 for a latency) of the samples of every kind."""
    rates = samples.rates

    def ratios(kind: str) -> list[float]:
        return [a / b for a, b in zip(rates[kind], rates["plain"], strict=True)]

    def latency(kind: str, p99: bool) -> float:
        values = samples.latencies[kind]
        return (_p99(values) if p99 else statistics.median(values)) * 1000

    def cpu(table: dict[str, list[float]], kind: str) -> float | None:
        return _us(table[kind]) if table[kind] else None

    has_redis = "redis" in samples.kinds
    return FanoutFigures(
        plain_eps=statistics.median(rates["plain"]),
        memory_eps=statistics.median(rates["memory"]),
        redis_eps=statistics.median(rates["redis"]) if has_redis else None,
        memory_ratio=statistics.median(ratios("memory")),
        redis_ratio=statistics.median(ratios("redis")) if has_redis else None,
        memory_ratios=tuple(ratios("memory")),
        redis_ratios=tuple(ratios("redis")) if has_redis else None,
        plain_latency_median_ms=latency("plain", False),
        plain_latency_p99_ms=latency("plain", True),
        memory_latency_median_ms=latency("memory", False),
        memory_latency_p99_ms=latency("memory", True),
        redis_latency_median_ms=latency("redis", False) if has_redis else None,
        redis_latency_p99_ms=latency("redis", True) if has_redis else None,
        plain_server_cpu_us=cpu(samples.server_cpus, "plain"),
        memory_server_cpu_us=cpu(samples.server_cpus, "memory"),
        redis_server_cpu_us=cpu(samples.server_cpus, "redis") if has_redis else None,
        plain_client_cpu_us=_us(samples.client_cpus["plain"]),
        memory_client_cpu_us=_us(samples.client_cpus["memory"]),
        redis_client_cpu_us=_us(samples.client_cpus["redis"]) if has_redis else None,
        redis_note=store.note,
        redis_version=store.version,
        clients=clients,
        events=events,
        rounds=rounds,
        latency_events=latency_events,
    )


def _p99(values: Sequence[float]) -> float:
    """The nearest-rank 99th percentile of ``values`` (not empty)."""
    value = nearest_rank(values, 0.99)
    assert value is not None
    return value


def _us(values: Sequence[float]) -> float:
    """The median of ``values`` seconds, in microseconds."""
    return statistics.median(values) * 1e6


def _redis_version(binary: str) -> str | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return None
