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


async def test_connect_and_serve_commands_talk_to_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from trio_reconnect import _cli, _serve

    with trio.socket.socket() as sock:  # find a free port for the standalone server
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            args = _cli._parser().parse_args(
                ["serve", "--port", str(port), "--interval", "0.01", "--restart-every", "0.3"]
            )
            nursery.start_soon(_serve._serve, args)
            await trio.sleep(0.1)  # let it bind (real clock)
            await _cli._connect(f"ws://127.0.0.1:{port}/", True, 80)
            nursery.cancel_scope.cancel()
    captured = capsys.readouterr()
    events = [line for line in captured.out.splitlines() if line.startswith("event ")]
    assert len(events) == 80  # replayed, then live, across a restart
    assert '"tick"' in events[0]
    assert f"serving the reconnect protocol on ws://127.0.0.1:{port}/" in captured.out
    assert "restarting" in captured.out
    assert "-> open" in captured.err  # transitions go to stderr
