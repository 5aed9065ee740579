"""How evenly clients came back, as both demos count it: the peak arrivals per 100 ms. Pure."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable
from typing import Final

__all__ = ["ARRIVAL_BIN", "peak_per_bin"]

#: Arrivals are counted in bins of this many seconds.
ARRIVAL_BIN: Final = 0.1


def peak_per_bin(times: Iterable[float], start: float) -> int:
    """The most of ``times`` in one :data:`ARRIVAL_BIN` counted from ``start`` (earlier: ignored).

    Bins are ``[start + k * ARRIVAL_BIN, start + (k + 1) * ARRIVAL_BIN)``; 0 if none is counted.
    """
    bins = collections.Counter(math.floor((t - start) / ARRIVAL_BIN) for t in times if t >= start)
    return max(bins.values(), default=0)
