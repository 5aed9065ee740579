"""The rolling deploy's pure counting steps: deliveries over every client, arrivals per bin."""

from __future__ import annotations

import collections

from trio_reconnect._protocol import ServerEvent
from trio_reconnect.testing._herd_deploy import _arrivals, _Client, _Recorder, _tally


def event(n: int) -> ServerEvent:
    return ServerEvent(str(n), None)


def test_the_tally_adds_every_client() -> None:
    first = _Client(wire=[1, 2, 2, 3], items=[event(1), event(2), event(3)])
    second = _Client(wire=[1, 1, 1], items=[event(1), event(1)])
    # lost: 2 and 3 for the second; wire duplicates: 1 + 2; app duplicates: 1.
    assert _tally([first, second], 3) == (2, 3, 1, 0, 0)


def test_arrivals_fill_every_bin_up_to_the_last() -> None:
    recorder = _Recorder([])
    recorder.arrivals["node0"] = collections.Counter({0: 2, 3: 1})
    assert _arrivals(recorder, 2) == {"node0": (2, 0, 0, 1), "node1": ()}
