"""The node's counters (trio_reconnect/server/_stats.py): typed fields, one snapshot."""

from __future__ import annotations

import attrs
import pytest

from trio_reconnect._protocol import HandshakeOutcome
from trio_reconnect._wire import RefusedCode
from trio_reconnect.server import ServerStatistics
from trio_reconnect.server._stats import Counts


def test_a_misspelled_counter_raises_instead_of_counting_nothing() -> None:
    counts = Counts()
    with pytest.raises(AttributeError):
        counts.refsued += 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        counts.slow_client = 1  # type: ignore[attr-defined]


def test_every_counter_is_a_statistic_and_every_statistic_is_counted() -> None:
    counters = {field.name for field in attrs.fields(Counts)}
    statistics = {field.name for field in attrs.fields(ServerStatistics)}
    assert statistics - counters == {"clients", "ready_clients"}
    assert counters <= statistics


def test_the_snapshot_copies_each_counter_to_its_field() -> None:
    counts = Counts()
    for number, field in enumerate(attrs.fields(Counts), start=1):
        setattr(counts, field.name, number)
    snapshot = counts.snapshot(clients=100, ready_clients=99)
    assert (snapshot.clients, snapshot.ready_clients) == (100, 99)
    for number, field in enumerate(attrs.fields(Counts), start=1):
        assert getattr(snapshot, field.name) == number, field.name
    counts.refused += 1
    assert snapshot.refused != counts.refused  # a frozen copy


@pytest.mark.parametrize(
    ("outcome", "field"),
    [
        (HandshakeOutcome.FRESH, "fresh"),
        (HandshakeOutcome.REPLAYED, "replayed"),
        (HandshakeOutcome.SNAPSHOT, "snapshots"),
        (HandshakeOutcome.LOST, "lost"),
    ],
)
def test_each_handshake_outcome_has_its_counter(outcome: HandshakeOutcome, field: str) -> None:
    counts = Counts()
    counts.resumed(outcome, 7)
    assert getattr(counts, field) == 1
    assert counts.events_replayed == 7
    others = [f.name for f in attrs.fields(Counts) if f.name not in (field, "events_replayed")]
    assert all(getattr(counts, name) == 0 for name in others)


@pytest.mark.parametrize(
    ("code", "field"),
    [
        (RefusedCode.FORBIDDEN, "channel_refused_forbidden"),
        (RefusedCode.INVALID, "channel_refused_invalid"),
        (RefusedCode.LIMIT, "channel_refused_limit"),
        (RefusedCode.UNAVAILABLE, "channel_refused_unavailable"),
    ],
)
def test_each_refusal_code_has_its_counter(code: RefusedCode, field: str) -> None:
    counts = Counts()
    counts.channel_refused(code)
    assert getattr(counts, field) == 1
    assert all(getattr(counts, f.name) == 0 for f in attrs.fields(Counts) if f.name != field)


def test_a_server_never_refuses_with_the_clients_own_code() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        Counts().channel_refused(RefusedCode.UNSUPPORTED)
