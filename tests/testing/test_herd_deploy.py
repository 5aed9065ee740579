"""The herd simulator's rolling deploy: K nodes on one log and registry, drained in turn.

Small herds with exact checks; the 3,000-client figures are in docs/explanation/herd.md.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from trio_reconnect import Gap, ServerEvent, Snapshot
from trio_reconnect._tools._cli import main
from trio_reconnect._tools._herd_report import check_rolling_targets, format_rolling_table
from trio_reconnect.testing._herd import HerdConfig, run_herd
from trio_reconnect.testing._herd_deploy import (
    DEREGISTER_DELAY,
    RollingResult,
    _check_deliveries,
    _Client,
    run_rolling_deploy,
)
from trio_reconnect.testing._herd_wire import FrameTap

#: 150 clients at 10 handshakes/s per node: every drain's window is set by the
#: survivors' rate (50+ clients over 20/s is more than the 2 s min_window).
CLIENTS = 150
CAPACITY = 10.0


def per_second(bins: tuple[int, ...]) -> int:
    """The most arrivals in any 1 s (ten consecutive 100 ms bins)."""
    return max(sum(bins[i : i + 10]) for i in range(max(1, len(bins) - 9)))


@pytest.fixture(scope="module")
def rolling() -> dict[str, RollingResult]:
    return {
        balancer: run_rolling_deploy(
            HerdConfig(CLIENTS, CAPACITY, nodes=3, deploy="rolling", balancer=balancer)
        )
        for balancer in ("round-robin", "random")
    }


@pytest.mark.parametrize("balancer", ["round-robin", "random"])
def test_every_client_gets_every_event_exactly_once(
    rolling: dict[str, RollingResult], balancer: str
) -> None:
    result = rolling[balancer]
    assert result.events_published > 50  # the ticker ran the whole time
    assert result.events_replayed > 0  # some client resumed on another node with events to catch up
    assert (result.lost, result.duplicated, result.app_duplicated) == (0, 0, 0)
    assert (result.gaps, result.snapshots) == (0, 0)
    assert result.not_ready == 0
    assert result.all_ready_s is not None


def test_every_node_drains_over_the_others_and_comes_back(
    rolling: dict[str, RollingResult],
) -> None:
    result = rolling["round-robin"]
    names = ["node0", "node1", "node2"]
    assert [d["node"] for d in result.drains] == names
    for drain in result.drains:
        others = [n for n in names if n != drain["node"]]
        assert drain["survivors"] == others  # the replaced node is back in time
        assert drain["drained"] > 0
        assert drain["aborted"] == 0
        assert drain["back_s"] > drain["at_s"]
        # The window is set by the two survivors' rate, not the min_window.
        assert drain["window_s"] == pytest.approx(drain["drained"] / (2 * CAPACITY))
    assert result.drains[0]["at_s"] == DEREGISTER_DELAY
    # Every client was connected somewhere before the first drain.
    assert result.drains[0]["drained"] == CLIENTS // 3
    assert result.reconnects >= CLIENTS
    assert sum(result.final_clients.values()) == CLIENTS


def test_a_drain_does_not_stack_on_the_previous_one(
    rolling: dict[str, RollingResult],
) -> None:
    """The next drain starts while the previous window is open; it waits for its end."""
    drains = rolling["round-robin"].drains
    for previous, drain in itertools.pairwise(drains):
        assert drain["at_s"] < previous["ends_s"]  # overlapping, as a rolling update does
        # base (0.25 s) after the previous window's end, then its own window
        assert drain["ends_s"] == pytest.approx(
            previous["ends_s"] + 0.25 + drain["window_s"], abs=1e-3
        )


def test_no_node_gets_more_than_its_capacity(rolling: dict[str, RollingResult]) -> None:
    result = rolling["round-robin"]
    for node, bins in result.arrivals.items():
        # At 10/s a 100 ms bin holds one arrival; one second holds ten. Two
        # drains stacked on the same survivors would put about twenty there.
        assert per_second(bins) <= CAPACITY + 2, node
        assert sum(bins) > 0, node
    assert result.refused_handshakes == 0
    assert result.attempts == result.reconnects  # one attempt per reconnect: hints were right


def test_the_random_balancer_spreads_less_evenly(rolling: dict[str, RollingResult]) -> None:
    even = max(per_second(b) for b in rolling["round-robin"].arrivals.values())
    uneven = max(per_second(b) for b in rolling["random"].arrivals.values())
    assert uneven > even


def test_a_rolling_run_is_reproducible() -> None:
    config = HerdConfig(30, 10.0, nodes=2, deploy="rolling", seed=3)
    first, second = run_rolling_deploy(config), run_rolling_deploy(config)
    assert first.arrivals == second.arrivals
    assert first.drains == second.drains
    assert (first.lost, first.duplicated) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": 0}, "nodes must be a positive integer"),
        ({"nodes": 2}, "several nodes need deploy='rolling'"),
        ({"nodes": 1, "deploy": "rolling"}, "a rolling deploy needs at least 2 nodes"),
        ({"nodes": 3, "deploy": "blue-green"}, "unknown deploy 'blue-green'"),
        ({"nodes": 3, "deploy": "rolling", "balancer": "dns"}, "unknown balancer 'dns'"),
        ({"nodes": 3, "deploy": "rolling", "event_interval": 0}, "event_interval"),
        ({"nodes": 3, "deploy": "rolling", "restart_delay": -1}, "restart_delay"),
    ],
)
def test_bad_configs(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HerdConfig(10, 5.0, **kwargs)


def test_each_runner_refuses_the_other_deploy() -> None:
    with pytest.raises(ValueError, match="run_rolling_deploy"):
        run_herd(HerdConfig(10, 5.0, nodes=2, deploy="rolling"))
    with pytest.raises(ValueError, match="deploy='rolling'"):
        run_rolling_deploy(HerdConfig(10, 5.0))


# -- the checks themselves -------------------------------------------------------------


def client_with(*items: ServerEvent | Snapshot | Gap) -> _Client:
    return _Client(items=list(items))


def event(n: int) -> ServerEvent:
    return ServerEvent(str(n), None)


def test_deliveries_count_what_a_gap_or_snapshot_does_not_account_for() -> None:
    assert _check_deliveries(client_with(*map(event, range(1, 6))), 5) == (0, 0, 0, 0)
    assert _check_deliveries(client_with(event(1), event(3)), 4) == (2, 0, 0, 0)
    # A gap accounts for everything up to the next item, exactly.
    assert _check_deliveries(client_with(event(1), Gap("1"), event(4)), 4) == (0, 0, 1, 0)
    assert _check_deliveries(client_with(event(1), Gap("1"), event(4)), 6) == (2, 0, 1, 0)
    assert _check_deliveries(client_with(event(1), Gap("1")), 6) == (0, 0, 1, 0)
    assert _check_deliveries(client_with(Gap(None), event(3)), 3) == (0, 0, 1, 0)
    # A snapshot accounts for everything up to its id.
    assert _check_deliveries(client_with(Snapshot("3", {}), event(4)), 5) == (1, 0, 0, 1)
    assert _check_deliveries(client_with(event(1), event(2), event(2)), 2) == (0, 1, 0, 0)


def frame(payload: bytes, opcode: int = 1) -> bytes:
    if len(payload) < 126:
        header = bytes([0x80 | opcode, len(payload)])
    elif len(payload) < 2**16:
        header = bytes([0x80 | opcode, 126]) + len(payload).to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 127]) + len(payload).to_bytes(8, "big")
    return header + payload


def test_the_frame_tap_reads_event_ids_across_chunks() -> None:
    seen: list[int] = []
    tap = FrameTap(seen)
    stream = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        + frame(b'{"type": "event", "id": "7", "data": 1}')
        + frame(b'{"type": "ready", "id": "7", "lost": false}')
        + frame(b'{"type": "event", "id": "8", "data": "' + b"x" * 300 + b'"}')
        + frame(b'{"type": "event", "id": "9", "data": "' + b"y" * 70_000 + b'"}')
        + frame(b'{"type": "event", "id": "99"}', opcode=2)  # binary: not an event frame
        + frame(b"\x03\xe8", opcode=8)
    )
    for start in range(0, len(stream), 7):
        tap.feed(stream[start : start + 7])
    assert seen == [7, 8, 9]


# -- the command line ------------------------------------------------------------------


def test_herd_command_rolling_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "herd", "--clients", "30", "--capacity", "10", "--nodes", "2", "--deploy", "rolling",
        "--strategy", "server-spread", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    (line,) = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    for key in ("peak_ratio", "lost", "duplicated", "all_ready_s", "node_peaks", "drains"):
        assert key in data, key
    assert (data["lost"], data["duplicated"], data["nodes"]) == (0, 0, 2)
    assert [d["node"] for d in data["drains"]] == ["node0", "node1"]
    assert data["balancer"] == "round-robin"


def test_herd_command_rolling_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["herd", "--clients", "20", "--capacity", "10", "--nodes", "2", "--deploy", "rolling"]
    argv += ["--strategy", "server-spread", "--balancer", "random"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 nodes at 10/s each, random balancer" in out
    assert "target 0 lost: PASS" in out
    assert "node1" in out


def test_herd_command_rolling_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["herd", "--clients", "5", "--capacity", "10", "--nodes", "3"]) == 2
    assert "several nodes need deploy='rolling'" in capsys.readouterr().err
    assert main(["herd", "--clients", "5", "--capacity", "10", "--deploy", "rolling"]) == 2
    assert "at least 2 nodes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["herd", "--deploy", "canary"])


def test_targets_and_table_of_a_result(rolling: dict[str, RollingResult]) -> None:
    result = rolling["round-robin"]
    checks = check_rolling_targets(result)
    assert checks["0 lost"]
    assert checks["0 duplicated"]
    assert checks["every client ready again"]
    table = format_rolling_table([result])
    assert all(f"\n{name} " in table for name in ("node0", "node1", "node2"))
    assert "lost 0, duplicated 0" in table


def test_plot_rolling(tmp_path: Any, rolling: dict[str, RollingResult]) -> None:
    pytest.importorskip("matplotlib")
    from trio_reconnect._tools._herd_report import plot_rolling

    path = tmp_path / "rolling.png"
    plot_rolling(list(rolling.values()), str(path))
    assert path.read_bytes().startswith(b"\x89PNG")
