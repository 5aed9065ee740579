"""The prometheus extra: collectors, the /metrics endpoint, and ``serve --metrics-port``.

Every scrape is parsed with prometheus-client's own text parser, so what is
checked is what a Prometheus server would read.
"""

from __future__ import annotations

import functools
import os
import random
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import trio_reconnect as tr  # noqa: E402
from tests.support.faulty_log import FaultyLog  # noqa: E402
from tests.support.server_clients import closed_with, connect, receive_json, resumed  # noqa: E402
from trio_reconnect._metrics import DEFAULT_WINDOW, MetricsRecorder  # noqa: E402
from trio_reconnect._protocol import (  # noqa: E402
    HandshakeOutcome,
    HandshakeResult,
    encode_resume,
)
from trio_reconnect.prometheus import (  # noqa: E402
    DEFAULT_BUCKETS,
    MAX_REQUEST_HEAD,
    REQUEST_TIMEOUT,
    ReconnectCollector,
    ServerCollector,
    serve_metrics,
)
from trio_reconnect.prometheus._http import _answer  # noqa: E402
from trio_reconnect.server import (  # noqa: E402
    LogRead,
    LogUnavailableError,
    ReconnectServer,
    ReplayLog,
    ServerStatistics,
)
from trio_reconnect.testing import MemoryNetwork  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_registry(registry: CollectorRegistry) -> Samples:
    return parse(generate_latest(registry).decode())


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def result(outcome: HandshakeOutcome, replayed: int = 0) -> HandshakeResult:
    return HandshakeResult(outcome, replayed, None)


@pytest.fixture
def recorder() -> MetricsRecorder:
    """Two connects, three reconnects (0.5 s, 1.5 s, 2.5 s: median 1.5 s) and two failures."""
    metrics = MetricsRecorder()
    metrics.record_ready(None, result(HandshakeOutcome.FRESH))
    metrics.record_failure()
    metrics.record_failure()
    metrics.record_ready(0.5, result(HandshakeOutcome.REPLAYED, 3))
    metrics.record_ready(1.5, result(HandshakeOutcome.SNAPSHOT))
    metrics.record_ready(2.5, result(HandshakeOutcome.LOST))
    return metrics


def client_registry(**sources: Any) -> tuple[CollectorRegistry, ReconnectCollector]:
    registry = CollectorRegistry()
    collector = ReconnectCollector()
    for name, source in sources.items():
        collector.add(name, source)
    registry.register(collector)
    return registry, collector


# --------------------------------------------------------------------------- the client collector


def test_client_metrics_are_the_statistics(recorder: MetricsRecorder) -> None:
    registry, _ = client_registry(feed=recorder)
    samples = scrape_registry(registry)
    stats = recorder.statistics()
    p = "trio_reconnect_client_"
    assert samples[key(p + "connects_total", client="feed")] == 4
    assert samples[key(p + "reconnects_total", client="feed")] == 3
    assert samples[key(p + "failed_attempts_total", client="feed")] == 2
    assert samples[key(p + "replayed_events_total", client="feed")] == 3
    for outcome, count in (("fresh", 1), ("replayed", 1), ("snapshot", 1), ("lost", 1)):
        assert samples[key(p + "handshakes_total", client="feed", outcome=outcome)] == count
    assert samples[key(p + "reconnect_median_seconds", client="feed")] == 1.5
    assert samples[key(p + "reconnect_p95_seconds", client="feed")] == stats.p95_reconnect
    assert samples[key(p + "reconnect_max_seconds", client="feed")] == 2.5
    # The median is 1.5 s: WATCH, and only WATCH.
    assert stats.health is tr.HealthLevel.WATCH
    for level in tr.HealthLevel:
        expected = 1.0 if level is tr.HealthLevel.WATCH else 0.0
        assert samples[key(p + "health", client="feed", level=level.value)] == expected


