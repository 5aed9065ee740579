"""Tools to test reconnect behaviour: an in-memory network with faults, a herd simulator.

Everything here runs real trio-websocket code on both sides over in-memory
streams, on trio's clock, so tests run under ``autojump_clock`` in
milliseconds of wall time.

* :class:`MemoryNetwork`: connects clients (``open_stream=network.client(name)``)
  to servers (``server.serve_listeners([network.listen(...)])``) and injects
  resets, close frames, half-open links, refusals, partitions and latency.
* The pytest fixtures of :mod:`trio_reconnect.testing.pytest_plugin`
  (``memory_network``, ``reconnect_server``, ``connect_client``, and
  ``serve_websocket`` / ``serve_stream`` for a handler of your own),
  registered automatically when trio_reconnect is installed.
* :func:`run_herd` and :data:`STRATEGIES`: N clients through a server restart,
  for ``python -m trio_reconnect herd``.

The pytest plugin imports this package in every test run of every project
that has trio_reconnect installed, so the herd simulator (and everything it
needs) is imported only when one of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._listener import MemoryListener as MemoryListener
from ._network import DEFAULT_WINDOW as DEFAULT_WINDOW
from ._network import Link as Link
from ._network import MemoryNetwork as MemoryNetwork
from ._network import NetworkStatistics as NetworkStatistics
from ._strategies import STRATEGIES as STRATEGIES
from ._strategies import NoBackoff as NoBackoff
from ._strategies import SocketIOBackoff as SocketIOBackoff
from ._strategies import WebsocketsBackoff as WebsocketsBackoff
from ._strategies import strategy_options as strategy_options

if TYPE_CHECKING:
    from ._herd import BIN_SECONDS as BIN_SECONDS
    from ._herd import HerdConfig as HerdConfig
    from ._herd import HerdResult as HerdResult
    from ._herd import run_herd as run_herd

_LAZY = frozenset({"BIN_SECONDS", "HerdConfig", "HerdResult", "run_herd"})

__all__ = [
    "BIN_SECONDS",
    "DEFAULT_WINDOW",
    "STRATEGIES",
    "HerdConfig",
    "HerdResult",
    "Link",
    "MemoryListener",
    "MemoryNetwork",
    "NetworkStatistics",
    "NoBackoff",
    "SocketIOBackoff",
    "WebsocketsBackoff",
    "run_herd",
    "strategy_options",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("._herd", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
