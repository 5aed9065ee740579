"""Prometheus collectors for the client's and the server's statistics. Pure.

A collector reads a frozen statistics snapshot (``ws.statistics()``,
``server.statistics()``) each time it is scraped and turns it into metric
families; it keeps no counts of its own, so what Prometheus sees is exactly
what the snapshot says. Call :meth:`collect` from the thread the clients run
in (the trio thread): :func:`~trio_reconnect.prometheus.serve_metrics` does.

The reconnect durations are those of the statistics' window (the last
:data:`~trio_reconnect._metrics.DEFAULT_WINDOW` reconnects, not the last N
minutes), so their histogram is a *gauge* histogram: its buckets can shrink
when slow reconnects leave the window. Its bucket bounds include the health
thresholds (:data:`~trio_reconnect.HEALTHY_BELOW`,
:data:`~trio_reconnect.REGRESSION_ABOVE`, :data:`~trio_reconnect.INCIDENT_ABOVE`),
so ``histogram_quantile`` is exact at the levels that matter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

import attrs
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from .._metrics import (
    HEALTHY_BELOW,
    INCIDENT_ABOVE,
    REGRESSION_ABOVE,
    HealthLevel,
    ReconnectStatistics,
)
from .._protocol import HandshakeOutcome
from .._wire import RefusedCode

if TYPE_CHECKING:
    from ..server import ServerStatistics

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_NAMESPACE",
    "ReconnectCollector",
    "ServerCollector",
    "StatisticsSource",
]

#: Upper bounds (seconds) of the reconnect-duration histogram's buckets; the
#: three health thresholds are among them.
DEFAULT_BUCKETS: Final[tuple[float, ...]] = tuple(
    sorted({0.05, 0.1, 0.25, 0.5, HEALTHY_BELOW, REGRESSION_ABOVE, 5.0, INCIDENT_ABOVE, 30.0, 60.0})
)
#: The prefix of every metric name.
DEFAULT_NAMESPACE: Final = "trio_reconnect"

#: The :class:`ReconnectStatistics` field counting each handshake outcome.
_OUTCOME_FIELDS: Final = {
    HandshakeOutcome.FRESH: "fresh",
    HandshakeOutcome.REPLAYED: "replayed",
    HandshakeOutcome.SNAPSHOT: "snapshots",
    HandshakeOutcome.LOST: "lost",
}

#: The :class:`ServerStatistics` field counting each ``refused`` code a server sends.
_REFUSAL_FIELDS: Final = {
    RefusedCode.FORBIDDEN: "channel_refused_forbidden",
    RefusedCode.INVALID: "channel_refused_invalid",
    RefusedCode.LIMIT: "channel_refused_limit",
    RefusedCode.UNAVAILABLE: "channel_refused_unavailable",
}
#: The :class:`ServerStatistics` field counting the channel events of each kind of delivery.
_CHANNEL_EVENT_FIELDS: Final = {
    "live": "channel_events_live",
    "replayed": "channel_events_replayed",
}

S_co = TypeVar("S_co", covariant=True)
S = TypeVar("S")


class _HasStatistics(Protocol[S_co]):
    def statistics(self) -> S_co: ...


#: What a collector reads: an object with a ``statistics()`` method (a
#: :class:`~trio_reconnect.ReconnectingWebSocket`, a
#: :class:`~trio_reconnect.server.ReconnectServer`) or a callable returning
#: the snapshot.
StatisticsSource = _HasStatistics[S] | Callable[[], S]


def _float_tuple(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


def _snapshot(source: StatisticsSource[S]) -> S:
    if callable(source):
        return source()
    return source.statistics()


def _check_label(kind: str, name: str, sources: Mapping[str, object]) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {kind} needs a non-empty name, got {name!r}")
    if name in sources:
        raise ValueError(f"a {kind} named {name!r} is already collected")


@attrs.define(eq=False)
class _Collector(Generic[S]):
    """Named statistics sources, each exported with the label ``_label``."""

    namespace: str = attrs.field(default=DEFAULT_NAMESPACE, kw_only=True)
    _sources: dict[str, StatisticsSource[S]] = attrs.field(init=False, factory=dict)

    _label = "name"

    def add(self, name: str, source: StatisticsSource[S]) -> None:
        """Collect ``source``'s statistics under the label ``name``.

        Raises:
            ValueError: ``name`` is empty or already collected.
        """
        _check_label(self._label, name, self._sources)
        self._sources[name] = source

    def remove(self, name: str) -> None:
        """Stop collecting ``name`` (its series disappear from the next scrape).

        Raises:
            KeyError: ``name`` is not collected.
        """
        del self._sources[name]

    def collect(self) -> Iterator[Metric]:
        """The metric families for every source, read now."""
        snapshots = [(name, _snapshot(source)) for name, source in self._sources.items()]
        return self._families(snapshots)

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples (for the registry's name check)."""
        return self._families([])

    def _families(self, snapshots: list[tuple[str, S]]) -> Iterator[Metric]:
        raise NotImplementedError


