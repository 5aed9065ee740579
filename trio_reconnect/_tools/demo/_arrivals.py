"""How evenly clients came back, as both demos count it: the peak arrivals per 100 ms.

The single-node demo counts its clients' returns at the server, when it
accepts each connection (:class:`AcceptTimes`).

Why here (issue 20). The demo once binned each client's return at the end of
its handshake, with the clients and the server in one process, and reported
2.2-2.4 x the plan where the herd simulator (virtual time) showed 1.06 x for
the same policy. Measured step by step on 2 cores, with the clients in a
process of their own:

* the times the clients meant to come back (close received + ``retryAfter``)
  were as flat as the plan: 1.1-1.3 x;
* the times they began to connect bunched wherever the clients' event loop
  stalled (a 100-150 ms pause, then every timer that fell due inside it at
  once);
* the times the server accepted them bunched wherever the server's event
  loop stalled: a full (generation 2) garbage collection of 60-140 ms,
  once per restart, as 300 connections' objects were freed and made again.

So the plan is sound and the server spreads as planned; the clumping is
event-loop lag, made worse by binning at the handshake's end (which adds
every handshake's own latency under load) and by the clients' work sharing
the server's one core. The demo now runs its crowd in a child process
(:mod:`._crowd`), counts each return where a server operator would see it, at
``accept()``, and freezes what the server's process holds before the crowd
connects (:func:`gc.freeze`: its modules and the like), so that a full
collection scans only what was made since. The crowd stands in
for clients on many machines, whose pauses would not line up: it collects its
garbage only when every client is back, between restarts. The server keeps
Python's automatic collection, as a real one would.

Five runs of ``demo --json`` before the change (load average 3-6 on 2 cores,
shared with other work): ``peak_ratio`` 2.2-2.4; counted at ``accept()`` with
the crowd in its own process: 1.6-2.3; with the crowd's collections moved
between restarts: 1.27 and 1.27 (load average 2.8).
"""

from __future__ import annotations

import collections
import gc
import math
from collections.abc import Iterable
from typing import Final

import trio

from ...testing._herd import BIN_SECONDS

__all__ = ["ARRIVAL_BIN", "AcceptTimes", "freeze_heap", "peak_per_bin"]

#: Arrivals are counted in bins of this many seconds: the herd simulator's, so the two compare.
ARRIVAL_BIN: Final = BIN_SECONDS


def peak_per_bin(times: Iterable[float], start: float) -> int:
    """The most of ``times`` in one :data:`ARRIVAL_BIN` counted from ``start`` (earlier: ignored).

    Bins are ``[start + k * ARRIVAL_BIN, start + (k + 1) * ARRIVAL_BIN)``; 0 if none is counted.
    """
    bins = collections.Counter(math.floor((t - start) / ARRIVAL_BIN) for t in times if t >= start)
    return max(bins.values(), default=0)


class AcceptTimes(trio.abc.Listener[trio.abc.Stream]):
    """A listener that notes the time (trio's clock) of each connection it accepts.

    Args:
        listener: The listener to accept from (a TCP listener, say).
    """

    def __init__(self, listener: trio.abc.Listener[trio.abc.Stream]) -> None:
        self.listener = listener
        #: When each connection was accepted, in order.
        self.times: list[float] = []

    async def accept(self) -> trio.abc.Stream:
        stream = await self.listener.accept()
        self.times.append(trio.current_time())
        return stream

    async def aclose(self) -> None:
        await self.listener.aclose()


def freeze_heap() -> None:
    """Collect everything (the frozen part too), then keep what is left out of later collections.

    Called again, it frees what died since the last call, frozen or not:
    frozen objects are never collected, so a cycle frozen while alive would
    otherwise stay forever.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