def test_client_histogram_counts_the_window(recorder: MetricsRecorder) -> None:
    registry, _ = client_registry(feed=recorder)
    samples = scrape_registry(registry)
    bucket = "trio_reconnect_client_reconnect_seconds_bucket"
    counts = {
        le: v
        for (name, labels), v in samples.items()
        if name == bucket
        for k, le in labels
        if k == "le"
    }
    assert counts == {
        **{
            repr(bound): float(sum(d <= bound for d in (0.5, 1.5, 2.5)))
            for bound in DEFAULT_BUCKETS
        },
        "+Inf": 3.0,
    }
    # The health thresholds are bucket bounds, so a quantile at them is exact.
    assert counts[repr(tr.HEALTHY_BELOW)] == 1
    assert counts[repr(tr.REGRESSION_ABOVE)] == 2
    assert repr(tr.INCIDENT_ABOVE) in counts
    assert samples[key("trio_reconnect_client_reconnect_seconds_gcount", client="feed")] == 3
    assert samples[key("trio_reconnect_client_reconnect_seconds_gsum", client="feed")] == 4.5


def test_no_reconnect_yet_leaves_the_durations_out() -> None:
    metrics = MetricsRecorder()
    metrics.record_ready(None, None)
    registry, _ = client_registry(feed=metrics.statistics)  # a callable works too
    samples = scrape_registry(registry)
    names = {name for name, _ in samples}
    assert "trio_reconnect_client_reconnect_median_seconds" not in names
    assert "trio_reconnect_client_reconnect_p95_seconds" not in names
    assert samples[key("trio_reconnect_client_reconnect_seconds_gcount", client="feed")] == 0
    assert samples[key("trio_reconnect_client_health", client="feed", level="healthy")] == 1


def test_every_client_counter_and_duration_is_exported() -> None:
    # Each int field of the statistics is a counter, each duration a gauge, with
    # a value no other field has: a field added without a series fails here.
    fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(tr.ReconnectStatistics)
    counts = {f.name: 101 + n for n, f in enumerate(fields) if f.type in (int, "int")}
    durations: dict[str, Any] = {
        "median_reconnect": 1.25,
        "p95_reconnect": 3.5,
        "max_reconnect": 4.75,
        "median_beyond_server_wait": 0.5,
    }
    windows = {"recent_reconnects", "recent_server_waits"}
    assert set(counts) | set(durations) | windows | {"health"} == {f.name for f in fields}
    stats = tr.ReconnectStatistics(
        **counts,
        **durations,
        recent_reconnects=(1.25, 4.75),
        recent_server_waits=(0.75, 0.25),
        health=tr.HealthLevel.REGRESSION,
    )
    registry, _ = client_registry(feed=lambda: stats)
    samples = scrape_registry(registry)
    totals = sorted(v for (name, _), v in samples.items() if name.endswith("_total"))
    assert totals == sorted(counts.values())
    seconds = {
        v for (name, _), v in samples.items() if re.fullmatch(r".*_reconnect_\w+_seconds", name)
    }
    assert seconds == set(durations.values())


async def test_server_directed_reconnects_follow_a_real_restart(
    autojump_clock: trio.abc.Clock,
    reconnect_server: ReconnectServer,
    connect_client: Callable[..., AbstractAsyncContextManager[tr.ReconnectingWebSocket]],
) -> None:
    # A restart closes the client with 1012 and a hint: it comes back, and the
    # scrape counts a server-directed reconnect, not a failed attempt.
    registry, collector = client_registry()
    servers = ServerCollector()
    servers.add("main", reconnect_server)
    registry.register(servers)
    p = "trio_reconnect_client_"
    directed = key(p + "server_directed_reconnects_total", client="alice")
    with trio.fail_after(60):
        async with connect_client("alice") as ws:
            collector.add("alice", ws)
            await ws.wait_ready()
            before = scrape_registry(registry)
            await reconnect_server.restart()
            while ws.statistics().reconnects == 0:
                await trio.sleep(0.01)
            await ws.wait_ready()
            stats = ws.statistics()
            after = scrape_registry(registry)
    assert before[directed] == 0
    assert stats.server_directed == 1
    assert after[directed] == 1
    assert after[key(p + "reconnects_total", client="alice")] == 1
    assert after[key(p + "failed_attempts_total", client="alice")] == 0
    assert after[key("trio_reconnect_server_restarts_total", server="main")] == 1


