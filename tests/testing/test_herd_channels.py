"""The herd with channels (``herd --channels K``): the picks, the per-channel tally, real runs.

The tally is checked on crafted runs (a lost, a doubled, a reordered event,
what a Gap or a Snapshot announces); a real run must come out clean; and a
run against a store that loses an event of each replay must report it lost.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from trio_reconnect import Gap, Snapshot
from trio_reconnect._tools._cli import main
from trio_reconnect._tools._herd_report import channels_intact, format_table
from trio_reconnect.server import MemoryChannelStore
from trio_reconnect.server._channelbase import ChannelRead, ChannelRequest
from trio_reconnect.testing._herd import HerdConfig, run_herd
from trio_reconnect.testing._herd_tally import (
    MIN_CHANNEL_SET,
    ChannelRun,
    RunItem,
    RunTally,
    channel_names,
    channel_set_size,
    pick_channels,
    tally_channels,
    tally_run,
)

SMALL: dict[str, Any] = {"clients": 60, "capacity": 20.0, "strategy": "server-spread"}

# -- who subscribes to what -----------------------------------------------------------


def test_the_channel_set_has_at_least_100_channels() -> None:
    assert channel_set_size(1) == channel_set_size(10) == MIN_CHANNEL_SET == 100
    assert channel_set_size(250) == 250
    assert channel_names(3) == ["ch0", "ch1", "ch2"]


def test_each_client_picks_k_distinct_channels_the_same_for_the_same_seed() -> None:
    names = channel_names(100)
    picks = [pick_channels(names, 10, seed=0, index=i) for i in range(50)]
    assert all(len(set(p)) == 10 and set(p) <= set(names) for p in picks)
    assert picks == [pick_channels(names, 10, seed=0, index=i) for i in range(50)]
    assert len({tuple(p) for p in picks}) == 50  # clients differ
    assert pick_channels(names, 10, seed=1, index=0) != picks[0]  # so do seeds
    assert sorted(pick_channels(names, 100, seed=0, index=0)) == sorted(names)


# -- the tally of one run ---------------------------------------------------------------

LOG = [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("start", "items", "expected"),
    [
        (0, [1, 2, 3, 4, 5], RunTally(delivered=5)),
        (0, [1, 2, 4, 5], RunTally(delivered=4, lost=1)),
        (0, [1, 2, 2, 3, 4, 5], RunTally(delivered=6, duplicated=1)),
        (0, [1, 3, 2, 4, 5], RunTally(delivered=5, out_of_order=1)),
        (0, [1, 2, 3, 4, 5, 9], RunTally(delivered=6, unknown=1)),
        (0, [], RunTally(lost=5)),
        # What the run started after is not owed to it.
        (3, [4, 5], RunTally(delivered=2)),
        (None, [2, 3, 4, 5], RunTally(delivered=4, lost=1)),
        # A Gap announces its range (an open one: everything after last_id) ...
        (0, [1, Gap("1", "3"), 4, 5], RunTally(delivered=3, gaps=1)),
        (0, [1, Gap("1", "2"), 4, 5], RunTally(delivered=3, lost=1, gaps=1)),
        (0, [1, 2, Gap("2", None)], RunTally(delivered=2, gaps=1)),
        (0, [Gap(None, "2"), 3, 4, 5], RunTally(delivered=3, gaps=1)),
        # ... and a Snapshot everything up to its id.
        (0, [Snapshot("4", {}), 5], RunTally(delivered=1, snapshots=1)),
        (0, [Snapshot("3", {}), 5], RunTally(delivered=1, lost=1, snapshots=1)),
    ],
)
def test_tally_run(start: int | None, items: Sequence[RunItem], expected: RunTally) -> None:
    assert tally_run(LOG, ChannelRun("ch0", start, list(items))) == expected


def test_tally_channels_adds_the_runs_of_each_channel() -> None:
    logs = {"a": [1, 2, 3], "b": [1, 2], "c": [1]}
    runs = [
        ChannelRun("a", 0, [1, 2, 3]),
        ChannelRun("a", 0, [1, 3, 3]),  # lost 2, got 3 twice
        ChannelRun("b", 1, [2]),
    ]
    tallies = {name: t.summary() for name, t in tally_channels(logs, runs).items()}
    assert tallies["a"] == {
        "published": 3,
        "subscribers": 2,
        "delivered": 6,
        "lost": 1,
        "duplicated": 1,
        "out_of_order": 0,
        "unknown": 0,
        "gaps": 0,
        "snapshots": 0,
    }
    assert (tallies["b"]["subscribers"], tallies["b"]["delivered"], tallies["b"]["lost"]) == (
        1,
        1,
        0,
    )
    assert (tallies["c"]["published"], tallies["c"]["subscribers"]) == (1, 0)


# -- real runs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean() -> Any:
    return run_herd(HerdConfig(**SMALL, channels=3))


def test_a_run_with_channels_loses_and_doubles_nothing(clean: Any) -> None:
    assert (clean.lost, clean.duplicated, clean.out_of_order) == (0, 0, 0)
    assert (clean.gaps, clean.snapshots) == (0, 0)
    assert clean.not_ready == 0
    assert channels_intact(clean)
    per_channel = clean.per_channel
    assert list(per_channel) == channel_names(100)
    assert sum(c["subscribers"] for c in per_channel.values()) == 60 * 3
    assert sum(c["published"] for c in per_channel.values()) == clean.events_published
    # Every subscription got every event of its channel (all subscribed before the first).
    for counts in per_channel.values():
        assert counts["published"] >= 5
        assert counts["delivered"] == counts["published"] * counts["subscribers"]


def test_the_table_and_the_json_show_the_channels(clean: Any) -> None:
    table = format_table([clean])
    assert "channels: 3 of 100 per client" in table
    assert "lost 0, duplicated 0" in table
    assert "server-spread target channels: lost 0, duplicated 0, out of order 0: PASS" in table
    summary = clean.summary()
    assert summary["channels"] == 3
    assert summary["channel_set"] == 100
    assert summary["per_channel"]["ch0"]["lost"] == 0
    json.dumps(summary)
    plain = run_herd(HerdConfig(clients=10, capacity=10.0, strategy="server-spread")).summary()
    assert plain["channels"] == 0
    assert "lost" not in plain
    assert "per_channel" not in plain


class LosingStore(MemoryChannelStore):
    """Loses the first event of every replay after a known id (a resume's)."""

    def _answer(self, request: ChannelRequest, max_replay: int) -> ChannelRead:
        read = super()._answer(request, max_replay)
        if request.after is not None and read.events:
            return ChannelRead(read.channel, read.newest, read.events[1:])
        return read


def test_a_store_that_loses_an_event_of_each_replay_is_caught() -> None:
    # The restart leaves each subscription behind by the events published
    # while its client was away; this store drops the first of them.
    result = run_herd(HerdConfig(**SMALL, channels=3), channel_store=LosingStore(start=1))
    assert result.lost is not None
    assert result.lost > 0
    assert result.duplicated == 0
    assert not channels_intact(result)
    assert "PASS" not in [
        line.rsplit(" ", 1)[1]
        for line in format_table([result]).splitlines()
        if "target channels" in line
    ]


# -- the command line -----------------------------------------------------------------


def test_herd_command_with_channels(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["herd", "--clients", "20", "--capacity", "10", "--strategy", "server-spread"]
    assert main([*argv, "--channels", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["channels"], data["channel_set"], data["lost"], data["duplicated"]) == (
        2,
        100,
        0,
        0,
    )
    assert len(data["per_channel"]) == 100


def test_herd_command_channel_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["herd", "--channels", "-1"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "herd: --channels must be a non-negative integer, got -1\n"
    argv = ["herd", "--clients", "5", "--capacity", "5", "--nodes", "2", "--deploy", "rolling"]
    assert main([*argv, "--channels", "2"]) == 2
    assert capsys.readouterr().err == (
        "herd: channels run with deploy='restart' (--deploy restart) for now\n"
    )
