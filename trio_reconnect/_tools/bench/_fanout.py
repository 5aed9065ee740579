"""The fan-out figure of ``python -m trio_reconnect bench``: events/s delivered to many clients.

Three servers run side by side, each in a child process of its own
(``python -m trio_reconnect._tools.bench._fanout --kind KIND``), listening on
127.0.0.1:

* ``plain``: the baseline, a minimal broadcast on trio-websocket alone
  (``serve_websocket``): a set of connected websockets, and a publish that
  encodes the event frame once and awaits ``send_message`` on every
  websocket in turn. No log, no queues, no per-client task of its own.
* ``memory``: a :class:`~trio_reconnect.server.ReconnectServer` on a
  :class:`~trio_reconnect.server.ReplayLog`.
* ``redis``: a :class:`~trio_reconnect.server.ReconnectServer` on a
  :class:`~trio_reconnect.server.redis.RedisStreamLog`, on a redis-server the
  bench starts itself (:class:`~trio_reconnect.testing._redis_server.RedisServer`).

All three send the same bytes: ``event`` frames of the protocol (the plain
server numbers them from the clock as the logs do) carrying the same payload.
Each child reads commands on its standard input, one per line:
``publish N`` publishes N events back to back (``ReconnectServer.publish``,
or the plain broadcast), then prints ``T <stamp>``, where ``stamp`` is
``time.monotonic()`` taken just before the first publish. End of file on
standard input ends the child.

The clients live in the measuring process and are as cheap as a websocket
client can be, so that the figure is the server's fan-out and not the
clients' receiving: each is a raw TCP stream that did the HTTP upgrade and
sent a masked ``resume`` frame by hand, and then only walks the frame headers
of what arrives (64 KiB at a time) to count text frames, without decoding a
payload. A close frame from the server fails the run. All the clients of
all three servers stay connected for the whole run.

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

import argparse
import base64
import contextlib
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final

import attrs
import trio
import trio_websocket

from ._server import READY_PREFIX

__all__ = [
    "DEFAULT_FANOUT_CLIENTS",
    "DEFAULT_FANOUT_EVENTS",
    "DEFAULT_FANOUT_ROUNDS",
    "DEFAULT_LATENCY_EVENTS",
    "EVENT_SIZE",
    "KINDS",
    "FanoutError",
    "FanoutFigures",
    "main",
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
#: Characters of every event's payload (a JSON string).
EVENT_SIZE: Final = 100
#: The servers, the baseline first.
KINDS: Final = ("plain", "memory", "redis")

#: The stream key of the Redis server (a fresh redis-server per run).
_STREAM: Final = "trio_reconnect:bench"
#: Seconds a server process has to announce its port, a crowd to connect, a burst to arrive.
_STEP_TIMEOUT: Final = 60.0
#: Seconds a server process has to exit once its stdin is closed (then it is killed).
_EXIT_TIMEOUT: Final = 5.0
_RECEIVE_SIZE: Final = 65536
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_OP_TEXT: Final = 0x1
_OP_CLOSE: Final = 0x8
_RESUME: Final = json.dumps({"type": "resume", "lastEventId": None}).encode()


class FanoutError(RuntimeError):
    """A fan-out server did not start, or a client lost its connection."""


# ------------------------------------------------------------------- the servers


async def _commands(publish: Callable[[], Awaitable[object]]) -> None:
    """Serve ``publish N`` lines from standard input until it ends."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            chunk = await stdin.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command, _, count = line.decode().partition(" ")
                if command != "publish":
                    raise SystemExit(f"unknown command {line!r}")
                stamp = time.monotonic()
                for _ in range(int(count)):
                    await publish()
                print(f"T {stamp!r}", flush=True)


