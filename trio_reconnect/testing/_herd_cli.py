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
from typing import Any, Final

from .._cli_policy import non_negative_number, positive_int, positive_number
from ._herd import BALANCERS, BIN_SECONDS, DEPLOYS, HerdConfig, HerdResult, run_herd
from ._strategies import STRATEGIES

__all__ = ["add_arguments", "check_targets", "format_table", "plot", "run_command"]

#: The targets of ``server-spread`` (issue 4): peak ratio, all-ready time, refusals.
PEAK_RATIO_TARGET: Final = 1.15
ALL_READY_FACTOR: Final = 1.1
ALL_READY_SLACK_S: Final = 1.0
REFUSED_SHARE_TARGET: Final = 0.01


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
        default=0.025,
        help="one-way latency, s (default 0.025)",
    )
    parser.add_argument(
        "--jitter",
        type=non_negative_number,
        default=0.010,
        help="extra one-way latency, s (default 0.010)",
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
        "--jobs",
        type=positive_int,
        default=None,
        help="strategies run in parallel with --strategy all (default: CPU count)",
    )
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


def check_targets(result: HerdResult) -> dict[str, bool]:
    """The issue's targets for ``server-spread``, each ``True`` when met."""
    ready = result.all_ready_s
    return {
        f"peak_ratio <= {PEAK_RATIO_TARGET}": result.peak_ratio <= PEAK_RATIO_TARGET,
        f"all_ready_s <= {ALL_READY_FACTOR} x N/R + {ALL_READY_SLACK_S:g}": ready is not None
        and ready <= ALL_READY_FACTOR * result.ideal_all_ready_s + ALL_READY_SLACK_S,
        f"refused <= {REFUSED_SHARE_TARGET:.0%} of N": result.refused_handshakes
        <= REFUSED_SHARE_TARGET * result.clients,
    }


#: The table's columns, explained under it.
COLUMNS: Final = (
    ("peak/100ms", "most connection attempts reaching the server in one 100 ms bin"),
    ("ratio", "peak/100ms over the server's capacity per 100 ms: 1.00 is perfectly paced"),
    ("all ready", "seconds until the last client was ready again"),
    ("N/R", "clients / capacity: the soonest every client can be back"),
    ("refused", "handshakes refused with 503 by admission control"),
    ("attempts", "connection attempts after the restart (N: each came back at its first try)"),
    ("median, p95", "reconnect time per client, from the close to ready, seconds"),
    ("wall s", "real seconds the simulation took"),
    ("KiB/cl", "memory per simulated client (both ends and the server's state), KiB"),
)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: Sequence[HerdResult]) -> str:
    """A fixed-width table of ``results``, with the targets checked for ``server-spread``."""
    if not results:
        return "no results"
    first = results[0]
    lines = [
        f"herd: {first.clients} clients, capacity {first.capacity:g}/s, "
        f"latency {first.latency * 1000:g} ms, accept rate {first.accept_rate:g}/s, "
        f"seed {first.seed}; times in virtual seconds after the restart",
        "",
        f"{'strategy':<19}{'peak/100ms':>11}{'ratio':>8}{'all ready':>10}{'N/R':>7}"
        f"{'refused':>9}{'attempts':>10}{'median':>8}{'p95':>8}{'wall s':>8}{'KiB/cl':>8}",
    ]
    for r in results:
        lines.append(
            f"{r.strategy:<19}{r.peak_per_100ms:>11}{r.peak_ratio:>8.2f}"
            f"{_fmt(r.all_ready_s, '.1f'):>10}{r.ideal_all_ready_s:>7.1f}"
            f"{r.refused_handshakes:>9}{r.attempts:>10}{_fmt(r.median_reconnect_s):>8}"
            f"{_fmt(r.p95_reconnect_s):>8}{r.wall_s:>8.1f}{r.rss_per_client_kb:>8.1f}"
        )
        if r.not_ready:
            lines.append(f"{'':<19}{r.not_ready} clients not ready within the horizon")
    lines.append("")
    width = max(len(name) for name, _ in COLUMNS)
    lines.extend(f"{name:<{width}}  {meaning}" for name, meaning in COLUMNS)
    lines.extend(_sooner_but_costlier(results))
    for r in results:
        if r.strategy == "server-spread":
            lines.append("")
            lines.append(
                "targets (set for N = 10,000 at R = 1,000/s; with fewer than ~100 arrivals"
                " per bin, one client more is a large share of a bin):"
            )
            for name, met in check_targets(r).items():
                lines.append(f"server-spread target {name}: {'PASS' if met else 'MISS'}")
    return "\n".join(lines)


