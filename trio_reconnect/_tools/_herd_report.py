"""What ``python -m trio_reconnect herd`` prints and draws: targets, tables and plots.

Imports both simulators' results (:mod:`trio_reconnect.testing._herd`,
:mod:`trio_reconnect.testing._herd_deploy`); neither simulator imports this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ..testing._herd import BIN_SECONDS, HerdResult
from ..testing._herd_deploy import RollingResult

__all__ = [
    "ALL_READY_FACTOR",
    "ALL_READY_SLACK_S",
    "PEAK_RATIO_TARGET",
    "REFUSED_SHARE_TARGET",
    "check_rolling_targets",
    "channels_intact",
    "check_targets",
    "describe_channels",
    "format_rolling_table",
    "format_table",
    "plot",
    "plot_rolling",
    "pyplot",
]

#: The targets of ``server-spread`` (issue 4): peak ratio, all-ready time, refusals.
PEAK_RATIO_TARGET: Final = 1.15
ALL_READY_FACTOR: Final = 1.1
ALL_READY_SLACK_S: Final = 1.0
REFUSED_SHARE_TARGET: Final = 0.01


def describe_channels(result: HerdResult) -> str:
    """One line for a run with channels: what was published, lost and doubled."""
    return (
        f"channels: {result.channels} of {result.channel_set} per client,"
        f" {result.events_published} events published; lost {result.lost},"
        f" duplicated {result.duplicated}, out of order {result.out_of_order},"
        f" gaps {result.gaps}, snapshots {result.snapshots}"
    )


def channels_intact(result: HerdResult) -> bool:
    """Whether no channel lost, doubled or reordered an event (``True`` without channels)."""
    return not result.channels or result.lost == result.duplicated == result.out_of_order == 0


def check_targets(result: HerdResult) -> dict[str, bool]:
    """The issue's targets for ``server-spread``, each ``True`` when met."""
    ready = result.all_ready_s
    channels = (
        {"channels: lost 0, duplicated 0, out of order 0": channels_intact(result)}
        if result.channels
        else {}
    )
    return {
        **channels,
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
        if r.channels:
            lines.append(f"{'':<19}{describe_channels(r)}")
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


# -- the rolling deploy ----------------------------------------------------------


def check_rolling_targets(result: RollingResult) -> dict[str, bool]:
    """The rolling deploy's targets (issue 10), each ``True`` when met."""
    return {
        f"peak_ratio <= {PEAK_RATIO_TARGET}": result.peak_ratio <= PEAK_RATIO_TARGET,
        "0 lost": result.lost == 0,
        "0 duplicated": result.duplicated == 0 and result.app_duplicated == 0,
        "every client ready again": result.all_ready_s is not None and result.not_ready == 0,
    }


def format_rolling_table(results: Sequence[RollingResult]) -> str:
    """One block per result: the drains, each node's peak, the checks."""
    lines: list[str] = []
    for r in results:
        lines += [
            f"rolling deploy: {r.clients} clients, {r.nodes} nodes at {r.capacity:g}/s each,"
            f" {r.balancer} balancer, strategy {r.strategy}, latency {r.latency * 1000:g} ms,"
            f" seed {r.seed}; times in virtual seconds after the deploy started",
            "",
            f"{'node':<8}{'drained at':>11}{'clients':>9}{'window':>8}{'ends':>7}"
            f"{'back':>7}  survivors",
        ]
        for d in r.drains:
            ends = "-" if d["ends_s"] is None else f"{d['ends_s']:.2f}"
            lines.append(
                f"{d['node']:<8}{d['at_s']:>11.2f}{d['drained']:>9}{d['window_s']:>8.2f}"
                f"{ends:>7}{d['back_s']:>7.2f}  {', '.join(d['survivors']) or '-'}"
            )
        peaks = ", ".join(f"{node} {peak}" for node, peak in r.node_peaks.items())
        ready = "-" if r.all_ready_s is None else f"{r.all_ready_s:.2f} s"
        lines += [
            "",
            f"peak arrivals per 100 ms: {peaks} (capacity {r.ideal_per_100ms:g});"
            f" peak_ratio {r.peak_ratio:.2f}",
            f"all ready {ready}; {r.attempts} attempts, {r.refused_handshakes} refused,"
            f" {r.reconnects} reconnects (median {r.median_reconnect_s} s)",
            f"{r.events_published} events published ({r.events_replayed} replayed after"
            f" a move): lost {r.lost}, duplicated {r.duplicated}"
            f" (on the wire; {r.app_duplicated} in the application), {r.gaps} gaps,"
            f" {r.snapshots} snapshots; wall {r.wall_s:.1f} s",
        ]
        lines += [
            f"target {name}: {'PASS' if met else 'MISS'}"
            for name, met in check_rolling_targets(r).items()
        ]
        lines.append("")
    return "\n".join(lines).rstrip()


def plot_rolling(results: Sequence[RollingResult], path: str) -> None:
    """Draw each node's arrivals per 100 ms during the deploy, one panel per result.

    Raises:
        RuntimeError: if matplotlib is not installed.
    """
    plt = pyplot()
    figure, axes = plt.subplots(
        len(results), 1, figsize=(9, 2.4 * len(results) + 0.6), sharex=True, squeeze=False
    )
    for ax, r in zip(axes[:, 0], results, strict=True):
        for node, bins in r.arrivals.items():
            times = [i * BIN_SECONDS for i in range(len(bins))]
            ax.step(times, bins, where="post", linewidth=0.8, label=f"{node} attempts / 100 ms")
        ax.axhline(
            r.ideal_per_100ms,
            color="grey",
            linestyle="--",
            linewidth=0.8,
            label=f"a node's capacity per 100 ms ({r.ideal_per_100ms:g})",
        )
        for d in r.drains:
            ax.axvline(d["at_s"], color="black", linewidth=0.5, linestyle=":")
        ax.set_title(
            f"{r.strategy}, {r.balancer} balancer: peak {r.peak_ratio:.2f} x a node's capacity,"
            f" all ready {'-' if r.all_ready_s is None else format(r.all_ready_s, '.1f')} s,"
            f" lost {r.lost}, duplicated {r.duplicated}",
            fontsize=9,
        )
        ax.set_ylabel("attempts / 100 ms", fontsize=8)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("seconds after the deploy started (virtual); dotted: a drain starts")
    first = results[0]
    figure.suptitle(
        f"rolling deploy: {first.clients} clients, {first.nodes} nodes at"
        f" {first.capacity:g} handshakes/s each"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
