"""The benchmark, run for real with tiny counts (loopback TCP, a server process, real clock).

Nothing here asserts a speed: only that the figures exist, are positive and
finite, and that the command line refuses bad options.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
import trio

from trio_reconnect import _bench
from trio_reconnect._bench_server import DROP
from trio_reconnect._cli import main

#: Every key ``--json`` must print.
EXPECTED_KEYS = {
    "seq_ratio",
    "pipe_ratio",
    "reconnect_ratio",
    "ours_seq_rps",
    "raw_seq_rps",
    "ours_pipe_mps",
    "raw_pipe_mps",
    "websockets_seq_rps",
    "websockets_pipe_mps",
    "ours_reconnect_ms",
    "raw_connect_ms",
    "ours_drop_to_ready_ms",
    "python",
    "trio",
    "trio_websocket",
    "websockets",
    "targets",
    "pass",
}

TINY = ["--messages", "10", "--pipeline", "20", "--rounds", "2", "--reconnects", "3"]


def _positive_finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def _check_figures(data: dict[str, Any]) -> None:
    assert data.keys() >= EXPECTED_KEYS
    for key in (
        "seq_ratio",
        "pipe_ratio",
        "reconnect_ratio",
        "ours_seq_rps",
        "raw_seq_rps",
        "ours_pipe_mps",
        "raw_pipe_mps",
        "ours_reconnect_ms",
        "raw_connect_ms",
        "ours_drop_to_ready_ms",
    ):
        assert _positive_finite(data[key]), (key, data[key])
    assert data["reconnects_not_immediate"] == 0  # retryAfter 0 was followed every time
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(data["pass"]) == {"seq", "pipe", "reconnect"}


async def test_run_bench_tiny() -> None:
    with trio.fail_after(60):
        result = await _bench.run_bench(messages=10, pipeline=20, rounds=2, reconnects=3)
    data = json.loads(result.json())
    _check_figures(data)
    assert len(data["seq_ratios"]) == len(data["pipe_ratios"]) == 2
    if data["websockets"] is None:  # not installed: the row is skipped, with a note
        assert data["websockets_seq_rps"] is None
        assert data["websockets_note"]
    else:
        assert _positive_finite(data["websockets_seq_rps"])
        assert _positive_finite(data["websockets_pipe_mps"])
    table = result.table()
    for text in ("sequential round trips/s", "pipelined messages/s", "reconnect", ">= 0.95"):
        assert text in table
    assert "PASS" in table or "MISS" in table


def test_bench_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["bench", "--json", "--no-websockets", "--timeout", "60", *TINY])
    data = json.loads(capsys.readouterr().out)
    assert status == 0
    _check_figures(data)
    assert data["websockets_seq_rps"] is None
    assert data["websockets_pipe_mps"] is None
    assert "skipped" in data["websockets_note"]
    assert (data["messages"], data["pipeline"], data["rounds"], data["reconnects"]) == (
        10,
        20,
        2,
        3,
    )


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--messages", "0"], "--messages must be a positive integer, got 0"),
        (["--pipeline", "-5"], "--pipeline must be a positive integer, got -5"),
        (["--rounds", "many"], "--rounds must be a positive integer, got 'many'"),
        (["--reconnects", "1.5"], "--reconnects must be a positive integer, got '1.5'"),
        (["--size", "8"], "--size must be at least 16, got 8"),
        (["--timeout", "0"], "--timeout must be a positive finite number, got 0"),
        (["--timeout", "nan"], "--timeout must be a positive finite number, got nan"),
        (["--timeout", "soon"], "--timeout must be a positive finite number, got 'soon'"),
        (["--unknown"], "unrecognized arguments: --unknown"),
    ],
)
def test_bench_command_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], complaint: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", *argv])
    assert info.value.code == 2
    assert capsys.readouterr().err == f"bench: {complaint}\n"  # one line


@pytest.mark.parametrize(
    "options",
    [{"messages": 0}, {"rounds": -1}, {"reconnects": True}, {"pipeline": 2.5}, {"size": 15}],
)
def test_run_bench_rejects_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        trio.run(lambda: _bench.run_bench(**options))


def test_websockets_row_skipped_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "websockets.trio.client", None)  # import fails
    connect, note = _bench._websockets_connect()
    assert connect is None
    assert note is not None
    assert "skipped" in note


async def test_bench_server_echoes_and_drops() -> None:
    import trio_websocket

    with trio.fail_after(30):
        async with _bench.bench_server() as port:
            # Our own stream, closed by us: trio-websocket's open_websocket_url
            # leaves the socket open when the server closes first.
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            try:
                async with trio.open_nursery() as nursery:
                    ws = await trio_websocket.wrap_client_stream(
                        nursery, stream, f"127.0.0.1:{port}", "/"
                    )
                    await ws.send_message(json.dumps({"type": "resume", "lastEventId": None}))
                    assert json.loads(await ws.get_message())["type"] == "ready"
                    await ws.send_message("hello")
                    assert await ws.get_message() == "hello"
                    await ws.send_message(DROP)
                    with pytest.raises(trio_websocket.ConnectionClosed) as info:
                        await ws.get_message()
                    nursery.cancel_scope.cancel()
            finally:
                await trio.aclose_forcefully(stream)
    reason = info.value.reason
    assert reason is not None
    assert reason.code == 1012
    assert json.loads(reason.reason or "") == {"reason": "bench drop", "retryAfter": 0}
