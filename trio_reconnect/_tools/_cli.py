"""The command line: ``demo``, ``serve``, ``connect``, ``herd`` and ``bench``.

* ``python -m trio_reconnect demo``: the embedded server and a crowd of real
  clients through several spread restarts; exits 1 if any event was lost or
  duplicated. With ``--nodes N``: a rolling deploy of N real node processes
  sharing a redis-server (:mod:`trio_reconnect._tools.demo._cluster`).
* ``python -m trio_reconnect serve [--port N] [--redis URL] [--metrics-port M]``:
  a protocol node publishing a ticker, alone or one of a cluster sharing a
  Redis stream, for trying clients in other languages against it (and its
  Prometheus metrics on ``/metrics``). On SIGTERM or Ctrl-C it drains (1012
  and spread hints), prints one line saying what it drained, and exits 0
  (see :mod:`trio_reconnect._tools._serve`).
* ``python -m trio_reconnect connect URL [--channel NAME ...]``: a wscat-like
  client that prints every item (of the default stream and of each channel)
  and every state transition with its reason and delay, and sends the lines
  typed on stdin (see :mod:`trio_reconnect._tools._connect`).
* ``python -m trio_reconnect herd --clients N --capacity R --strategy S``:
  the herd simulator (:mod:`trio_reconnect.testing`): N real clients and the
  server on the in-memory network under a mock clock, through one restart.
* ``python -m trio_reconnect bench [--json]``: throughput and reconnect time
  against raw trio-websocket, as ratios (see :mod:`trio_reconnect._tools.bench._run`).

How every command fails is decided in :mod:`trio_reconnect._tools._policy`
(pure): a usage error is one line and exit status 2 (argparse's
:class:`~trio_reconnect._tools._policy.Parser`), a runtime error one line naming
its cause and 1, Ctrl-C 130 and nothing more. :func:`main` applies that policy
to whatever a command raises, so a command's body (``_serve``, ``_connect``)
only does its work: a graceful stop of ``serve`` on SIGINT/SIGTERM belongs in
``_serve``, and a command that handles the signal itself simply returns.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import trio

from ._interrupt import interruptible
from ._policy import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    exit_status,
    node_count,
    non_negative_int,
    port,
    positive_int,
    positive_number,
)

__all__ = ["SERVE_HOST", "SERVE_PORT", "main"]

T = TypeVar("T")

#: ``serve``'s default address.
SERVE_HOST: Final = "127.0.0.1"
#: ``serve``'s default port.
SERVE_PORT: Final = 8765


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each subcommand's (to say whose an unknown argument is)."""
    parser = Parser(
        prog="python -m trio_reconnect",
        description="A reconnecting WebSocket client for Trio, and its protocol server.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = _demo_parser(commands)
    serve = _serve_parser(commands)
    connect = _connect_parser(commands)
    from ._herd import add_arguments as add_herd_arguments

    herd = commands.add_parser("herd", help="simulate a reconnect storm in virtual time")
    add_herd_arguments(herd)
    from .bench._run import add_arguments as add_bench_arguments

    bench = commands.add_parser("bench", help="throughput and reconnect time vs trio-websocket")
    add_bench_arguments(bench)
    return parser, {"demo": demo, "serve": serve, "connect": connect, "herd": herd, "bench": bench}


def _demo_parser(
    commands: argparse._SubParsersAction[Parser],
) -> argparse.ArgumentParser:
    """``demo``'s options."""
    from .demo._single import DEFAULT_CLIENTS, DEFAULT_DURATION, DEFAULT_RATE, DEFAULT_RESTARTS

    demo = commands.add_parser("demo", help="a crowd of clients through server restarts")
    demo.add_argument(
        "--clients",
        type=positive_int,
        default=DEFAULT_CLIENTS,
        help=f"clients (default {DEFAULT_CLIENTS})",
    )
    demo.add_argument(
        "--duration",
        type=positive_number,
        default=DEFAULT_DURATION,
        help=f"seconds of events (default {DEFAULT_DURATION:g})",
    )
    demo.add_argument(
        "--restarts",
        type=non_negative_int,
        default=DEFAULT_RESTARTS,
        help=f"server restarts (default {DEFAULT_RESTARTS})",
    )
    demo.add_argument(
        "--rate",
        type=positive_number,
        default=DEFAULT_RATE,
        help=f"events/s (default {DEFAULT_RATE:g})",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument(
        "--nodes",
        type=node_count,
        default=None,
        help="instead: a rolling deploy of N real node processes sharing a redis-server "
        "(at least 2; each node restarts once, so --duration and --restarts do not apply)",
    )
    return demo


def _serve_parser(
    commands: argparse._SubParsersAction[Parser],
) -> argparse.ArgumentParser:
    """``serve``'s options (the server's own in :func:`._serve.add_arguments`)."""
    from ._serve import DEFAULT_INTERVAL
    from ._serve import add_arguments as add_serve_arguments

    serve = commands.add_parser("serve", help="a standalone protocol server with a ticker")
    serve.add_argument(
        "--host", default=SERVE_HOST, help="address to listen on (default %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=port,
        default=SERVE_PORT,
        help="TCP port to listen on, 0 for any free port (default %(default)s)",
    )
    serve.add_argument(
        "--interval",
        type=positive_number,
        default=DEFAULT_INTERVAL,
        help=f"seconds between ticks (default {DEFAULT_INTERVAL:g})",
    )
    serve.add_argument(
        "--restart-every",
        type=positive_number,
        default=None,
        help="restart (1012 + spread) every N s (default: never)",
    )
    serve.add_argument(
        "--metrics-port",
        type=_metrics_port,
        default=None,
        help="serve Prometheus metrics on http://HOST:N/metrics (needs the prometheus extra)",
    )
    add_serve_arguments(serve)
    return serve


def _connect_parser(
    commands: argparse._SubParsersAction[Parser],
) -> argparse.ArgumentParser:
    """``connect``'s options."""
    connect = commands.add_parser("connect", help="print items and transitions from a server")
    from ._connect import add_arguments as add_connect_arguments

    add_connect_arguments(connect, f"ws://{SERVE_HOST}:{SERVE_PORT}/")
    return connect


def _metrics_port(text: str) -> int:
    """``--metrics-port``: a port (``_policy.port``), with prometheus-client installed."""
    value = port(text)
    try:
        import prometheus_client  # noqa: F401  (only when the option is given)
    except ImportError:
        raise argparse.ArgumentTypeError(
            "needs prometheus-client: pip install 'trio-reconnect[prometheus]'"
        ) from None
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (see :mod:`trio_reconnect._tools._policy`)."""
    parser, commands = _parser()
    args: Any
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return _run(args)
    except BaseException as error:
        outcome = exit_status(error)
        if outcome is None:
            raise  # a bug, not a user's mistake: keep its traceback
        status, cause = outcome
        if cause is not None:
            print(f"{args.command}: {_context(args)}{cause}", file=sys.stderr, flush=True)
        return status


def _context(args: Any) -> str:
    """What a runtime error of the command is about, as the start of its line."""
    if args.command == "serve":
        return f"{args.host}:{args.port}: "
    if args.command == "connect":
        from ._connect import display_url

        return f"{display_url(args.url)}: "
    return ""


def _run(args: Any) -> int:
    if args.command == "demo" and args.nodes is not None:
        from .demo._cluster import run_command as run_cluster_demo_command

        return run_cluster_demo_command(args)
    if args.command == "demo":
        from .demo._single import run_demo, summary_json

        summary = trio.run(
            interruptible,
            functools.partial(
                run_demo,
                clients=args.clients,
                duration=args.duration,
                restarts=args.restarts,
                rate=args.rate,
            ),
        )
        print(summary_json(summary) if args.json else summary.table(), flush=True)
        return EXIT_OK if summary.ok else EXIT_FAILED
    if args.command == "herd":
        from ._herd import run_command as run_herd_command

        return run_herd_command(args)
    if args.command == "bench":
        from .bench._run import run_command as run_bench_command

        try:
            return run_bench_command(args)
        except trio.TooSlowError:
            # A runtime error like any other (TimeoutError is an OSError): one line.
            raise TimeoutError(f"the run took longer than --timeout {args.timeout:g} s") from None
    if args.command == "serve":
        from ._serve import run_command as run_serve_command

        return run_serve_command(args)
    from ._connect import run_command as run_connect_command

    return run_connect_command(args)
