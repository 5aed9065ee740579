"""``python -m trio_reconnect herd``: run the herd simulator, print a table, JSON or a plot.

With ``--strategy all`` every strategy runs in its own process (``--jobs`` at
a time), so that each gets a fresh interpreter: its memory figure is its own
and a slow strategy does not hold the others up.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..testing._herd import (
    BALANCERS,
    DEFAULT_JITTER,
    DEFAULT_LATENCY,
    DEPLOYS,
    HerdConfig,
    run_herd,
)
from ..testing._herd_tally import MIN_CHANNEL_SET
from ..testing._strategies import STRATEGIES
from ._herd_report import (
    channels_intact,
    format_rolling_table,
    format_table,
    plot,
    plot_rolling,
)
from ._policy import non_negative_int, non_negative_number, positive_int, positive_number

__all__ = ["add_arguments", "run_command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``herd`` options to ``parser``."""
    parser.add_argument("--clients", type=positive_int, default=1000, help="clients (default 1000)")
    parser.add_argument(
        "--capacity",
        type=positive_number,
        default=100.0,
        help="handshakes/s admitted (default 100)",
    )
    parser.add_argument(
        "--strategy",
        default="all",
        choices=[*STRATEGIES, "all"],
        help="client strategy, or all of them (default all)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per strategy")
    parser.add_argument("--plot", metavar="FILE.png", help="draw arrivals over time (matplotlib)")
    parser.add_argument(
        "--latency",
        type=non_negative_number,
        default=DEFAULT_LATENCY,
        help=f"one-way latency, s (default {DEFAULT_LATENCY})",
    )
    parser.add_argument(
        "--jitter",
        type=non_negative_number,
        default=DEFAULT_JITTER,
        help=f"extra one-way latency, s (default {DEFAULT_JITTER:.3f})",
    )
    parser.add_argument(
        "--accept-rate",
        type=positive_number,
        default=None,
        help="connections/s the server accepts, 503s included (default 10 x capacity)",
    )
    parser.add_argument(
        "--horizon",
        type=positive_number,
        default=None,
        help="virtual seconds to wait for stragglers",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument(
        "--channels",
        type=non_negative_int,
        default=0,
        metavar="K",
        help=f"each client subscribes to K of max(K, {MIN_CHANNEL_SET}) channels, and lost and "
        "duplicated events are counted per channel (default 0: no channels)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        help="strategies run in parallel with --strategy all (default: CPU count)",
    )
    _deploy_arguments(parser)


def _deploy_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a deploy over several nodes."""
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="server nodes sharing one log; more than 1 needs --deploy rolling (default 1)",
    )
    parser.add_argument(
        "--deploy",
        default="restart",
        choices=DEPLOYS,
        help="restart: the node restarts; rolling: each node drains and is replaced in turn",
    )
    parser.add_argument(
        "--balancer",
        default="round-robin",
        choices=BALANCERS,
        help="how a rolling deploy's load balancer picks a node (default round-robin)",
    )


def _configs(args: Any) -> list[HerdConfig]:
    names = list(STRATEGIES) if args.strategy == "all" else [args.strategy]
    return [
        HerdConfig(
            clients=args.clients,
            capacity=args.capacity,
            strategy=name,
            latency=args.latency,
            jitter=args.jitter,
            accept_rate=args.accept_rate,
            horizon=args.horizon,
            seed=args.seed,
            nodes=args.nodes,
            deploy=args.deploy,
            balancer=args.balancer,
            channels=args.channels,
        )
        for name in names
    ]


def _run_one(config: HerdConfig) -> Any:
    """A :class:`HerdResult`, or a ``RollingResult`` for a rolling deploy."""
    if config.deploy == "rolling":
        from ..testing._herd_deploy import run_rolling_deploy

        return run_rolling_deploy(config)
    return run_herd(config)


def _run_all(configs: Sequence[HerdConfig], jobs: int) -> list[Any]:
    if len(configs) == 1:
        return [_run_one(configs[0])]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, max_tasks_per_child=1
    ) as pool:
        return list(pool.map(_run_one, configs))


def run_command(args: Any) -> int:
    """Run ``herd`` with parsed ``args``; return the exit status."""
    try:
        configs = _configs(args)
    except ValueError as exc:
        print(f"herd: {exc}", file=sys.stderr)
        return 2
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)  # --jobs: at least 1
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "herd: --plot needs matplotlib: python3 -m pip install 'trio-reconnect[plot]'",
                file=sys.stderr,
            )
            return 2
    results = _run_all(configs, jobs)
    rolling = configs[0].deploy == "rolling"
    if args.json:
        for result in results:
            print(json.dumps(result.summary()), flush=True)
    elif rolling:
        print(format_rolling_table(results), flush=True)
    else:
        print(format_table(results), flush=True)
    if args.plot and rolling:
        plot_rolling(results, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    elif args.plot:
        plot(results, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    # With --channels: exit 1 when a channel lost, doubled or reordered an event.
    return 0 if all(channels_intact(r) for r in results if not rolling) else 1