async def _serve_plain(host: str, payload: str) -> None:
    from ..._protocol import encode_event, encode_ready
    from ...server import clock_start_id

    clients: dict[trio_websocket.WebSocketConnection, None] = {}
    next_id = clock_start_id()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()  # the resume frame; the baseline answers ready, no replay
            clients[ws] = None
            await ws.send_message(encode_ready(None, lost=False))
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            clients.pop(ws, None)

    async def publish() -> None:
        nonlocal next_id
        frame = encode_event(str(next_id), payload)
        next_id += 1
        for ws in list(clients):
            with contextlib.suppress(trio_websocket.ConnectionClosed):
                await ws.send_message(frame)

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            functools.partial(trio_websocket.serve_websocket, handler, host, 0, None)
        )
        await _announce_and_serve(listener.port, publish)
        nursery.cancel_scope.cancel()


async def _announce_and_serve(port: int, publish: Callable[[], Awaitable[object]]) -> None:
    try:
        print(f"{READY_PREFIX}{port}", flush=True)
    except BrokenPipeError:
        # The bench gave up before this server was ready: nobody to serve.
        # Point stdout at /dev/null so that the exit's flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    await _commands(publish)


async def _serve_reconnect(host: str, payload: str, queue_size: int, redis_url: str | None) -> None:
    from ...server import EventLog, ReconnectServer, ReplayLog

    async with contextlib.AsyncExitStack() as stack:
        log: EventLog
        if redis_url is None:
            log = ReplayLog()
        else:
            from ...server.redis import RedisStreamLog

            log = await stack.enter_async_context(RedisStreamLog(redis_url, stream=_STREAM))
        server = ReconnectServer(log, ping_interval=None, queue_size=queue_size)

        async def publish() -> None:
            await server.publish(payload)

        async with trio.open_nursery() as nursery:
            listener = await nursery.start(functools.partial(server.serve, host, 0))
            await _announce_and_serve(listener.port, publish)
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one fan-out server until standard input ends; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m trio_reconnect._tools.bench._fanout")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--size", type=int, default=EVENT_SIZE)
    parser.add_argument("--queue-size", type=int, default=None)
    parser.add_argument("--redis", default=None, help="the Redis URL (--kind redis)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench, our parent, ends us
    payload = "e" * args.size
    if args.kind == "plain":
        trio.run(_serve_plain, args.host, payload)
    else:
        from ...server import DEFAULT_QUEUE_SIZE

        if args.kind == "redis" and args.redis is None:
            parser.error("--kind redis needs --redis URL")
        queue_size = args.queue_size or DEFAULT_QUEUE_SIZE
        trio.run(
            _serve_reconnect,
            args.host,
            payload,
            queue_size,
            args.redis if args.kind == "redis" else None,
        )
    return 0


# ------------------------------------------------------------ the measuring side


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
async def _server(kind: str, argv: Sequence[str]) -> AsyncIterator[_Server]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_reconnect._tools.bench._fanout", "--kind", kind, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        server = _Server(kind, process, _Lines(process.stdout))
        with trio.fail_after(_STEP_TIMEOUT):
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


def _masked_text(payload: bytes) -> bytes:
    """One client-to-server text frame (clients must mask), for a payload under 126 bytes."""
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | _OP_TEXT, 0x80 | len(payload)]) + mask + body


