"""What a resume handshake answers: replay, snapshot or lost. Pure.

No trio, no log calls: the driver (:mod:`trio_reconnect.server._resume`)
reads the log and hands the answers in. Ids are the consecutive integers of
:mod:`trio_reconnect.server._logbase`, so every comparison below is on
:func:`~trio_reconnect.server._logbase.parse_event_id` values.

The rules (PROTOCOL.md section 2, and docs/reference/protocol.md):

* A client with a ``lastEventId`` (or any client when the application has no
  snapshot) is replayed to when every event after it is held and there are
  at most ``max_replay`` of them. ``ready`` then names the newest id of that
  read, ``N``.
* Otherwise a snapshot is taken, if the application has one; else ``ready``
  says ``lost: true`` with ``id = N``.
* A snapshot states the id ``S`` it includes. If ``S`` is at or past ``N``,
  the snapshot covers everything up to ``S`` (once the log is known to have
  issued ``S``). If ``S`` is older than ``N``, the events after ``S`` up to
  ``N`` are sent from the log after the snapshot frame (if they are held and
  at most ``max_replay``). A snapshot the log cannot place is not sent:
  ``lost`` means neither a replay nor a snapshot.
* ``covered`` is the id through which the handshake gave the client every
  event. The client's live queue drops every event at or below it, for as
  long as the connection lives (see the ordering essay in ``_resume``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from .._protocol import HandshakeOutcome
from ._logbase import LoggedEvent, LogRead, parse_event_id

__all__ = [
    "ResumeAction",
    "ResumePlan",
    "SnapshotFit",
    "SnapshotPlan",
    "plan_fill",
    "plan_resume",
    "plan_snapshot",
    "read_limit",
    "snapshot_issued",
]


class ResumeAction(enum.Enum):
    """What the handshake does after its first log read."""

    #: Send ``events`` (maybe none), then ``ready``.
    REPLAY = "replay"
    #: Take the application's snapshot, then :func:`plan_snapshot`.
    SNAPSHOT = "snapshot"
    #: Send ``ready`` with ``lost: true``.
    LOST = "lost"


@attrs.frozen
class ResumePlan:
    """The answer to a resume frame, given one read of the log.

    Attributes:
        action: Replay, snapshot or lost.
        outcome: The handshake's outcome for :attr:`ResumeAction.REPLAY` and
            :attr:`ResumeAction.LOST` (``None`` until the snapshot is placed).
        events: The events to replay (empty unless replaying).
        ready_id: The id ``ready`` names (the read's newest).
        covered: The sequence number through which the client has every
            event once ``ready`` is sent (``None``: nothing yet).
    """

    action: ResumeAction
    outcome: HandshakeOutcome | None
    events: Sequence[LoggedEvent]
    ready_id: str | None
    covered: int | None


def _seq(event_id: str | None) -> int | None:
    return None if event_id is None else parse_event_id(event_id)


def read_limit(
    last_event_id: str | None, *, max_replay: int, has_snapshot: bool, replay_to_fresh: bool = True
) -> int:
    """The ``limit`` of the handshake's log read.

    A fresh client (no ``lastEventId``) of an application with a snapshot
    gets the snapshot, and one of a server with ``replay_to_fresh=False``
    starts at the newest event: either way the read only needs the log's
    newest id.
    """
    fresh_reads_nothing = has_snapshot or not replay_to_fresh
    return 0 if last_event_id is None and fresh_reads_nothing else max_replay


def plan_resume(
    last_event_id: str | None, read: LogRead, *, has_snapshot: bool, replay_to_fresh: bool = True
) -> ResumePlan:
    """Decide on a handshake from its log read (taken with :func:`read_limit`).

    A fresh client of a server with ``replay_to_fresh=False`` and no
    snapshot starts at the newest event: ``ready`` with its id, nothing lost.
    """
    newest = read.newest
    covered = _seq(newest)
    if last_event_id is None and not has_snapshot and not replay_to_fresh:
        return ResumePlan(ResumeAction.REPLAY, HandshakeOutcome.FRESH, (), newest, covered)
    replayable = last_event_id is not None or not has_snapshot
    if replayable and read.events is not None:
        fresh = last_event_id is None and not read.events
        outcome = HandshakeOutcome.FRESH if fresh else HandshakeOutcome.REPLAYED
        return ResumePlan(ResumeAction.REPLAY, outcome, read.events, newest, covered)
    if has_snapshot:
        return ResumePlan(ResumeAction.SNAPSHOT, None, (), newest, covered)
    return ResumePlan(ResumeAction.LOST, HandshakeOutcome.LOST, (), newest, covered)


class SnapshotFit(enum.Enum):
    """How a snapshot taken at ``S`` fits the log read at ``N``."""

    #: ``S == N`` (or both ``None``): send it, nothing else.
    EXACT = "exact"
    #: ``S`` is past ``N``: send it if the log has issued ``S`` (ask its newest).
    AHEAD = "ahead"
    #: ``S`` is older than ``N``: send it, then the events after ``S`` up to ``N``.
    BEHIND = "behind"
    #: ``S`` is not an id of this log: send nothing, ``lost: true``.
    UNKNOWN = "unknown"


@attrs.frozen
class SnapshotPlan:
    """Where a snapshot stands against the handshake's read.

    Attributes:
        fit: See :class:`SnapshotFit`.
        covered: The sequence number through which the client has every
            event once the snapshot (and the fill) is sent.
    """

    fit: SnapshotFit
    covered: int | None


def plan_snapshot(snapshot_id: str | None, newest: str | None) -> SnapshotPlan:
    """Place a snapshot taken at ``snapshot_id`` against the read's ``newest``."""
    n = _seq(newest)
    if snapshot_id is None:
        if n is None:
            return SnapshotPlan(SnapshotFit.EXACT, None)
        return SnapshotPlan(SnapshotFit.BEHIND, n)
    s = parse_event_id(snapshot_id)
    if s is None:
        return SnapshotPlan(SnapshotFit.UNKNOWN, n)
    if n is None or s > n:
        return SnapshotPlan(SnapshotFit.AHEAD, s)
    if s == n:
        return SnapshotPlan(SnapshotFit.EXACT, n)
    return SnapshotPlan(SnapshotFit.BEHIND, n)


def snapshot_issued(snapshot_id: str, newest_now: str | None) -> bool:
    """For :attr:`SnapshotFit.AHEAD`: whether the log has issued ``snapshot_id`` by now."""
    s, now = parse_event_id(snapshot_id), _seq(newest_now)
    return s is not None and now is not None and s <= now


def plan_fill(fill: LogRead, through: int) -> list[LoggedEvent] | None:
    """For :attr:`SnapshotFit.BEHIND`: the events to send after the snapshot, or ``None`` (lost).

    Args:
        fill: The log read after the snapshot's id (with ``max_replay`` as limit).
        through: The handshake's ``covered`` (the first read's newest).
    """
    if fill.events is None:
        return None
    kept: list[LoggedEvent] = []
    for event in fill.events:
        seq = parse_event_id(event.id)
        if seq is None or seq > through:
            break
        kept.append(event)
    return kept
