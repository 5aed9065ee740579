"""The demo and the command line, run for real (loopback TCP, real clock, small crowd)."""

from __future__ import annotations

import io
import json

import pytest
import trio

from trio_reconnect._cli import main
from trio_reconnect._demo import run_demo


async def test_demo_small_crowd_loses_nothing() -> None:
    out = io.StringIO()
    with trio.fail_after(60):
        summary = await run_demo(clients=20, duration=3.0, restarts=2, rate=20.0, out=out)
    assert summary.ok
    assert (summary.lost, summary.duplicated) == (0, 0)
    assert summary.restarts == 2
    assert summary.events_published >= 40
    assert summary.delivered_min == summary.delivered_max == summary.events_published
    assert summary.reconnects >= 20
    assert summary.median_reconnect_s is not None
    assert summary.median_reconnect_s <= 0.25 + 2.0 + 1.0  # base + window + slack
    assert "connected" in out.getvalue()  # plain progress lines (not a terminal)
    assert "nothing lost" in summary.table()


def test_demo_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo", "--clients", "5", "--duration", "1", "--restarts", "1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert status == 0
    assert summary["ok"] is True
    assert summary["clients"] == 5
    assert summary["lost"] == 0


def test_demo_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="clients"):
        trio.run(lambda: run_demo(clients=0))


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["demo", "--clients", "many"])
