"""The herd simulator and the strategies it compares (small herds; the 10,000-client
figures are a benchmark: ``python -m trio_reconnect herd``, docs/explanation/herd.md)."""

from __future__ import annotations

import builtins
import itertools
import json
import random
import re
from typing import Any

import attrs
import pytest

from trio_reconnect._tools._cli import main
from trio_reconnect._tools._herd_report import check_targets, format_table
from trio_reconnect.testing import (
    STRATEGIES,
    HerdConfig,
    HerdResult,
    NoBackoff,
    SocketIOBackoff,
    WebsocketsBackoff,
    run_herd,
    strategy_options,
)

SMALL: dict[str, Any] = {"clients": 60, "capacity": 20.0}


class FixedRandom(random.Random):
    """``random()`` always returns ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# -- the strategies' schedules ------------------------------------------------------


def test_naive_never_waits() -> None:
    rng = random.Random(1)
    assert [NoBackoff().delay(n, rng) for n in range(1, 6)] == [0.0] * 5


def test_websockets_schedule() -> None:
    policy = WebsocketsBackoff()
    rng = FixedRandom(0.5)
    delays = [policy.delay(n, rng) for n in range(1, 8)]
    # at once after a drop; then U(0, 5); then 3.1 x 1.618 ** k
    assert delays == pytest.approx([0.0, 2.5, 3.1, 5.0158, 8.1156, 13.1310, 21.2459], abs=1e-3)
    assert policy.delay(40, rng) == 90.0
    assert policy.delay(10**6, rng) == 90.0  # no overflow
    assert WebsocketsBackoff(reconnect_at_once=False).delay(1, rng) == 2.5


def test_websockets_schedule_matches_the_library() -> None:
    websockets_client = pytest.importorskip("websockets.client")
    random.seed(42)
    theirs = list(itertools.islice(websockets_client.backoff(), 20))
    ours = [WebsocketsBackoff().delay(n, random.Random(42)) for n in range(2, 22)]
    assert ours == pytest.approx(theirs)


@pytest.mark.parametrize(
    ("rand", "retry", "expected"),
    [
        (0.3, 1, 1.15),  # floor(3) odd: +floor(0.3 * 0.5 * 1000) ms
        (0.45, 1, 0.775),  # floor(4.5) even: -225 ms
        (0.0, 3, 4.0),
        (0.3, 3, 4.6),
        (0.99, 4, 5.0),  # 8000 - 3960 = 4040? floor(9.9)=9 odd: +3960, capped at 5 s
        (0.2, 4, 5.0),  # 8000 - 800 = 7200, capped: randomisation is applied before the cap
        (0.5, 60, 5.0),
        (0.5, 5000, 5.0),  # no overflow
    ],
)
def test_socketio_schedule(rand: float, retry: int, expected: float) -> None:
    assert SocketIOBackoff().delay(retry, FixedRandom(rand)) == pytest.approx(expected)


def test_strategy_options_are_copies_and_names_are_checked() -> None:
    options = strategy_options("naive")
    options["backoff"] = None
    assert STRATEGIES["naive"]["backoff"] == NoBackoff()
    assert strategy_options("server-spread")["server_hints"] is True
    assert all(
        not strategy_options(name)["server_hints"] for name in STRATEGIES if name != "server-spread"
    )
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        strategy_options("nope")


# -- the simulation ---------------------------------------------------------------


@pytest.fixture(scope="module")
def herd() -> dict[str, HerdResult]:
    return {
        name: run_herd(HerdConfig(SMALL["clients"], SMALL["capacity"], name)) for name in STRATEGIES
    }


def test_server_spread_meets_its_targets_on_a_small_herd(herd: dict[str, HerdResult]) -> None:
    result = herd["server-spread"]
    assert result.not_ready == 0
    assert result.refused_handshakes == 0
    assert result.attempts == SMALL["clients"]  # one attempt each: every hint was right
    assert result.all_ready_s is not None
    assert result.all_ready_s <= 1.1 * result.ideal_all_ready_s + 1
    # 3 s window, stratified: no 100 ms bin gets more than 2 + 1 straddling the edge
    assert result.peak_per_100ms <= 3
    assert all(check_targets(result).values()) or result.peak_ratio > 1.15


def test_the_peer_strategies_herd(herd: dict[str, HerdResult]) -> None:
    n = SMALL["clients"]
    for name in ("naive", "websockets"):
        # both come back at once after a drop: every client in the first bins
        result = herd[name]
        assert result.peak_per_100ms >= n / 2, name
        assert result.refused_handshakes > 0, name
        assert result.attempts > n, name
    assert herd["naive"].attempts > herd["client-full-jitter"].attempts
    for name, result in herd.items():
        assert result.not_ready == 0, name
        assert result.attempts == n + result.refused_handshakes, name
        assert len(result.arrivals) >= 1
        assert sum(result.arrivals) == result.attempts


def test_a_run_is_reproducible_from_its_seed() -> None:
    config = HerdConfig(clients=30, capacity=10.0, strategy="client-full-jitter", seed=7)
    first, second = run_herd(config), run_herd(config)
    assert first.arrivals == second.arrivals
    assert first.median_reconnect_s == second.median_reconnect_s
    other = run_herd(HerdConfig(clients=30, capacity=10.0, strategy="client-full-jitter", seed=8))
    assert other.arrivals != first.arrivals


def test_stragglers_past_the_horizon_are_reported() -> None:
    # websockets' backoff reaches 90 s; a 2 s horizon cannot see everyone back
    result = run_herd(HerdConfig(clients=60, capacity=5.0, strategy="websockets", horizon=2.0))
    assert result.not_ready > 0
    assert result.all_ready_s is None
    assert "not ready within the horizon" in format_table([result])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clients": 0}, "clients"),
        ({"clients": True}, "clients"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": float("inf")}, "capacity"),
        ({"strategy": "fast"}, "unknown strategy"),
        ({"latency": -0.1}, "latency"),
        ({"accept_rate": 0}, "accept_rate"),
        ({"horizon": float("nan")}, "horizon"),
    ],
)
def test_bad_configs(kwargs: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"clients": 10, "capacity": 5.0}
    options.update(kwargs)
    with pytest.raises(ValueError, match=message):
        HerdConfig(**options)


# -- the command line ---------------------------------------------------------------


def test_herd_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["herd", "--clients", "20", "--capacity", "10", "--strategy", "server-spread", "--json"]
    assert main(argv) == 0
    (line,) = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    for key in (
        "strategy", "clients", "capacity", "peak_per_100ms", "ideal_per_100ms", "peak_ratio",
        "all_ready_s", "ideal_all_ready_s", "refused_handshakes", "attempts",
        "median_reconnect_s", "p95_reconnect_s", "wall_s", "rss_mb",
    ):  # fmt: skip
        assert key in data, key
    assert data["strategy"] == "server-spread"
    assert data["ideal_all_ready_s"] == 2.0


def test_herd_command_all_strategies_in_processes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["herd", "--clients", "10", "--capacity", "10", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    for name in STRATEGIES:
        assert f"\n{name} " in out
    assert "server-spread target peak_ratio" in out


def test_herd_command_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for argv, line in [
        (["--clients", "0"], "herd: --clients must be a positive integer, got 0"),
        (["--clients", "5", "--jobs", "0"], "herd: --jobs must be a positive integer, got 0"),
        (["--latency", "-1"], "herd: --latency must be a non-negative finite number, got -1"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(["herd", "--capacity", "10", *argv])
        assert info.value.code == 2
        assert capsys.readouterr().err == line + "\n"
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["herd", "--clients", "5", "--capacity", "10", "--plot", "x.png"]) == 2
    assert "pip install 'trio-reconnect[plot]'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["herd", "--strategy", "fastest"])


def test_plot(tmp_path: Any, herd: dict[str, HerdResult]) -> None:
    pytest.importorskip("matplotlib")
    from trio_reconnect._tools._herd_report import plot

    path = tmp_path / "herd.png"
    plot(list(herd.values()), str(path))
    assert path.read_bytes().startswith(b"\x89PNG")


def test_table_explains_its_columns(herd: dict[str, HerdResult]) -> None:
    table = format_table(list(herd.values()))
    for name in ("peak/100ms", "ratio", "all ready", "N/R", "refused", "attempts", "KiB/cl"):
        assert re.search(rf"^{re.escape(name)} +\w", table, re.MULTILINE), name
    assert "ratio        peak/100ms over the server's capacity per 100 ms" in table


def test_table_says_what_a_sooner_all_ready_costs(herd: dict[str, HerdResult]) -> None:
    ours = herd["server-spread"]
    assert ours.all_ready_s is not None
    naive = attrs.evolve(
        herd["naive"], all_ready_s=ours.all_ready_s - 1, attempts=85_312, refused_handshakes=75_312
    )
    later = attrs.evolve(herd["websockets"], all_ready_s=ours.all_ready_s + 1)
    table = format_table([ours, naive, later])
    assert (
        f"naive is all ready sooner than server-spread ({naive.all_ready_s:.1f} s against"
        f" {ours.all_ready_s:.1f} s), bought with 85,312 connection attempts (75,312 of them"
        f" refused with 503), {85_312 / ours.attempts:.1f} x the {ours.attempts:,} of"
        " server-spread." in table
    )
    assert "websockets is all ready sooner" not in table
    assert "sooner" not in format_table([naive])  # nothing to compare with


def test_plot_has_one_kind_of_axis_and_a_worded_legend_on_every_panel(
    herd: dict[str, HerdResult],
) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trio_reconnect._tools._herd_report import ARRIVALS_LABEL, CAPACITY_LABEL, _figure

    figure = _figure(plt, list(herd.values()))
    try:
        axes = figure.get_axes()
        assert len(axes) == len(herd)
        for ax in axes:
            assert ax.get_yscale() == "log"
            assert "log scale" in ax.get_ylabel()
            legend = ax.get_legend()
            assert legend is not None
            texts = [t.get_text() for t in legend.get_texts()]
            assert texts[0] == ARRIVALS_LABEL
            assert texts[1].startswith(CAPACITY_LABEL)
        assert len({ax.get_ylim() for ax in axes}) == 1  # the same range on every panel
    finally:
        plt.close(figure)