#: The plot's legend, in words, on every panel.
ARRIVALS_LABEL: Final = "connection attempts per 100 ms"
CAPACITY_LABEL: Final = "server capacity per 100 ms"


def _sooner_but_costlier(results: Sequence[HerdResult]) -> list[str]:
    """A line for each strategy all ready before ``server-spread``: at what cost."""
    ours = next((r for r in results if r.strategy == "server-spread"), None)
    if ours is None or ours.all_ready_s is None:
        return []
    lines = []
    for r in results:
        if r is ours or r.all_ready_s is None or r.all_ready_s >= ours.all_ready_s:
            continue
        lines.append("")
        lines.append(
            f"{r.strategy} is all ready sooner than server-spread ({r.all_ready_s:.1f} s against"
            f" {ours.all_ready_s:.1f} s), bought with {r.attempts:,} connection attempts"
            f" ({r.refused_handshakes:,} of them refused with 503),"
            f" {r.attempts / ours.attempts:.1f} x the {ours.attempts:,} of server-spread."
        )
    return lines


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files, no screen).

    Raises:
        RuntimeError: if matplotlib is not installed (the ``plot`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            "--plot needs matplotlib: python3 -m pip install 'trio-reconnect[plot]'"
        ) from exc
    return plt


def plot(results: Sequence[HerdResult], path: str) -> None:
    """Draw the arrivals per 100 ms after the restart, one panel per strategy.

    Every panel has the same logarithmic y axis (a naive herd is a hundred
    times the capacity, a paced return about one time), labelled as such, and
    its own legend.

    Raises:
        RuntimeError: if matplotlib is not installed.
    """
    plt = pyplot()
    figure = _figure(plt, results)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _figure(plt: Any, results: Sequence[HerdResult]) -> Any:
    figure, axes = plt.subplots(
        len(results),
        1,
        figsize=(9, 2.2 * len(results) + 0.6),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    horizon = max(
        (r.all_ready_s if r.all_ready_s is not None else len(r.arrivals) * BIN_SECONDS)
        for r in results
    )
    top = max(max(r.peak_per_100ms, r.ideal_per_100ms) for r in results)
    for ax, r in zip(axes[:, 0], results, strict=True):
        times = [i * BIN_SECONDS for i in range(len(r.arrivals))]
        ax.step(times, r.arrivals, where="post", linewidth=0.9, label=ARRIVALS_LABEL)
        ax.axhline(
            r.ideal_per_100ms,
            color="grey",
            linestyle="--",
            linewidth=0.8,
            label=f"{CAPACITY_LABEL} ({r.ideal_per_100ms:g})",
        )
        ax.set_title(
            f"{r.strategy}: peak {r.peak_ratio:.2f} x capacity, all ready "
            f"{_fmt(r.all_ready_s, '.1f')} s, {r.refused_handshakes:,} refused",
            fontsize=9,
        )
        # One kind of axis for every panel: empty bins sit on the bottom edge.
        ax.set_yscale("log", nonpositive="clip")
        ax.set_ylabel("attempts / 100 ms\n(log scale)", fontsize=8)
        ax.legend(loc="upper right", fontsize=7)
    axes[0, 0].set_ylim(0.8, top * 2)  # shared by every panel
    longest = max(len(r.arrivals) for r in results) * BIN_SECONDS
    axes[-1, 0].set_xlim(0, min(horizon * 1.05 + 1, longest + 1))  # shared by every panel
    axes[-1, 0].set_xlabel("seconds after the restart (virtual)")
    first = results[0]
    figure.suptitle(f"{first.clients} clients, capacity {first.capacity:g} handshakes/s")
    figure.tight_layout()
    return figure


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
        )
        for name in names
    ]


def _run_one(config: HerdConfig) -> Any:
    """A :class:`HerdResult`, or a ``RollingResult`` for a rolling deploy."""
    if config.deploy == "rolling":
        from ._herd_deploy import run_rolling_deploy

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
        from ._herd_deploy import format_rolling_table

        print(format_rolling_table(results), flush=True)
    else:
        print(format_table(results), flush=True)
    if args.plot and rolling:
        from ._herd_deploy import plot_rolling

        plot_rolling(results, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    elif args.plot:
        plot(results, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
