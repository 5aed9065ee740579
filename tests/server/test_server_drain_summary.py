"""DrainSummary: a line for people, and a line a program reads back (the cluster demo)."""

from __future__ import annotations

import signal

from trio_reconnect.server import DrainSummary
from trio_reconnect.server._drain import DRAIN_SUMMARY_TAG


def test_the_json_line_reads_back_exactly() -> None:
    summary = DrainSummary(
        drained=120,
        aborted=2,
        window=3.25,
        survivors=("b", "c"),
        seconds=4.5,
        signal=int(signal.SIGTERM),
    )
    line = summary.json_line()
    assert line.startswith(DRAIN_SUMMARY_TAG + " ")
    assert "\n" not in line
    output = f"serving\nserve: {summary.describe()}\nserve: {line}\n"
    assert DrainSummary.from_output(output) == summary


def test_the_last_summary_wins_and_garbage_is_skipped() -> None:
    first, second = DrainSummary(1, 0, 1.0), DrainSummary(2, 1, 2.0, survivors=("x",))
    output = "\n".join(
        [first.json_line(), f"{DRAIN_SUMMARY_TAG} {{not json", second.json_line(), "other"]
    )
    assert DrainSummary.from_output(output) == second
    assert DrainSummary.from_output("no summary here") is None
