"""The demo and the command line, run for real (loopback TCP, real clock, small crowd)."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
import trio

from trio_reconnect._metrics import HEALTHY_BELOW, INCIDENT_ABOVE, REGRESSION_ABOVE
from trio_reconnect._tools._cli import main
from trio_reconnect._tools.demo._arrivals import AcceptTimes
from trio_reconnect._tools.demo._single import DemoSummary, run_demo


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
    # The hints are the server's plan: the health reads what is left beyond them.
    assert summary.median_beyond_server_wait_s is not None
    assert summary.median_beyond_server_wait_s < summary.median_reconnect_s
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("demo: 20 clients on the embedded server at ws://127.0.0.1:")
    assert lines[0].endswith("; 2 restarts (each drops every client with close code 1012 and a"
                             " time to come back) during 3 s of events at 20/s")  # fmt: skip
    assert all(line.startswith("connected ") for line in lines[1:])  # plain lines, no terminal
    assert "nothing lost" in summary.table()


async def test_demo_live_line_clears_to_the_end_on_each_redraw() -> None:
    out = io.StringIO()
    with trio.fail_after(60):
        await run_demo(clients=3, duration=1.0, restarts=1, rate=10.0, out=out, progress=True)
    opening, live = out.getvalue().split("\n", 1)
    assert opening.startswith("demo: 3 clients")
    redraws = live.split("\r")
    assert redraws[0] == ""
    assert len(redraws) >= 3
    for redraw in redraws[1:-1]:
        assert redraw.startswith("connected ")
        assert redraw.endswith("\x1b[K")  # a shorter line leaves no stale characters
    assert redraws[-1].endswith("\x1b[K\n")


async def test_demo_interrupted_ends_its_live_line() -> None:
    out = io.StringIO()
    with trio.move_on_after(1.5) as scope:  # as Ctrl-C would, mid-run
        await run_demo(clients=3, duration=60.0, restarts=1, out=out, progress=True)
    assert scope.cancelled_caught
    text = out.getvalue()
    assert "\rconnected " in text
    assert text.endswith("\x1b[K\n")  # the shell prompt starts on a line of its own


def _summary(**changes: Any) -> DemoSummary:
    values: dict[str, Any] = {
        "clients": 300, "duration_s": 16.8, "restarts": 3, "events_published": 72,
        "delivered_min": 72, "delivered_max": 72, "duplicated": 0, "lost": 0,
        "reconnects": 900, "median_reconnect_s": 1.291, "p95_reconnect_s": 2.288,
        "health": "watch", "peak_arrivals_per_100ms": 37, "planned_per_100ms": 15.0,
        "refused_handshakes": 0, "publishing_s": 15.0, "spread_base_s": 0.25,
        "spread_window_s": 2.0,
    }  # fmt: skip
    values.update(changes)
    return DemoSummary(**values)


def test_demo_summary_explains_its_terms() -> None:
    table = _summary().table()
    assert (
        "  duration                  16.8 s (15 s of events, plus connecting and catching up)"
        in table
    )
    assert "  peak vs planned           37 vs 15.0 arrivals per 100 ms (2.5 x the plan)" in table
    text = " ".join(table.split())  # unwrapped
    assert (
        "watch: the health level of the median reconnect less the wait the server asked for"
        f" (the client's own part): healthy under {HEALTHY_BELOW:g} s,"
        f" watch from {HEALTHY_BELOW:g} s to {REGRESSION_ABOVE:g} s, regression over"
        f" {REGRESSION_ABOVE:g} s, incident over {INCIDENT_ABOVE:g} s." in text
    )
    assert "spread from 0.25 s to 2.25 s after it, so a median near 1.25 s is that plan" in text
    assert "all 300 would come back within the same 100 ms, 20 x the plan;" in text
    assert "this run's 2.5 x is 8 times flatter." in text
    assert "fewer than" not in text  # 900 = 300 x 3
    for line in table.splitlines():
        assert len(line) <= 88, line
        assert not line.endswith((" 2.25", " 1.25", " 20")), line  # no number cut from its unit


def test_demo_summary_reconnects_fewer_than_drops_and_no_restart() -> None:
    text = " ".join(_summary(reconnects=78, clients=50, restarts=2).glossary().split())
    assert "78 is fewer than 50 x 2 restarts" in text
    quiet = " ".join(
        _summary(restarts=0, reconnects=0, peak_arrivals_per_100ms=0).glossary().split()
    )
    assert "With no restart there was no reconnect to measure." in quiet
    assert "peak vs planned" not in quiet


def test_demo_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo", "--clients", "5", "--duration", "1", "--restarts", "1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert status == 0
    assert summary["ok"] is True
    assert summary["clients"] == 5
    assert summary["lost"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"clients": 0}, "clients must be a positive integer, got 0"),
        ({"clients": True}, "clients must be a positive integer, got True"),
        ({"duration": 0}, "duration must be a positive finite number, got 0"),
        ({"restarts": -1}, "restarts must be a non-negative integer, got -1"),
        ({"rate": float("inf")}, "rate must be a positive finite number, got inf"),
    ],
)
def test_demo_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        trio.run(lambda: run_demo(**options))


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["demo", "--clients", "many"])


async def test_connect_and_serve_commands_talk_to_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from trio_reconnect._tools import _cli, _connect, _serve

    with trio.socket.socket() as sock:  # find a free port for the standalone server
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            args = _cli._parser()[0].parse_args(
                ["serve", "--port", str(port), "--interval", "0.01", "--restart-every", "0.3"]
            )
            nursery.start_soon(_serve._serve, args)
            await trio.sleep(0.1)  # let it bind (real clock)
            await _connect.connect(f"ws://127.0.0.1:{port}/", count=80)
            nursery.cancel_scope.cancel()
    captured = capsys.readouterr()
    events = [line for line in captured.out.splitlines() if line.startswith("event ")]
    assert len(events) == 80  # replayed, then live, across a restart
    assert '"tick"' in events[0]
    assert f"serving the reconnect protocol on ws://127.0.0.1:{port}/" in captured.out
    assert "restarting" in captured.out
    assert "-> open" in captured.err  # transitions go to stderr


def test_demo_json_has_the_peak_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--clients", "5", "--duration", "1", "--restarts", "1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["peak_ratio"] == summary["peak_arrivals_per_100ms"] / summary["planned_per_100ms"]
    )
    assert summary["peak_arrivals_per_100ms"] >= 1  # returns were counted at the server


async def test_returns_are_counted_at_the_server_s_accept() -> None:
    # The demo's measure (trio_reconnect/_tools/demo/_arrivals.py): each accepted
    # connection's time, binned from a restart.
    (tcp,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    accepted = AcceptTimes(tcp)
    port = tcp.socket.getsockname()[1]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, lambda stream: stream.aclose(), [accepted])
            before = trio.current_time()
            for _ in range(3):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.aclose()
            while len(accepted.times) < 3:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert all(before <= t <= trio.current_time() for t in accepted.times)
    assert accepted.times == sorted(accepted.times)
