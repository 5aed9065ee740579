"""The herd's channels, the pure part: who subscribes to what, and the count per channel.

With ``--channels K`` the herd has :func:`channel_set_size` channels (at
least :data:`MIN_CHANNEL_SET`), named by :func:`channel_names`, and each
client subscribes to a deterministic random ``K`` of them
(:func:`pick_channels`, seeded by the run's seed and the client's index).

Each subscription of each client is a *run*: where it started (the
channel's position when its ``subscribed`` arrived) and what the
application read from it, in order. :func:`tally_run` checks one run
against its channel's log (the ids the run should have, every id published
after its start):

* ``lost``: an event of the log after the start that the run neither got
  nor was told about (a :class:`~trio_reconnect.Gap` covering it, or a
  :class:`~trio_reconnect.Snapshot` at or after it);
* ``duplicated``: an event the run got again (same id);
* ``out_of_order``: an event older than one the run already got (not a
  duplicate);
* ``unknown``: an event id the channel's log never issued;
* ``gaps`` and ``snapshots``: what the run was told instead of events
  (announced, so not lost; the target of a run is none of them either).

:class:`ChannelTally` adds the runs of one channel; :func:`tally_channels`
counts every channel. Pure: no trio, no IO.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from .._protocol import Gap, Snapshot

__all__ = [
    "MIN_CHANNEL_SET",
    "ChannelRun",
    "ChannelTally",
    "RunTally",
    "channel_names",
    "channel_set_size",
    "pick_channels",
    "tally_channels",
    "tally_run",
]

#: The fewest channels a herd with channels has: ``max(K, 100)`` in all.
MIN_CHANNEL_SET: Final = 100

#: What a run holds, in the order read: an event's id (an int), or a Gap or a Snapshot.
RunItem = int | Gap | Snapshot


def channel_set_size(per_client: int) -> int:
    """How many channels a herd whose clients subscribe to ``per_client`` each has."""
    return max(per_client, MIN_CHANNEL_SET)


def channel_names(size: int) -> list[str]:
    """The names of a herd's ``size`` channels: ``ch0``, ``ch1`` ..."""
    return [f"ch{i}" for i in range(size)]


def pick_channels(names: Sequence[str], per_client: int, seed: int, index: int) -> list[str]:
    """Client ``index``'s ``per_client`` channels: a random sample, the same for the same seed."""
    return random.Random(f"channels-{seed}-{index}").sample(list(names), per_client)


@attrs.define(eq=False, slots=True)
class ChannelRun:
    """One client's subscription to one channel: its start, and what it read."""

    channel: str
    #: The channel's position when the subscription started (``None``: before its first event).
    start: int | None = None
    items: list[RunItem] = attrs.field(factory=list)


@attrs.frozen
class RunTally:
    """The counts of one run (see the module's docstring)."""

    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unknown: int = 0
    gaps: int = 0
    snapshots: int = 0


def _covered(items: Sequence[RunItem]) -> list[tuple[int, int | None]]:
    """The id ranges ``(after, upto]`` a Gap or Snapshot told the run about (``None``: open)."""
    ranges: list[tuple[int, int | None]] = []
    for item in items:
        if isinstance(item, Gap):
            after = int(item.last_id) if item.last_id is not None else -1
            ranges.append((after, None if item.ready_id is None else int(item.ready_id)))
        elif isinstance(item, Snapshot):
            ranges.append((-1, None if item.id is None else int(item.id)))
    return ranges


def _told(seq: int, ranges: Sequence[tuple[int, int | None]]) -> bool:
    return any(after < seq and (upto is None or seq <= upto) for after, upto in ranges)


def tally_run(log: Sequence[int], run: ChannelRun) -> RunTally:
    """Check ``run`` against its channel's ``log`` (every id published, ascending)."""
    issued = set(log)
    seen: set[int] = set()
    newest = -1
    delivered = duplicated = out_of_order = unknown = 0
    for item in run.items:
        if not isinstance(item, int):
            continue
        delivered += 1
        if item not in issued:
            unknown += 1
        elif item in seen:
            duplicated += 1
        elif item < newest:
            out_of_order += 1
        seen.add(item)
        newest = max(newest, item)
    start = -1 if run.start is None else run.start
    ranges = _covered(run.items)
    lost = sum(1 for seq in log if seq > start and seq not in seen and not _told(seq, ranges))
    return RunTally(
        delivered=delivered,
        lost=lost,
        duplicated=duplicated,
        out_of_order=out_of_order,
        unknown=unknown,
        gaps=sum(1 for item in run.items if isinstance(item, Gap)),
        snapshots=sum(1 for item in run.items if isinstance(item, Snapshot)),
    )


@attrs.define
class ChannelTally:
    """One channel's counts: its events, its subscriptions, and their runs' counts added."""

    published: int = 0
    subscribers: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unknown: int = 0
    gaps: int = 0
    snapshots: int = 0

    def add(self, run: RunTally) -> None:
        """Count one more subscription's run."""
        self.subscribers += 1
        for field in attrs.fields(RunTally):
            name = field.name
            setattr(self, name, getattr(self, name) + getattr(run, name))

    def summary(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict."""
        return attrs.asdict(self)


def tally_channels(
    logs: Mapping[str, Sequence[int]], runs: Iterable[ChannelRun]
) -> dict[str, ChannelTally]:
    """Every channel's :class:`ChannelTally` (each channel of ``logs``, in its order)."""
    tallies = {name: ChannelTally(published=len(log)) for name, log in logs.items()}
    for run in runs:
        tally = tallies.setdefault(run.channel, ChannelTally())
        tally.add(tally_run(logs.get(run.channel, ()), run))
    return tallies
