"""Prometheus metrics for clients and servers (the ``prometheus`` extra).

Needs prometheus-client (``pip install 'trio-reconnect[prometheus]'``); the
rest of trio_reconnect never imports this package, so the dependency stays
optional. Two collectors turn the statistics snapshots into metrics, and
:func:`serve_metrics` serves a registry on ``/metrics`` from a trio task::

    collector = ReconnectCollector()
    prometheus_client.REGISTRY.register(collector)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_metrics, 9100)
        async with open_reconnecting_websocket(url) as ws:
            collector.add("feed", ws)
            ...

``python -m trio_reconnect serve --metrics-port N`` does the same for its
server. The metric names and an alert rule are in docs/howto/prometheus.md.
"""

from __future__ import annotations

from ._collectors import DEFAULT_BUCKETS as DEFAULT_BUCKETS
from ._collectors import DEFAULT_NAMESPACE as DEFAULT_NAMESPACE
from ._collectors import ReconnectCollector as ReconnectCollector
from ._collectors import ServerCollector as ServerCollector
from ._collectors import StatisticsSource as StatisticsSource
from ._http import DEFAULT_HOST as DEFAULT_HOST
from ._http import MAX_REQUEST_HEAD as MAX_REQUEST_HEAD
from ._http import METRICS_PATH as METRICS_PATH
from ._http import REQUEST_TIMEOUT as REQUEST_TIMEOUT
from ._http import serve_metrics as serve_metrics

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_HOST",
    "DEFAULT_NAMESPACE",
    "MAX_REQUEST_HEAD",
    "METRICS_PATH",
    "REQUEST_TIMEOUT",
    "ReconnectCollector",
    "ServerCollector",
    "StatisticsSource",
    "serve_metrics",
]