def test_two_clients_and_removal(recorder: MetricsRecorder) -> None:
    registry, collector = client_registry(feed=recorder, orders=MetricsRecorder())
    samples = scrape_registry(registry)
    assert samples[key("trio_reconnect_client_connects_total", client="feed")] == 4
    assert samples[key("trio_reconnect_client_connects_total", client="orders")] == 0
    collector.remove("orders")
    names = {labels for name, labels in scrape_registry(registry)}
    assert not any(("client", "orders") in labels for labels in names)
    with pytest.raises(KeyError):
        collector.remove("orders")


@pytest.mark.parametrize("name", ["", None])
def test_a_source_needs_a_name(name: Any) -> None:
    with pytest.raises(ValueError, match="needs a non-empty name"):
        ReconnectCollector().add(name, MetricsRecorder())


def test_a_name_is_collected_once() -> None:
    collector = ReconnectCollector()
    collector.add("feed", MetricsRecorder())
    with pytest.raises(ValueError, match="'feed' is already collected"):
        collector.add("feed", MetricsRecorder())


@pytest.mark.parametrize("buckets", [(), (2.0, 1.0), (1.0, 1.0), (0.0, 1.0), (-1.0,)])
def test_bad_buckets(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets must be positive and increasing"):
        ReconnectCollector(buckets=buckets)


def test_registering_two_collectors_of_the_same_kind_is_refused() -> None:
    # The registry's duplicate check sees the names through describe(), even
    # with no source added yet: one collector holds every client.
    registry = CollectorRegistry()
    registry.register(ReconnectCollector())
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(ReconnectCollector())
    registry.register(ReconnectCollector(namespace="other"))


async def test_a_live_client_through_a_reset(
    autojump_clock: trio.abc.Clock,
    memory_network: MemoryNetwork,
    reconnect_server: ReconnectServer,
    connect_client: Callable[..., AbstractAsyncContextManager[tr.ReconnectingWebSocket]],
) -> None:
    # The collector reads the client as it is at each scrape.
    registry = CollectorRegistry()
    collector = ReconnectCollector()
    registry.register(collector)
    with trio.fail_after(60):
        async with connect_client("alice") as ws:
            collector.add("alice", ws)
            await ws.wait_ready()
            before = scrape_registry(registry)
            assert before[key("trio_reconnect_client_reconnects_total", client="alice")] == 0
            memory_network.reset("alice")
            while ws.statistics().reconnects == 0:
                await trio.sleep(0.01)
            await ws.wait_ready()
            stats = ws.statistics()
            after = scrape_registry(registry)
    assert stats.median_reconnect is not None
    assert stats.median_reconnect > 0
    p = "trio_reconnect_client_"
    assert after[key(p + "connects_total", client="alice")] == 2
    assert after[key(p + "reconnects_total", client="alice")] == 1
    assert after[key(p + "reconnect_median_seconds", client="alice")] == stats.median_reconnect
    assert after[key(p + "reconnect_seconds_gcount", client="alice")] == 1
    assert after[key(p + "reconnect_seconds_gsum", client="alice")] == stats.median_reconnect


# --------------------------------------------------------------------------- the server collector


def test_server_metrics_are_the_statistics() -> None:
    stats = ServerStatistics(
        clients=5,
        ready_clients=4,
        fresh=1,
        replayed=2,
        snapshots=3,
        lost=4,
        refused=6,
        protocol_errors=7,
        slow_clients=8,
        handler_errors=9,
        events_published=10,
        events_replayed=11,
        restarts=12,
        half_open=13,
        log_errors=14,
        log_discontinuities=15,
        busy=16,
        publishes_acked=17,
        publishes_duplicate=18,
        nacks_forbidden=19,
        nacks_invalid=20,
        nacks_too_large=21,
        nacks_unavailable=22,
    )
    registry = CollectorRegistry()
    collector = ServerCollector()
    collector.add("main", lambda: stats)
    registry.register(collector)
    samples = scrape_registry(registry)
    p = "trio_reconnect_server_"
    assert samples[key(p + "clients", server="main")] == 5
    assert samples[key(p + "ready_clients", server="main")] == 4
    for outcome, count in (("fresh", 1), ("replayed", 2), ("snapshot", 3), ("lost", 4)):
        assert samples[key(p + "handshakes_total", server="main", outcome=outcome)] == count
    for name, count in (
        ("refused", 6),
        ("protocol_errors", 7),
        ("slow_clients", 8),
        ("handler_errors", 9),
        ("events_published", 10),
        ("events_replayed", 11),
        ("restarts", 12),
        ("half_open", 13),
        ("log_errors", 14),
        ("log_discontinuities", 15),
        ("busy", 16),
        ("publishes_acked", 17),
        ("publishes_duplicate", 18),
    ):
        assert samples[key(p + name + "_total", server="main")] == count
    for code, count in (("forbidden", 19), ("invalid", 20), ("too_large", 21), ("unavailable", 22)):
        assert samples[key(p + "publish_nacks_total", server="main", code=code)] == count
    assert len(samples) == 2 + 4 + 11 + CHANNEL_SERIES + PUBLISH_SERIES


#: The acknowledged publish series of one server: 2 counters, 4 nack codes.
PUBLISH_SERIES = 2 + 4


#: The channel series of one server: 2 gauges, 2 event kinds, 4 refusal codes, 7 counters.
CHANNEL_SERIES = 2 + 2 + 4 + 7


def test_channel_metrics_are_the_statistics_with_bounded_labels() -> None:
    stats = ServerStatistics(
        **dict.fromkeys(
            (f.name for f in attrs.fields(ServerStatistics) if f.default is attrs.NOTHING), 0
        ),
        channels_held=3,
        channel_subscriptions=40,
        channel_subscribed=41,
        channel_events_live=1000,
        channel_events_replayed=70,
        channel_snapshots=5,
        channel_lost=6,
        channel_refused_forbidden=7,
        channel_refused_invalid=8,
        channel_refused_limit=9,
        channel_refused_unavailable=10,
        channel_repairs=11,
        channel_resyncs=12,
        channel_notifications_lost=13,
        channel_store_errors=14,
    )
    registry = CollectorRegistry()
    collector = ServerCollector()
    collector.add("main", lambda: stats)
    registry.register(collector)
    samples = scrape_registry(registry)
    p = "trio_reconnect_server_"
    assert samples[key(p + "channels", server="main")] == 3
    assert samples[key(p + "channel_subscriptions", server="main")] == 40
    assert samples[key(p + "channel_events_total", server="main", kind="live")] == 1000
    assert samples[key(p + "channel_events_total", server="main", kind="replayed")] == 70
    for code, count in (("forbidden", 7), ("invalid", 8), ("limit", 9), ("unavailable", 10)):
        assert samples[key(p + "channel_refusals_total", server="main", code=code)] == count
    for name, count in (
        ("channel_subscribed", 41),
        ("channel_snapshots", 5),
        ("channel_lost", 6),
        ("channel_repairs", 11),
        ("channel_resyncs", 12),
        ("channel_notifications_lost", 13),
        ("channel_store_errors", 14),
    ):
        assert samples[key(p + name + "_total", server="main")] == count
    channel_series = [name for name, _ in samples if name.startswith(p + "channel")]
    assert len(channel_series) == CHANNEL_SERIES
    # No label carries a channel's name: the series are the same whatever the channels.
    labels = {label for _, pairs in samples for label, _ in pairs}
    assert labels == {"server", "outcome", "kind", "code"}


def test_every_server_statistic_is_exported() -> None:
    # One series per field, each with a value no other field has: a field
    # added to ServerStatistics without a series fails here.
    values = {f.name: n + 1 for n, f in enumerate(attrs.fields(ServerStatistics))}
    registry = CollectorRegistry()
    collector = ServerCollector()
    collector.add("main", lambda: ServerStatistics(**values))
    registry.register(collector)
    assert sorted(scrape_registry(registry).values()) == sorted(values.values())


#: The counters of a server's troubles, by ServerStatistics field.
FAULTS = ("half_open", "log_errors", "log_discontinuities", "busy")


def scrape_faults(registry: CollectorRegistry, server: ReconnectServer) -> dict[str, float]:
    """The fault counters of a scrape of ``registry`` (which collects ``server`` as "main")."""
    samples = scrape_registry(registry)
    scraped = {
        field: samples[key(f"trio_reconnect_server_{field}_total", server="main")]
        for field in FAULTS
    }
    stats = server.statistics()  # at the same instant: no checkpoint between
    assert scraped == {field: getattr(stats, field) for field in FAULTS}
    return scraped


def server_registry(server: ReconnectServer) -> CollectorRegistry:
    registry = CollectorRegistry()
    collector = ServerCollector()
    collector.add("main", server)
    registry.register(collector)
    return registry


HANDSHAKE_TIMEOUT = 4.0


@attrs.define(eq=False)
class SlowLog(FaultyLog):
    """A log whose ``read_after`` takes ``delay`` seconds while ``slow`` is set."""

    delay: float = 0.0
    slow: bool = False

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        if self.slow:
            await trio.sleep(self.delay)
        return await super().read_after(event_id, limit=limit)


def fault_server(log: FaultyLog, **options: Any) -> tuple[ReconnectServer, CollectorRegistry]:
    server = ReconnectServer(
        log,
        rng=random.Random(0),
        ping_interval=None,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        **options,
    )
    return server, server_registry(server)


async def test_a_busy_handshake_is_scraped(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    log = SlowLog(ReplayLog(start=1), delay=HANDSHAKE_TIMEOUT + 1.0)
    server, registry = fault_server(log)
    with trio.fail_after(60):
        await server.publish("one")
        assert scrape_faults(registry, server) == dict.fromkeys(FAULTS, 0)
        log.slow = True
        ws = await connect(nursery, server)
        await ws.send_message(encode_resume(None))
        assert (await closed_with(ws)).code == 1013
        assert scrape_faults(registry, server) == {**dict.fromkeys(FAULTS, 0), "busy": 1}


async def test_log_errors_are_scraped(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    log = FaultyLog(ReplayLog(start=1))
    server, registry = fault_server(log, outage_limit=None)
    with trio.fail_after(60):
        await resumed(nursery, server, None)
        assert scrape_faults(registry, server) == dict.fromkeys(FAULTS, 0)
        log.go_down()
        with pytest.raises(LogUnavailableError):
            await server.publish("never stored")
        faults = scrape_faults(registry, server)
        assert faults["log_errors"] >= 1
        assert {**faults, "log_errors": 0} == dict.fromkeys(FAULTS, 0)
        # The fan-out retries once a second while the log is down: each retry counts.
        await trio.sleep(3)
        assert scrape_faults(registry, server)["log_errors"] > faults["log_errors"]


async def test_a_log_discontinuity_is_scraped(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    log = FaultyLog(ReplayLog(start=1))
    server, registry = fault_server(log)
    with trio.fail_after(60):
        ws, _ = await resumed(nursery, server, None)
        await server.publish("one")
        assert (await receive_json(ws))["id"] == "1"
        assert scrape_faults(registry, server) == dict.fromkeys(FAULTS, 0)
        log.lose_data(restart_at=5_000)  # the store restarts empty
        assert (await closed_with(ws)).code == 1012
        assert scrape_faults(registry, server) == {
            **dict.fromkeys(FAULTS, 0),
            "log_discontinuities": 1,
        }


async def test_a_half_open_client_is_scraped(
    autojump_clock: trio.abc.Clock, memory_network: MemoryNetwork
) -> None:
    server = ReconnectServer(ReplayLog(), ping_interval=5.0, ping_timeout=3.0)
    registry = server_registry(server)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_listeners, [memory_network.listen()])
            async with tr.open_reconnecting_websocket(
                "ws://server/",
                open_stream=memory_network.client("alice"),
                random=random.Random(1),
                ping_interval=None,  # the client does not notice; the server must
            ) as ws:
                await ws.wait_ready()
                (client,) = server.clients
                assert scrape_faults(registry, server) == dict.fromkeys(FAULTS, 0)
                memory_network.blackhole("alice")
                await client.wait_closed()
                assert scrape_faults(registry, server) == {
                    **dict.fromkeys(FAULTS, 0),
                    "half_open": 1,
                }
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ the endpoint, on loopback


def http_get(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


async def test_a_client_and_a_server_scraped_over_http() -> None:
    with trio.fail_after(30):
        server = ReconnectServer(ReplayLog())
        registry = CollectorRegistry()
        clients = ReconnectCollector()
        servers = ServerCollector()
        servers.add("main", server)
        registry.register(clients)
        registry.register(servers)
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, "127.0.0.1", 0)
            listeners = await nursery.start(functools.partial(serve_metrics, 0, registry=registry))
            url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/metrics"
            async with tr.open_reconnecting_websocket(f"ws://127.0.0.1:{listener.port}/") as ws:
                clients.add("feed", ws)
                await ws.wait_ready()
                await server.publish({"n": 1})
                assert isinstance(await ws.get_message(), tr.ServerEvent)
                status, headers, text = await trio.to_thread.run_sync(http_get, url)
            nursery.cancel_scope.cancel()
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = parse(text)
        assert samples[key("trio_reconnect_client_connects_total", client="feed")] == 1
        assert (
            samples[key("trio_reconnect_client_handshakes_total", client="feed", outcome="fresh")]
            == 1
        )
        assert samples[key("trio_reconnect_server_clients", server="main")] == 1
        assert samples[key("trio_reconnect_server_ready_clients", server="main")] == 1
        assert samples[key("trio_reconnect_server_events_published_total", server="main")] == 1


async def test_the_endpoint_answers_only_get_and_head_on_its_path() -> None:
    with trio.fail_after(30):
        registry, _ = client_registry(feed=MetricsRecorder())
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(serve_metrics, 0, registry=registry))
            base = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            answers = [
                await trio.to_thread.run_sync(http_get, base + path, method)
                for path, method in [
                    ("/metrics", "HEAD"),
                    ("/metrics?x=1", "GET"),
                    ("/", "GET"),
                    ("/metrics", "POST"),
                ]
            ]
            nursery.cancel_scope.cancel()
    (head, query, other, post) = answers
    assert (head[0], head[2]) == (200, "")
    assert int(head[1]["Content-Length"]) == len(query[2]) > 0
    assert query[0] == 200
    assert "trio_reconnect_client_connects_total" in query[2]
    assert other[0] == 404
    assert "/metrics" in other[2]
    assert (post[0], post[1]["Allow"]) == (405, "GET, HEAD")


async def test_openmetrics_on_request() -> None:
    with trio.fail_after(30):
        registry, _ = client_registry(feed=MetricsRecorder())
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(serve_metrics, 0, registry=registry))
            port = listeners[0].socket.getsockname()[1]
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                    b"Accept: application/openmetrics-text; version=1.0.0\r\n\r\n"
                )
                answer = await read_all(stream)
            nursery.cancel_scope.cancel()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/openmetrics-text" in head.lower()
    assert body.endswith(b"# EOF\n")