@attrs.define(eq=False)
class _Client:
    """A raw websocket client that counts the text frames it receives."""

    crowd: _Crowd
    stream: trio.SocketStream
    buffer: bytearray
    frames: int = 0
    target: int = 1  # the ready frame
    waiting: bool = True
    reached_at: float = 0.0

    async def run(self) -> None:
        try:
            await self._run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, FanoutError) as exc:
            self.crowd.fail(f"a {self.crowd.kind} client failed: {exc}")

    async def _run(self) -> None:
        buffer = self.buffer
        self._count()
        while True:
            chunk = await self.stream.receive_some(_RECEIVE_SIZE)
            if not chunk:
                raise FanoutError("the server closed the connection")
            buffer += chunk
            self._count()

    def _count(self) -> None:
        # Walk the frame headers; server frames are unmasked and, from these
        # servers, never fragmented.
        buffer = self.buffer
        size = len(buffer)
        offset = 0
        frames = 0
        while size - offset >= 2:
            length = buffer[offset + 1] & 0x7F
            head = 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                head = 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                head = 10
            end = offset + head + length
            if end > size:
                break
            opcode = buffer[offset] & 0x0F
            if opcode == _OP_TEXT:
                frames += 1
            elif opcode == _OP_CLOSE:
                body = bytes(buffer[offset + head : end])
                code = int.from_bytes(body[:2], "big") if len(body) >= 2 else None
                raise FanoutError(
                    f"closed by the server: {code} {body[2:].decode(errors='replace')}"
                )
            offset = end
        del buffer[:offset]
        self.frames += frames
        if self.waiting and self.frames >= self.target:
            self.waiting = False
            self.reached_at = time.monotonic()
            self.crowd.arrived()


@attrs.define(eq=False)
class _Crowd:
    """The clients of one server, and the wait for all of them to reach their target."""

    kind: str
    clients: list[_Client] = attrs.field(factory=list)
    pending: int = 0
    error: str | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    def expect(self, frames: int) -> None:
        self.done = trio.Event()
        self.pending = len(self.clients)
        for client in self.clients:
            client.target += frames
            client.waiting = True

    def arrived(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.done.set()

    async def aclose(self) -> None:
        """Close every client's connection."""
        for client in self.clients:
            await trio.aclose_forcefully(client.stream)

    def fail(self, message: str) -> None:
        if self.error is None:
            self.error = message
        self.done.set()

    async def wait(self, what: str) -> list[float]:
        """Wait until every client reached its target; their arrival times."""
        with trio.move_on_after(_STEP_TIMEOUT):
            await self.done.wait()
        if self.error is not None:
            raise FanoutError(self.error)
        if not self.done.is_set():
            raise FanoutError(
                f"{what}: {self.pending} of {len(self.clients)} {self.kind} clients "
                f"did not get every event within {_STEP_TIMEOUT:g} s"
            )
        return [client.reached_at for client in self.clients]


async def _connect(crowd: _Crowd, port: int, nursery: trio.Nursery) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await _upgrade(crowd, port, stream, nursery)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _upgrade(
    crowd: _Crowd, port: int, stream: trio.SocketStream, nursery: trio.Nursery
) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await stream.send_all(request.encode())
    received = bytearray()
    while b"\r\n\r\n" not in received:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise FanoutError(f"the {crowd.kind} server closed a connection during its upgrade")
        received += chunk
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise FanoutError(f"the {crowd.kind} server refused the upgrade: {head[:60]!r}")
    await stream.send_all(_masked_text(_RESUME))
    client = _Client(crowd, stream, bytearray(rest))
    crowd.clients.append(client)
    crowd.pending += 1
    nursery.start_soon(client.run)


async def _connect_all(crowd: _Crowd, port: int, count: int, nursery: trio.Nursery) -> None:
    # Every client opens its connection at once: a deploy's reconnect storm.
    # (It used to be 10 at a time: with 50 at once on a loaded 2-core machine
    # the Redis node's handshake reads went unsent by coredis's writer, timed
    # out and made the node refuse clients as if Redis were down; the Redis
    # log now bounds the commands in flight, docs/design.md.)
    crowd.done = trio.Event()
    with trio.fail_after(_STEP_TIMEOUT):
        async with trio.open_nursery() as connecting:
            for _ in range(count):
                connecting.start_soon(_connect, crowd, port, nursery)
    if crowd.pending:
        await crowd.wait("the ready frames")


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


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.99 * len(ordered)) - 1)]


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
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
        raise _first(matched) from None


def _first(group: BaseExceptionGroup[FanoutError]) -> FanoutError:
    leaf = group.exceptions[0]
    return _first(leaf) if isinstance(leaf, BaseExceptionGroup) else leaf


