"""``python -m trio_reconnect serve``: one protocol node with a ticker, alone or in a cluster.

Without ``--redis`` the node keeps its log in memory (a restart loses it).
With ``--redis redis://HOST:PORT/DB`` it is one node of a cluster: its log is
the shared :class:`~trio_reconnect.server.redis.RedisStreamLog` (``--stream``)
and it announces itself in the :class:`~trio_reconnect.server.redis.RedisRegistry`
under ``--node`` (default ``HOST:PORT``), so several such processes on
different ports share one stream and any node resumes any node's clients.
Each node publishes its own ticker every ``--interval`` seconds. Each
application message a client sends is printed on stdout, one line
(:func:`print_message`); it is not relayed to other clients.

SIGTERM or Ctrl-C drains (:meth:`~trio_reconnect.server.ReconnectServer.serve_until_signal`):
new handshakes get 503, every client gets 1012 and a spread ``retryAfter``
(over the live peers' admission rates, with Redis), and the process exits 0
with one line saying what it drained. Redis unreachable at start is one line
on stderr and exit 1. While Redis is down later, each failed tick is logged
and the ticker goes on (PROTOCOL.md section 3.4).

``--presence GLOB`` (repeatable) gives the channels whose name matches
presence (PROTOCOL.md 4.4), kept in the channel store (shared on Redis), with
``--presence-grace`` seconds of grace for a member whose connection dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import trio
from trio_websocket import WebSocketServer

from ..server import (
    DEFAULT_DEDUPE_TTL,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_REPLAY,
    DEFAULT_OUTAGE_LIMIT,
    DEFAULT_OUTAGE_RETRY_AFTER,
    DEFAULT_PRESENCE_GRACE,
    ChannelStore,
    ConnectedClient,
    DrainSummary,
    EventLog,
    EventLogError,
    LogUnavailableError,
    MemoryChannelStore,
    ReconnectServer,
    ReplayLog,
    SpreadPolicy,
)
from ..server._cluster import ClusterRegistry
from ..server._spread import DEFAULT_BASE, DEFAULT_MIN_WINDOW, DEFAULT_RATE
from ._policy import (
    EXIT_FAILED,
    EXIT_USAGE,
    non_negative_number,
    positive_int,
    positive_number,
)

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_LOG_SIZE",
    "add_arguments",
    "print_message",
    "run_command",
]

#: ``serve``'s seconds between ticks.
DEFAULT_INTERVAL: Final = 1.0
#: Events ``serve`` keeps (in memory, or in the Redis stream).
DEFAULT_LOG_SIZE: Final = 10_000

_log = logging.getLogger("trio_reconnect.serve")


def _redis_url(text: str) -> str:
    if text.split("://", 1)[0] not in ("redis", "rediss", "unix") or "://" not in text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Redis URL (redis://HOST:PORT/DB, rediss://..., unix://...)"
        )
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve``'s cluster, ticker and drain options (``--host``/``--port`` are the CLI's)."""
    parser.add_argument(
        "--redis",
        type=_redis_url,
        default=None,
        metavar="URL",
        help="share the log with other nodes on this Redis (redis://HOST:PORT/DB); "
        "default: a log in memory",
    )
    parser.add_argument(
        "--stream",
        default=None,
        metavar="KEY",
        help="the Redis stream key (with --redis; default trio_reconnect:events)",
    )
    parser.add_argument(
        "--node", default=None, help="this node's name in the cluster (default HOST:PORT)"
    )
    parser.add_argument(
        "--max-len",
        type=positive_int,
        default=DEFAULT_LOG_SIZE,
        help="events the log keeps (default %(default)s)",
    )
    parser.add_argument(
        "--max-replay",
        type=positive_int,
        default=DEFAULT_MAX_REPLAY,
        help="most events replayed in one handshake (default %(default)s)",
    )
    parser.add_argument(
        "--dedupe-ttl",
        type=positive_number,
        default=DEFAULT_DEDUPE_TTL,
        metavar="SECONDS",
        help="seconds a client's applied publish is remembered, so that its re-send "
        "is not applied again (default %(default)s)",
    )
    _presence_arguments(parser)
    _drain_arguments(parser)


