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
the server's one core. The demo runs its crowd in child processes
(:mod:`._crowd`) and counts each return where a server operator would see
it, at ``accept()``.

The second round (this layout) traced each restart in both processes: a
:class:`trio.abc.Instrument` logging every task step and every run batch over
10 ms and every late wake-up from the I/O wait, :data:`gc.callbacks` timing
every collection, and, for each accepted connection, the kernel's time of the
last packet received (``TCP_INFO``'s ``tcpi_last_ack_recv``: the client's
HTTP request), which separates the clients' lag from the server's. What was
left:

* the server: one full collection per restart *inside* the returns, 10 ms on
  an idle machine, 60-70 ms at load average 4 (18,000 objects of the dropped
  connections each time);
* the crowd: its own full collection (once every client was back) took
  80-350 ms, and when the returns of one restart ran late it fell inside the
  next one's;
* under load, most of the rest was the crowd: its clients' requests reached
  the server bunched (the kernel's times bunched as much as the accepts),
  after 50-100 ms in which the crowd process got no CPU or worked through a
  batch of 300 clients' events;
* the server's fan-out of one event to every client is one synchronous task
  step (10-25 ms idle; 400-650 ms seen at load average 10) during which no
  connection is accepted. It is left as it is (the server's code, outside
  the demo): the module comment of ``trio_reconnect.server._fanout`` says
  why its feeding is one step.

The fixes: both processes collect their garbage just before each restart and
hold automatic collection until every client is back (:mod:`._collect`); the
crowd is split into child processes of at most
:data:`~._crowd.CLIENTS_PER_PROCESS` clients, so that one process's pause
holds back only its own clients, as with clients on many machines; and each
child runs in a session of its own, so that where Linux shares the CPUs out by
session (autogroup, on here) the crowd does not eat into the server's share.

``peak_ratio`` of ``demo --json`` on 2 cores shared with other work (load
average: the 1-minute figure before each run). Before (one crowd process,
automatic collection): 1.13, 1.20, 1.13, 1.13 at load 0.1-0.6; 1.33, 1.67,
1.80, 1.80, 6.13 at 3.4-4.5 (traced runs). Nine rounds at load 5.8-10, each
running the old demo and this one (100 clients per crowd process, no sessions
of their own) one after the other: old 2.13, 2.07, 2.67, 4.87, 1.93, 3.60,
2.07, 2.53, 1.73 (median 2.13); this one 1.40, 4.40, 1.27, 1.33, 3.40, 1.60,
1.93, 1.53, 2.73 (median 1.60); in six of those rounds this one with a single
crowd process as well: 1.67, 2.53, 3.20, 2.20, 2.07, 1.80. At that load the
spread between runs is larger than the difference. Sixteen runs of that one
alone: 2.67, 1.07, 2.87, 3.47, 1.20, 2.00, 1.87, 1.73 at load 8.5-9.4; 2.80,
2.60, 3.00, 2.00, 1.60, 2.93, 2.47, 1.80 at load 5.9-7.0. None was measured on
an idle machine (the load stayed above 5 while these changes were made); with
the collections held but one crowd process (traced runs): 1.13, 1.93, 1.73,
1.40, 1.67, 1.47, 2.00 at load 2.4-4.6. With a session of its own for each
crowd process: four rounds at load 6.3-7.0 against the same without: 1.40,
1.27, 1.33, 1.27 against 2.00, 1.93, 1.60, 1.87; then eight runs: 1.27, 1.27,
1.20, 1.47, 1.33 at load 3.0-3.4, 2.47, 1.33, 1.53 at load 4.2-6.0. With 50
clients per process instead of 100, three rounds at load 5.3-5.9: 1.40, 1.27,
1.27 against 2.13, 1.20, 2.20; then eight runs (the demo as it is now): 1.87,
1.73, 1.33, 1.60, 1.80, 4.47, 1.33, 1.20 at load 5.1-7.7. Eight more: 1.67,
2.00, 1.47, 1.67, 1.27, 1.20, 1.27, 1.27 at load 5.9-7.5.

What is left, as far as the traces show, is the machine: at a load average of
6-10 on 2 cores (with Linux's autogroup on, each login session gets an equal
share of the CPUs, however many processes it runs), the traces show the demo's
processes getting no CPU for 0.1-0.7 s at a time, several of them at once:
task steps that do a few milliseconds of work lasting 0.3-0.7 s, wake-ups from
the I/O wait 0.1-0.35 s late. Every connection that fell due meanwhile is
accepted at once, and a 0.3 s freeze alone is 3 x the plan in one bin.
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