# -------------------------------------------------------------- bad scrapers, in virtual time


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


async def exchange(request: bytes, *, close: bool = True) -> tuple[bytes, float]:
    """Send ``request`` to the endpoint over a memory stream: its answer and when it came."""
    client, server = trio.testing.memory_stream_pair()
    registry, _ = client_registry(feed=MetricsRecorder())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer, server, registry)
        if request:
            await client.send_all(request)
        if close:
            await client.send_eof()
        answer = await read_all(client)
    return answer, trio.current_time()


async def test_a_silent_scraper_is_dropped_after_the_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(REQUEST_TIMEOUT + 1):
        answer, when = await exchange(b"", close=False)
    assert (answer, when) == (b"", REQUEST_TIMEOUT)


async def test_a_closed_scraper_gets_nothing(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(1):
        assert await exchange(b"") == (b"", 0.0)


async def test_garbage_gets_400(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(1):
        answer, _ = await exchange(b"garbage\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_an_oversized_request_head_gets_431(autojump_clock: trio.abc.Clock) -> None:
    huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 2 * MAX_REQUEST_HEAD
    with trio.fail_after(1):
        answer, _ = await exchange(huge + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_a_failing_collector_gets_500_and_the_endpoint_stays_up(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> tr.ReconnectStatistics:
        raise RuntimeError("boom")

    client, server = trio.testing.memory_stream_pair()
    registry, _ = client_registry(broken=broken)
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_answer, server, registry)
            await client.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await read_all(client)
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert "a metrics collector failed" in caplog.text


# --------------------------------------------------------------------------- serve --metrics-port


@pytest.fixture
def serve_process() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """A real ``python -m trio_reconnect serve --port P --metrics-port 0``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with socket.socket() as sock:  # a free port for the websocket side
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["serve", "--port", str(port), "--metrics-port", "0", "--interval", "0.05"]
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_reconnect", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        ws_line = process.stdout.readline()
        metrics_line = process.stdout.readline()
        assert ws_line.strip() == f"serving the reconnect protocol on ws://127.0.0.1:{port}/"
        assert metrics_line.startswith("serving Prometheus metrics on http://127.0.0.1:"), (
            metrics_line
        )
        ws_port = port
        metrics_port = int(metrics_line.rstrip().removesuffix("/metrics").rsplit(":", 1)[1])
        yield process, ws_port, metrics_port
    finally:
        process.kill()
        process.communicate(timeout=10)


async def test_serve_metrics_port_is_scraped(
    serve_process: tuple[subprocess.Popen[str], int, int],
) -> None:
    _, ws_port, metrics_port = serve_process
    with trio.fail_after(30):
        async with tr.open_reconnecting_websocket(f"ws://127.0.0.1:{ws_port}/") as ws:
            await ws.wait_ready()
            await ws.get_message()  # a tick
            status, _, text = await trio.to_thread.run_sync(
                http_get, f"http://127.0.0.1:{metrics_port}/metrics"
            )
    assert status == 200
    samples = parse(text)
    assert samples[key("trio_reconnect_server_clients", server="serve")] == 1
    handshakes = [
        v for (name, _), v in samples.items() if name == "trio_reconnect_server_handshakes_total"
    ]
    assert sum(handshakes) == 1
    assert samples[key("trio_reconnect_server_events_published_total", server="serve")] >= 1
    for field in FAULTS:
        assert samples[key(f"trio_reconnect_server_{field}_total", server="serve")] == 0
    assert samples[key("process_open_fds")] > 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("99999", "a port from 0 to 65535, got 99999"),
        ("-1", "a port from 0 to 65535, got -1"),
        ("x", "a port from 0 to 65535, got 'x'"),
    ],
)
def test_serve_rejects_a_bad_metrics_port(value: str, message: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "trio_reconnect", "serve", "--metrics-port", value],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- the how-to page


def test_the_howto_alert_rules_use_the_library_thresholds(recorder: MetricsRecorder) -> None:
    page = (ROOT / "docs" / "howto" / "prometheus.md").read_text()
    rules = page.split("```yaml\n", 1)[1].split("```", 1)[0]
    alerts = re.findall(r"- alert: (\w+)\n\s+expr: (\w+) > ([\d.]+)\n\s+for: (\w+)", rules)
    assert alerts == [
        ("ReconnectRegression", "trio_reconnect_client_reconnect_median_seconds", "2", "5m"),
        ("ReconnectIncident", "trio_reconnect_client_reconnect_median_seconds", "10", "5m"),
    ]
    assert float(alerts[0][2]) == tr.REGRESSION_ABOVE
    assert float(alerts[1][2]) == tr.INCIDENT_ABOVE
    for threshold in (alerts[0][2], alerts[1][2]):
        assert f"over {threshold} s for 5 minutes" in rules
    # The metric is one the collector exports.
    registry, _ = client_registry(feed=recorder)
    assert key(alerts[0][1], client="feed") in scrape_registry(registry)
    assert f"the last {DEFAULT_WINDOW} reconnects" in page


def howto_yaml_blocks() -> list[str]:
    page = (ROOT / "docs" / "howto" / "prometheus.md").read_text()
    return re.findall(r"^```yaml\n(.*?)^```", page, re.DOTALL | re.MULTILINE)


#: How the how-to's tables name a metric family's type.
TABLE_TYPES = {"counter": "counter", "gauge": "gauge", "gaugehistogram": "gauge histogram"}


def test_the_howto_tables_are_the_exported_metrics() -> None:
    # Every family either collector exports is in a table, with its type,
    # and the tables name nothing else.
    page = (ROOT / "docs" / "howto" / "prometheus.md").read_text()
    rows = re.findall(r"^\| `(trio_reconnect_\w+?)(?:\{\w+\})?` \| ([\w ]+) \|", page, re.M)
    exported = [
        (family.name + ("_total" if family.type == "counter" else ""), TABLE_TYPES[family.type])
        for collector in (ReconnectCollector(), ServerCollector())
        for family in collector.describe()
    ]
    assert sorted(rows) == sorted(exported)


def test_the_howto_server_alerts_rate_real_counters() -> None:
    _, rules = howto_yaml_blocks()
    alerts = re.findall(r"- alert: (\w+)\n\s+expr: (.+)\n", rules)
    assert [name for name, _ in alerts] == [
        "ReconnectLogUnavailable",
        "ReconnectLogDiscontinuity",
        "ReconnectHalfOpenClients",
        "ReconnectBusy",
    ]
    server = ReconnectServer(ReplayLog())
    exported = {name for name, _ in scrape_registry(server_registry(server))}
    used: set[str] = set()
    for name, expr in alerts:
        metrics = re.findall(r"trio_reconnect_\w+", expr)
        assert metrics, name
        for metric in metrics:
            assert metric in exported, (name, metric)
            # A counter only grows: a rule reads its rate, never its value.
            assert re.search(rf"\b(rate|increase)\({metric}\[\w+\]\)", expr), (name, metric)
        used.update(metrics)
    assert {f"trio_reconnect_server_{field}_total" for field in FAULTS} <= used


def test_serve_metrics_port_without_the_extra() -> None:
    # As if prometheus-client were not installed: one line, exit 2.
    code = (
        "import sys\n"
        "class Missing:\n"
        "    @staticmethod\n"
        "    def find_spec(name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'prometheus_client':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Missing)\n"
        "from trio_reconnect._tools._cli import main\n"
        "sys.exit(main(['serve', '--metrics-port', '9100']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 2
    assert "needs prometheus-client: pip install 'trio-reconnect[prometheus]'" in done.stderr
    assert "Traceback" not in done.stderr