def _glob(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("a presence glob must not be empty")
    return text


def _presence_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve``'s presence options (PROTOCOL.md 4.4)."""
    parser.add_argument(
        "--presence",
        type=_glob,
        action="append",
        default=None,
        metavar="GLOB",
        help="channels whose name matches GLOB carry presence (repeatable; fnmatch rules)",
    )
    parser.add_argument(
        "--presence-grace",
        type=positive_number,
        default=None,
        metavar="SECONDS",
        help="seconds a member whose connection dropped stays a member "
        f"(with --presence; default {DEFAULT_PRESENCE_GRACE:g})",
    )


def _drain_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve``'s drain (spread) and log outage options."""
    parser.add_argument(
        "--min-window",
        type=non_negative_number,
        default=DEFAULT_MIN_WINDOW,
        help="shortest spread window of a drain, s (default %(default)s)",
    )
    parser.add_argument(
        "--spread-base",
        type=non_negative_number,
        default=DEFAULT_BASE,
        help="seconds before the first drained client may return (default %(default)s)",
    )
    parser.add_argument(
        "--spread-rate",
        type=positive_number,
        default=DEFAULT_RATE,
        help="returns per second this node absorbs (default %(default)s)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=positive_number,
        default=DEFAULT_DRAIN_TIMEOUT,
        help="seconds a stop waits for the drained clients (default %(default)s)",
    )
    parser.add_argument(
        "--outage-limit",
        type=positive_number,
        default=DEFAULT_OUTAGE_LIMIT,
        help="seconds the log may be down before clients are closed (default %(default)s)",
    )
    parser.add_argument(
        "--outage-retry-after",
        type=positive_number,
        default=DEFAULT_OUTAGE_RETRY_AFTER,
        help="least Retry-After while the log is down, s (default %(default)s)",
    )


#: What to install when the Redis client library is missing.
REDIS_EXTRA_HINT: Final = "needs the redis extra: pip install 'trio-reconnect[redis]'"


def redis_extra_missing() -> bool:
    """Whether coredis (the ``redis`` extra) cannot be imported."""
    return importlib.util.find_spec("coredis") is None


class _OneLineFormatter(logging.Formatter):
    """A store failure logged with its traceback becomes one line: the message and the error.

    Redis being away is an expected condition of a node (PROTOCOL.md 3.4), so
    its :class:`~trio_reconnect.server.EventLogError` needs no traceback;
    any other exception keeps its traceback (that is a bug to report).
    """

    def format(self, record: logging.LogRecord) -> str:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, EventLogError):
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
            record.msg = f"{record.getMessage()}: {error}"
            record.args = None
        return super().format(record)