async def _run_fanout(
    *, clients: int, events: int, rounds: int, latency_events: int, redis: bool
) -> FanoutFigures:
    from ...server import DEFAULT_QUEUE_SIZE

    queue_size = str(max(DEFAULT_QUEUE_SIZE, 2 * events))
    note: str | None = None
    redis_server = None
    redis_version = None
    if redis:
        from ...testing._redis_server import RedisServer, RedisServerNotFound, find_redis_server

        try:
            binary = find_redis_server()
            redis_server = RedisServer(binary)
            await trio.to_thread.run_sync(redis_server.start)
            redis_version = _redis_version(binary)
        except (RedisServerNotFound, RuntimeError, OSError) as exc:
            note = f"{exc}; the Redis figures are null"
            redis_server = None
    else:
        note = "skipped (--no-redis); the Redis figures are null"
    kinds = [kind for kind in KINDS if kind != "redis" or redis_server is not None]
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    client_cpus: dict[str, list[float]] = {kind: [] for kind in kinds}
    server_cpus: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        async with contextlib.AsyncExitStack() as stack:
            servers: dict[str, _Server] = {}
            for kind in kinds:
                argv = ["--queue-size", queue_size]
                if kind == "redis":
                    assert redis_server is not None
                    argv += ["--redis", redis_server.url]
                servers[kind] = await stack.enter_async_context(_server(kind, argv))
            crowds = {kind: _Crowd(kind) for kind in kinds}
            for crowd in crowds.values():
                stack.push_async_callback(crowd.aclose)
            nursery = await stack.enter_async_context(trio.open_nursery())
            for kind in kinds:
                await _connect_all(crowds[kind], servers[kind].port, clients, nursery)
            for number in range(rounds + 1):  # round 0 is the warm-up
                shift = number % len(kinds)
                order = kinds[shift:] + kinds[:shift]
                for kind in order:
                    crowd = crowds[kind]
                    crowd.expect(events)
                    server_cpu = servers[kind].cpu()
                    client_cpu = time.process_time()
                    stamp = await servers[kind].publish(events)
                    arrivals = await crowd.wait("a burst")
                    client_cpu = time.process_time() - client_cpu
                    after = servers[kind].cpu()
                    if number:
                        rates[kind].append(events * clients / (max(arrivals) - stamp))
                        client_cpus[kind].append(client_cpu / (events * clients))
                        if server_cpu is not None and after is not None:
                            server_cpus[kind].append((after - server_cpu) / (events * clients))
                for kind in order:
                    for _ in range(latency_events):
                        crowd = crowds[kind]
                        crowd.expect(1)
                        stamp = await servers[kind].publish(1)
                        arrivals = await crowd.wait("a latency sample")
                        if number:
                            latencies[kind] += [arrival - stamp for arrival in arrivals]
            nursery.cancel_scope.cancel()
    finally:
        if redis_server is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(redis_server.close)

    def ratios(kind: str) -> list[float]:
        return [a / b for a, b in zip(rates[kind], rates["plain"], strict=True)]

    def latency(kind: str, p99: bool) -> float:
        values = latencies[kind]
        return (_p99(values) if p99 else statistics.median(values)) * 1000

    def cpu(table: dict[str, list[float]], kind: str) -> float | None:
        return _us(table[kind]) if table[kind] else None

    has_redis = "redis" in kinds
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
        plain_server_cpu_us=cpu(server_cpus, "plain"),
        memory_server_cpu_us=cpu(server_cpus, "memory"),
        redis_server_cpu_us=cpu(server_cpus, "redis") if has_redis else None,
        plain_client_cpu_us=_us(client_cpus["plain"]),
        memory_client_cpu_us=_us(client_cpus["memory"]),
        redis_client_cpu_us=_us(client_cpus["redis"]) if has_redis else None,
        redis_note=note,
        redis_version=redis_version,
        clients=clients,
        events=events,
        rounds=rounds,
        latency_events=latency_events,
    )


if __name__ == "__main__":
    sys.exit(main())
