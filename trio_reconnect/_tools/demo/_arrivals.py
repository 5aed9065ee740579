"""How evenly clients came back, as both demos count it: the peak arrivals per 100 ms.

The single-node demo counts its clients' returns where a server operator
would, at the server's ``accept()`` (:class:`AcceptTimes`). Its clients run
in child processes of their own (:mod:`._crowd`), each in a session of its
own, and every process collects its garbage just before a restart and not
while the clients come back (:mod:`._collect`): binned at the end of each
handshake, in one process with the server, the demo once showed 2.2-2.4 x
the plan where the herd simulator (virtual time) showed 1.06 x.

Where the rest comes from (issue 20), traced per client across the processes
on 2 cores at a load average of 3-8 from other work: when each client got
its close frame, started its wait and began connecting (``time.monotonic()``,
one clock for every process); the accept; and every task step of the server
(a :class:`trio.abc.Instrument`).

* The plan itself puts 16-17 returns in its busiest 100 ms (1.07-1.13 x).
* The times the clients meant to come back (the end of the close plus
  ``retryAfter``) already peaked at 17-22, and the starts of their attempts
  as high as the accepts, within one or two.
* The server: its longest steps while clients came back were the
  fan-out's (each event fed to all 300 clients in one step: 2.5-4.6 ms of
  CPU, 10-26 ms of wall time on the busy machine); it now feeds in steps of
  :data:`~trio_reconnect.server._fanout.DEFAULT_FEED_STEP` deliveries.
* Most of the rest: each client counted its ``retryAfter`` from the end of
  its own close, and closing 300 connections takes the server 30-50 ms (each
  close frame is written by its connection's task) and the clients as long
  again, each a little differently: every return moved by its own 20-40 ms,
  which takes the plan's one client per 6.7 ms slot out of its slot. Now the
  server plans return times and writes each ``retryAfter`` when the close
  frame goes out (:class:`~trio_reconnect.server._spread.ReturnAt`), and the
  client counts it from the frame's arrival (:mod:`trio_reconnect._retry`);
  see the figures below. Closing
  the clients in the order of their hints kept the close frames in order,
  but the peak measured worse (1.27-1.80 against 1.20-1.33 in the same
  round; a pause then shifts a run of neighbouring slots, perhaps onto the
  next ones), and it was left out.
* On a busy machine, the processes go without a CPU for 0.1-0.7 s at a
  time, and every return that fell due meanwhile arrives at once.

``peak_ratio`` of ``demo --json`` on 2 cores at a load average of 4-9 from
other work, the two versions run in turn: feeding in one step, 1.07-2.73
(median 1.40 over 20 runs); in steps of 64, 1.27-2.87 (median 1.53 over 15
runs); of three rounds of five runs each, the one-step version had the lower
median in two (1.27 against 1.33, 1.40 against 2.07) and the steps in one
(1.33 against 2.07). At that load the spread between runs is larger than the
difference. On an idle machine (before these steps): 1.20-1.33.

With return times (the close reason written when the frame goes out, the
wait counted from its arrival), 16 runs of each version in turn at a load
average of 0.3-2.5: peaks of 17-20 arrivals (1.13-1.33 x, median 18.5, at
or under 1.3 x in 14 runs) against 17-20 (median 19, at or under 1.3 x in
10) before; but the last four pairs (load 0.3-1) were equal pair by pair
(19, 18, 20, 19), so the difference is within what the runs vary by. The
peak moves in steps of one arrival (1/15 of the plan), so a run says
little on its own.
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