def _configure_logging() -> None:
    """Warnings of the node on stderr, one line each, wall-clock stamped."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("trio_reconnect")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    root.propagate = False
    # coredis logs every failed connection attempt at ERROR with a traceback;
    # the node's own LogUnavailableError lines say the same in one line.
    logging.getLogger("coredis").setLevel(logging.CRITICAL + 1)


def _node_name(args: Any) -> str:
    if args.node:
        return str(args.node)
    if args.port:
        return f"{args.host}:{args.port}"
    return f"{socket.gethostname()}:pid{os.getpid()}"


@contextlib.asynccontextmanager
async def _open_backends(
    args: Any,
) -> AsyncIterator[tuple[EventLog, ChannelStore, ClusterRegistry | None, str]]:
    """The log, channel store (and registry) ``args`` ask for, and how to describe them."""
    if args.redis is None:
        yield ReplayLog(max_events=args.max_len), MemoryChannelStore(), None, "log in memory"
        return
    from ..server.redis import DEFAULT_STREAM, RedisChannelStore, RedisRegistry, RedisStreamLog

    stream = args.stream or DEFAULT_STREAM
    async with (
        RedisStreamLog(args.redis, stream=stream, max_len=args.max_len) as log,
        RedisChannelStore(args.redis) as channels,
        RedisRegistry(args.redis, prefix=stream + ":nodes") as registry,
    ):
        yield log, channels, registry, f"log on Redis stream {stream!r}"


async def _serve(args: Any) -> int:
    name = _node_name(args)
    async with _open_backends(args) as (log, channels, registry, where):
        try:
            await log.newest()
        except LogUnavailableError as exc:
            print(f"serve: cannot start without the log: {exc}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        server = ReconnectServer(
            log,
            max_replay=args.max_replay,
            # A standalone ticker starts a fresh client at its newest tick; a
            # node of a shared Redis log replays that log's history to it
            # (docs/explanation/design.md, "A fresh client of serve starts at the newest event").
            replay_to_fresh=args.redis is not None,
            spread=SpreadPolicy(
                min_window=args.min_window, rate=args.spread_rate, base=args.spread_base
            ),
            outage_limit=args.outage_limit,
            outage_retry_after=args.outage_retry_after,
            registry=registry,
            node=name if registry is not None else None,
            # Channels (protocol v2) out of the box: in memory, or shared on Redis.
            channels=channels,
            on_message=print_message,
            dedupe_ttl=args.dedupe_ttl,
            presence=tuple(args.presence or ()),
            presence_grace=args.presence_grace or DEFAULT_PRESENCE_GRACE,
        )
        summaries: list[DrainSummary] = []
        async with trio.open_nursery() as nursery:

            async def until_signal(task_status: trio.TaskStatus[WebSocketServer]) -> None:
                summaries.append(
                    await server.serve_until_signal(
                        args.host,
                        args.port,
                        drain_timeout=args.drain_timeout,
                        task_status=task_status,
                    )
                )
                nursery.cancel_scope.cancel()

            listener = await nursery.start(until_signal)
            print(
                f"serving the reconnect protocol on ws://{args.host}:{listener.port}/", flush=True
            )
            if registry is not None:  # a cluster node says which cluster
                print(f"node {name}: {where}, a tick every {args.interval:g} s", flush=True)
            metrics_port = getattr(args, "metrics_port", None)
            if metrics_port is not None:
                from ..prometheus._http import serve_server_metrics

                bound = await nursery.start(serve_server_metrics, server, args.host, metrics_port)
                print(
                    f"serving Prometheus metrics on http://{args.host}:{bound}/metrics", flush=True
                )
            nursery.start_soon(_ticker, server, name, args, nursery)
    # The line a deploy's log shows for this node's exit, and the same for a
    # program (the cluster demo reads it back with DrainSummary.from_output).
    print(f"serve: {summaries[0].describe()}", flush=True)
    print(f"serve: {summaries[0].json_line()}", flush=True)
    return 0


async def print_message(client: ConnectedClient, message: str | bytes) -> None:
    """``on_message``: one line on stdout per application message a client sends.

    ``message from client N: "TEXT"`` (N: the server's number of the
    connection; TEXT as a JSON string, or ``<N bytes>`` for a binary
    message). ``serve`` does not relay messages: publishing into a channel
    is the client's ``publish`` (PROTOCOL.md 4.5), acknowledged.
    """
    shown = json.dumps(message) if isinstance(message, str) else f"<{len(message)} bytes>"
    print(f"message from client {client.id}: {shown}", flush=True)


async def _ticker(server: ReconnectServer, name: str, args: Any, nursery: trio.Nursery) -> None:
    tick = 0
    restart_every: float | None = getattr(args, "restart_every", None)
    last_restart = trio.current_time()
    while True:
        tick += 1
        try:
            await server.publish({"tick": tick, "node": name, "time": time.time()})
        except LogUnavailableError as exc:
            _log.warning("tick %d not published: %s", tick, exc)
        if restart_every is not None and trio.current_time() - last_restart >= restart_every:
            last_restart = trio.current_time()
            print(f"restarting: {server.statistics().clients} clients dropped", flush=True)
            nursery.start_soon(server.restart)
        await trio.sleep(args.interval)


def _check_options(args: Any) -> tuple[int, str] | None:
    """What is wrong with ``args`` before anything starts: (exit status, one line), or ``None``."""
    if getattr(args, "presence_grace", None) is not None and not getattr(args, "presence", None):
        return EXIT_USAGE, "--presence-grace needs --presence (which channels carry presence)"
    if args.redis is None:
        given = [f"--{name}" for name in ("stream", "node") if getattr(args, name)]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            return EXIT_USAGE, f"{' and '.join(given)} {verb} --redis (a node alone has no cluster)"
        return None
    if redis_extra_missing():
        return EXIT_FAILED, f"--redis {REDIS_EXTRA_HINT}"
    from ..server.redis import RedisStreamLog

    try:
        RedisStreamLog(args.redis)  # checks the URL; connects only when entered
    except ValueError as exc:
        return EXIT_USAGE, f"--redis: {exc}"
    return None


def run_command(args: Any) -> int:
    """Run ``serve`` with parsed ``args``; return the exit status."""
    problem = _check_options(args)
    if problem is not None:
        print(f"serve: {problem[1]}", file=sys.stderr, flush=True)
        return problem[0]
    _configure_logging()
    status: int = trio.run(_serve, args)
    return status