@attrs.define(eq=False)
class ReconnectCollector(_Collector[ReconnectStatistics]):
    """Exports clients' :class:`~trio_reconnect.ReconnectStatistics` (label ``client``).

    ::

        collector = ReconnectCollector()
        prometheus_client.REGISTRY.register(collector)
        async with open_reconnecting_websocket(url) as ws:
            collector.add("feed", ws)

    Metrics (``trio_reconnect_client_`` ...): ``connects_total``,
    ``reconnects_total``, ``failed_attempts_total``,
    ``server_directed_reconnects_total``, ``handshakes_total{outcome}``,
    ``replayed_events_total``, ``reconnect_median_seconds``,
    ``reconnect_p95_seconds``, ``reconnect_max_seconds`` (absent before the
    first reconnect), the gauge histogram ``reconnect_seconds`` of the window,
    and ``health{level}`` (1 for the current level, 0 for the others).

    Args:
        namespace: The prefix of the metric names.
        buckets: Upper bounds of the histogram's buckets, seconds.
    """

    buckets: tuple[float, ...] = attrs.field(
        default=DEFAULT_BUCKETS, kw_only=True, converter=_float_tuple
    )

    _label = "client"

    @buckets.validator
    def _check_buckets(self, _: object, buckets: tuple[float, ...]) -> None:
        if not buckets or list(buckets) != sorted(set(buckets)) or buckets[0] <= 0:
            raise ValueError(f"buckets must be positive and increasing, got {buckets!r}")

    def _families(self, snapshots: list[tuple[str, ReconnectStatistics]]) -> Iterator[Metric]:
        prefix = f"{self.namespace}_client_"
        labels = [self._label]

        def counter(name: str, doc: str, field: str) -> CounterMetricFamily:
            family = CounterMetricFamily(prefix + name, doc, labels=labels)
            for client, stats in snapshots:
                family.add_metric([client], getattr(stats, field))
            return family

        yield counter("connects", "Connections that reached ready.", "connects")
        yield counter(
            "reconnects", "Connections that reached ready after a lost one.", "reconnects"
        )
        yield counter("failed_attempts", "Connection attempts that failed.", "failed_attempts")
        yield counter(
            "server_directed_reconnects",
            "Reconnects whose wait the server chose (a planned close with a retry hint).",
            "server_directed",
        )
        outcomes = CounterMetricFamily(
            prefix + "handshakes",
            "Resume handshakes, by outcome.",
            labels=[*labels, "outcome"],
        )
        for client, stats in snapshots:
            for outcome, field in _OUTCOME_FIELDS.items():
                outcomes.add_metric([client, outcome.value], getattr(stats, field))
        yield outcomes
        yield counter("replayed_events", "Events received in replays.", "replayed_events")
        for name, doc, field in (
            ("median", "Median reconnect duration over the window.", "median_reconnect"),
            ("p95", "95th percentile reconnect duration over the window.", "p95_reconnect"),
            ("max", "Longest reconnect in the window.", "max_reconnect"),
            (
                "beyond_server_wait_median",
                "Median reconnect less its server-requested wait (what the health reads).",
                "median_beyond_server_wait",
            ),
        ):
            gauge = GaugeMetricFamily(
                f"{prefix}reconnect_{name}_seconds", doc, labels=labels, unit="seconds"
            )
            for client, stats in snapshots:
                value = getattr(stats, field)
                if value is not None:
                    gauge.add_metric([client], value)
            yield gauge
        yield self._histogram(prefix, labels, snapshots)
        yield self._health(prefix, labels, snapshots)

    def _histogram(
        self, prefix: str, labels: list[str], snapshots: list[tuple[str, ReconnectStatistics]]
    ) -> Metric:
        histogram = GaugeHistogramMetricFamily(
            prefix + "reconnect_seconds",
            "Reconnect durations in the window (a gauge histogram: buckets can shrink).",
            labels=labels,
            unit="seconds",
        )
        for client, stats in snapshots:
            durations = stats.recent_reconnects
            histogram.add_metric(
                [client],
                [
                    *((repr(bound), sum(d <= bound for d in durations)) for bound in self.buckets),
                    ("+Inf", len(durations)),
                ],
                sum(durations),
            )
        return histogram

    @staticmethod
    def _health(
        prefix: str, labels: list[str], snapshots: list[tuple[str, ReconnectStatistics]]
    ) -> Metric:
        health = GaugeMetricFamily(
            prefix + "health",
            "The health level read off the median beyond the server's asked waits (1: the level).",
            labels=[*labels, "level"],
        )
        for client, stats in snapshots:
            for level in HealthLevel:
                health.add_metric([client, level.value], float(level is stats.health))
        return health


