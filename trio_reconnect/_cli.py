"""The command line: ``demo``, ``serve``, ``connect``, ``herd`` and ``bench``.

* ``python -m trio_reconnect demo``: the embedded server and a crowd of real
  clients through several spread restarts; exits 1 if any event was lost or
  duplicated. With ``--nodes N``: a rolling deploy of N real node processes
  sharing a redis-server (:mod:`trio_reconnect._demo_cluster`).
* ``python -m trio_reconnect serve [--port N] [--redis URL] [--metrics-port M]``:
  a protocol node publishing a ticker, alone or one of a cluster sharing a
  Redis stream, for trying clients in other languages against it (and its
  Prometheus metrics on ``/metrics``). On SIGTERM or Ctrl-C it drains (1012
  and spread hints), prints one line saying what it drained, and exits 0
  (see :mod:`trio_reconnect._serve`).
* ``python -m trio_reconnect connect URL``: a wscat-like client that prints
  every item and every state transition with its reason and delay.
* ``python -m trio_reconnect herd --clients N --capacity R --strategy S``:
  the herd simulator (:mod:`trio_reconnect.testing`): N real clients and the
  server on the in-memory network under a mock clock, through one restart.
* ``python -m trio_reconnect bench [--json]``: throughput and reconnect time
  against raw trio-websocket, as ratios (see :mod:`trio_reconnect._bench`).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from typing import Any

import trio

from ._client import open_reconnecting_websocket
from ._protocol import Gap, ServerEvent, Snapshot
from ._state import Transition

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_reconnect",
        description="A reconnecting WebSocket client for Trio, and its protocol server.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a crowd of clients through server restarts")
    demo.add_argument("--clients", type=int, default=300, help="clients (default 300)")
    demo.add_argument("--duration", type=float, default=15.0, help="seconds (default 15)")
    demo.add_argument("--restarts", type=int, default=3, help="server restarts (default 3)")
    demo.add_argument("--rate", type=float, default=5.0, help="events/s (default 5)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    from ._demo_cluster import node_count

    demo.add_argument(
        "--nodes",
        type=node_count,
        default=None,
        help="instead: a rolling deploy of N real node processes sharing a redis-server "
        "(at least 2; each node restarts once, so --duration and --restarts do not apply)",
    )
    serve = commands.add_parser("serve", help="a standalone protocol server with a ticker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    serve.add_argument(
        "--restart-every", type=float, default=None, help="restart (1012 + spread) every N s"
    )
    serve.add_argument(
        "--metrics-port",
        type=_metrics_port,
        default=None,
        help="serve Prometheus metrics on http://HOST:N/metrics (needs the prometheus extra)",
    )
    from ._serve import add_arguments as add_serve_arguments

    add_serve_arguments(serve)
    connect = commands.add_parser("connect", help="print items and transitions from a server")
    connect.add_argument("url")
    connect.add_argument("--no-resume", action="store_true", help="plain websocket server")
    connect.add_argument("--count", type=int, default=None, help="stop after N items")
    from .testing._herd_cli import add_arguments as add_herd_arguments

    herd = commands.add_parser("herd", help="simulate a reconnect storm in virtual time")
    add_herd_arguments(herd)
    from ._bench import add_arguments as add_bench_arguments

    bench = commands.add_parser("bench", help="throughput and reconnect time vs trio-websocket")
    add_bench_arguments(bench)
    return parser


def _metrics_port(text: str) -> int:
    """``--metrics-port``: 0-65535 (0: a free port), with prometheus-client installed."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {port}")
    try:
        import prometheus_client  # noqa: F401  (only when the option is given)
    except ImportError:
        raise argparse.ArgumentTypeError(
            "needs prometheus-client: pip install 'trio-reconnect[prometheus]'"
        ) from None
    return port


def _show_transition(t: Transition) -> None:
    parts = [f"[{t.time:10.3f}] {t.previous.value} -> {t.state.value}"]
    if t.delay is not None:
        parts.append(f"wait {t.delay:.3f}s ({t.delay_source.value if t.delay_source else '-'})")
    if t.close_code is not None:
        parts.append(f"close {t.close_code} {t.close_reason or ''}".rstrip())
    if t.status_code is not None:
        parts.append(f"HTTP {t.status_code}")
    if t.error is not None:
        parts.append(f"error {t.error!r}")
    print("  ".join(parts), file=sys.stderr, flush=True)


def _describe_gap(gap: Gap) -> str:
    """What a Gap says is lost: the events after ``last_id`` up to ``ready_id``."""
    after = "" if gap.last_id is None else f" after {gap.last_id}"
    if gap.ready_id is None:
        return f"gap: the events{after} were lost (the server holds none since)"
    return f"gap: the events{after} up to and including {gap.ready_id} were lost"


async def _connect(url: str, resume: bool, count: int | None) -> None:
    async with open_reconnecting_websocket(
        url, resume=resume, on_transition=_show_transition, max_attempts=None
    ) as ws:
        seen = 0
        async for item in ws:
            if isinstance(item, ServerEvent):
                print(f"event {item.id}: {json.dumps(item.data)}", flush=True)
            elif isinstance(item, Snapshot):
                print(f"snapshot {item.id}: {json.dumps(item.data)}", flush=True)
            elif isinstance(item, Gap):
                print(_describe_gap(item), flush=True)
            else:
                print(f"message: {item!r}", flush=True)
            seen += 1
            if count is not None and seen >= count:
                return


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args: Any = _parser().parse_args(argv)
    try:
        if args.command == "demo" and args.nodes is not None:
            from ._demo_cluster import run_command as run_cluster_demo_command

            return run_cluster_demo_command(args)
        if args.command == "demo":
            from ._demo import run_demo, summary_json

            summary = trio.run(
                functools.partial(
                    run_demo,
                    clients=args.clients,
                    duration=args.duration,
                    restarts=args.restarts,
                    rate=args.rate,
                )
            )
            print(summary_json(summary) if args.json else summary.table(), flush=True)
            return 0 if summary.ok else 1
        if args.command == "herd":
            from .testing._herd_cli import run_command as run_herd_command

            return run_herd_command(args)
        if args.command == "bench":
            from ._bench import run_command as run_bench_command

            return run_bench_command(args)
        if args.command == "serve":
            from ._serve import run_command as run_serve_command

            return run_serve_command(args)
        else:
            trio.run(_connect, args.url, not args.no_resume, args.count)
    except KeyboardInterrupt:
        return 130
    return 0
