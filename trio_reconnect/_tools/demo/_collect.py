"""When the demo's processes collect their garbage: never while clients are coming back.

A full (generation 2) collection stops a Python process for 10-70 ms with
300 connections' objects around (more on a loaded machine); in the middle of a
restart's returns that is a visible clump of arrivals (:mod:`._arrivals` has the
measurements). Each process of the demo, the server's and the crowd's, does
the same: just before the demo restarts the server, it collects everything
and turns automatic collection off (:meth:`HeldCollection.hold`); once every
client is back it turns it on again (:meth:`HeldCollection.release`). The
garbage of one round of reconnects waits a few seconds, and the collections
run when nothing is arriving. A real server can do the same around its own
restarts or deploys; Python's automatic collection is otherwise untouched.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

import attrs

__all__ = ["HeldCollection", "everyone_back"]


def everyone_back(before: Sequence[int], now: Sequence[int], ready: Sequence[bool]) -> bool:
    """Whether every client came back since a restart.

    Args:
        before: Each client's reconnects when the collection was held.
        now: Each client's reconnects now.
        ready: Whether each client is connected and caught up now.

    Raises:
        ValueError: if the three are not one entry per client.
    """
    if not len(before) == len(now) == len(ready):
        raise ValueError(f"one entry per client: {len(before)}, {len(now)}, {len(ready)}")
    return all(r and n > b for b, n, r in zip(before, now, ready, strict=True))


@attrs.define(eq=False)
class HeldCollection:
    """One process's garbage collection, held while clients come back."""

    #: Whether automatic collection is off (between :meth:`hold` and :meth:`release`).
    held: bool = False
    #: How many times :meth:`hold` collected.
    collections: int = 0

    def hold(self) -> None:
        """Collect everything now, then keep automatic collection off."""
        gc.collect()
        gc.disable()
        self.held = True
        self.collections += 1

    def release(self) -> None:
        """Turn automatic collection on again (if :meth:`hold` turned it off)."""
        if self.held:
            gc.enable()
            self.held = False