@attrs.define(eq=False)
class ServerCollector(_Collector["ServerStatistics"]):
    """Exports servers' :class:`~trio_reconnect.server.ServerStatistics` (label ``server``).

    ::

        collector = ServerCollector()
        collector.add("main", server)
        prometheus_client.REGISTRY.register(collector)

    Metrics (``trio_reconnect_server_`` ...): the gauges ``clients`` and
    ``ready_clients``; the counters ``handshakes_total{outcome}``,
    ``refused_total``, ``protocol_errors_total``, ``slow_clients_total``,
    ``handler_errors_total``, ``events_published_total``,
    ``events_replayed_total``, ``restarts_total``, ``half_open_total``,
    ``log_errors_total``, ``log_discontinuities_total`` and ``busy_total``.
    Channels (protocol version 2): the gauges ``channels`` and
    ``channel_subscriptions``; the counters ``channel_subscribed_total``,
    ``channel_events_total{kind}`` (``live``, ``replayed``: by kind of
    delivery, never by channel name), ``channel_snapshots_total``,
    ``channel_lost_total``, ``channel_refusals_total{code}``,
    ``channel_repairs_total``, ``channel_resyncs_total``,
    ``channel_notifications_lost_total`` and ``channel_store_errors_total``.
    Acknowledged publish: ``publishes_acked_total``,
    ``publishes_duplicate_total`` and ``publish_nacks_total{code}``.

    Args:
        namespace: The prefix of the metric names.
    """

    _label = "server"

    def _families(self, snapshots: list[tuple[str, ServerStatistics]]) -> Iterator[Metric]:
        prefix = f"{self.namespace}_server_"
        labels = [self._label]
        for name, doc in (
            ("clients", "Clients connected now (handshaking or ready)."),
            ("ready_clients", "Connected clients past ready."),
        ):
            gauge = GaugeMetricFamily(prefix + name, doc, labels=labels)
            for server, stats in snapshots:
                gauge.add_metric([server], getattr(stats, name))
            yield gauge
        outcomes = CounterMetricFamily(
            prefix + "handshakes", "Resume handshakes, by outcome.", labels=[*labels, "outcome"]
        )
        for server, stats in snapshots:
            for outcome, field in _OUTCOME_FIELDS.items():
                outcomes.add_metric([server, outcome.value], getattr(stats, field))
        yield outcomes
        for name, doc in (
            ("refused", "Opening handshakes refused with HTTP 503."),
            ("protocol_errors", "Clients closed for a bad or missing resume frame."),
            ("slow_clients", "Clients closed because their queue was full."),
            ("handler_errors", "Clients closed because on_message raised."),
            ("events_published", "Events published."),
            ("events_replayed", "Events sent from the log during handshakes."),
            ("restarts", "Restarts, drains and shutdowns."),
            ("half_open", "Clients dropped because they did not answer a ping."),
            ("log_errors", "Log calls that failed because the log was unavailable."),
            (
                "log_discontinuities",
                "Times the log no longer held what the clients were to get (each closes them all).",
            ),
            (
                "busy",
                "Clients told to come back later because a log read of their handshake"
                " outlasted handshake_timeout (the node was busy; the log did not fail).",
            ),
        ):
            counter = CounterMetricFamily(prefix + name, doc, labels=labels)
            for server, stats in snapshots:
                counter.add_metric([server], getattr(stats, name))
            yield counter
        yield from self._channel_families(prefix, labels, snapshots)
        yield from _publish_families(prefix, snapshots)

    @staticmethod
    def _channel_families(
        prefix: str, labels: list[str], snapshots: list[tuple[str, ServerStatistics]]
    ) -> Iterator[Metric]:
        """The channels' series: a few fixed label values each, never a channel's name."""
        for name, doc, field in (
            ("channels", "Channels with a subscription on this node now.", "channels_held"),
            ("channel_subscriptions", "Channel subscriptions held now.", "channel_subscriptions"),
        ):
            gauge = GaugeMetricFamily(prefix + name, doc, labels=labels)
            for server, stats in snapshots:
                gauge.add_metric([server], getattr(stats, field))
            yield gauge
        for name, doc, label, fields in (
            ("channel_events", "Channel events sent, by kind of delivery.", "kind",
             _CHANNEL_EVENT_FIELDS),
            ("channel_refusals", "Subscriptions refused, by code.", "code", _REFUSAL_FIELDS),
        ):  # fmt: skip
            family = CounterMetricFamily(prefix + name, doc, labels=[*labels, label])
            for server, stats in snapshots:
                for value, field in fields.items():
                    family.add_metric([server, str(value)], getattr(stats, field))
            yield family
        for name, doc in (
            ("channel_subscribed", "Channel answers that ended subscribed."),
            ("channel_snapshots", "Channel snapshots sent in answers."),
            ("channel_lost", "Channel answers with lost: true (position not held, no snapshot)."),
            ("channel_repairs", "Channel reads made to repair a gap in the live feed."),
            (
                "channel_resyncs",
                "Subscriptions started again unasked (lost: true): their gap was no longer held.",
            ),
            ("channel_notifications_lost", "Times the notification stream was lost (repaired)."),
            ("channel_store_errors", "Times the notification stream failed: store unavailable."),
        ):
            counter = CounterMetricFamily(prefix + name, doc, labels=labels)
            for server, stats in snapshots:
                counter.add_metric([server], getattr(stats, name))
            yield counter


def _publish_families(
    prefix: str, snapshots: list[tuple[str, ServerStatistics]]
) -> Iterator[Metric]:
    """The acknowledged publish counters (PROTOCOL 4.5)."""
    for name, doc in (
        ("publishes_acked", "Publish frames answered ack (duplicates included)."),
        ("publishes_duplicate", "Re-sent publishes of a msgId already applied."),
    ):
        counter = CounterMetricFamily(prefix + name, doc, labels=["server"])
        for server, stats in snapshots:
            counter.add_metric([server], getattr(stats, name))
        yield counter
    nacks = CounterMetricFamily(
        prefix + "publish_nacks",
        "Publish frames answered nack, by code.",
        labels=["server", "code"],
    )
    for server, stats in snapshots:
        for code in ("forbidden", "invalid", "too_large", "unavailable"):
            nacks.add_metric([server, code], getattr(stats, f"nacks_{code}"))
    yield nacks
