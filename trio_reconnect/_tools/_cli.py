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
* ``python -m trio_reconnect connect URL``: a wscat-like client that prints
  every item and every state transition with its reason and delay.
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
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import trio

from .._client import open_reconnecting_websocket
from .._exceptions import ClientClosedError
from .._protocol import Gap, ServerEvent, Snapshot
from .._state import ConnectionState, Transition
from .._transport import parse_url
from ._interrupt import interruptible
from ._policy import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    describe_error,
    exit_status,
    lower_first,
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


def _websocket_url(text: str) -> str:
    """argparse type: a URL that :func:`~trio_reconnect._transport.parse_url` accepts."""
    try:
        parse_url(text)
    except ValueError as exc:
        reason = lower_first(str(exc))
        raise argparse.ArgumentTypeError(f"{text!r} is not a websocket URL: {reason}") from None
    return text


def _display_url(url: str) -> str:
    """``url`` without its query string (queries carry tokens; never print a credential)."""
    return url.split("?", 1)[0]


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
    connect.add_argument(
        "url",
        type=_websocket_url,
        help=f"the server's ws:// or wss:// URL, e.g. ws://{SERVE_HOST}:{SERVE_PORT}/ (serve's)",
    )
    connect.add_argument("--no-resume", action="store_true", help="plain websocket server")
    connect.add_argument(
        "--count", type=positive_int, default=None, help="stop after N items (default: never)"
    )
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


def _wall_clock(stamp: float) -> str:
    """``HH:MM:SS.mmm``, local time."""
    return time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"


def _transition_printer() -> Callable[[Transition], None]:
    """An ``on_transition`` hook printing each transition on stderr, stamped with wall time.

    Call it inside ``trio.run``: it maps trio's clock to the wall clock once.
    The last transition of a failed client is not printed: :func:`main`
    prints its cause as the command's one error line.
    """
    offset = time.time() - trio.current_time()

    def show(t: Transition) -> None:
        if t.state is ConnectionState.FAILED:
            return
        parts = [f"[{_wall_clock(offset + t.time)}] {t.previous.value} -> {t.state.value}"]
        if t.delay is not None:
            source = t.delay_source.value if t.delay_source else "-"
            parts.append(f"wait {t.delay:.3f}s ({source})")
        if t.close_code is not None:
            parts.append(f"close {t.close_code} {t.close_reason or ''}".rstrip())
        if t.status_code is not None:
            parts.append(f"HTTP {t.status_code}")
        elif t.error is not None and not isinstance(t.error, ClientClosedError):
            parts.append(describe_error(t.error))
        print("  ".join(parts), file=sys.stderr, flush=True)

    return show


def _describe_gap(gap: Gap) -> str:
    """What a Gap says is lost: the events after ``last_id`` up to ``ready_id``."""
    after = "" if gap.last_id is None else f" after {gap.last_id}"
    if gap.ready_id is None:
        return f"gap: the events{after} were lost (the server holds none since)"
    return f"gap: the events{after} up to and including {gap.ready_id} were lost"


async def _connect(url: str, resume: bool, count: int | None) -> None:
    async with open_reconnecting_websocket(
        url, resume=resume, on_transition=_transition_printer(), max_attempts=None
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
        return f"{_display_url(args.url)}: "
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
    else:
        trio.run(
            interruptible, functools.partial(_connect, args.url, not args.no_resume, args.count)
        )
    return EXIT_OK
