"""The public API, pinned: a change here is a change to what users import."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import trio_reconnect

PUBLIC = {
    "Attempt",
    "AttemptError",
    "Backoff",
    "MAX_HISTORY",
    "RetryPolicy",
    "ClientClosedError",
    "ConnectTimeout",
    "Connection",
    "ConnectionState",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_FACTOR",
    "DEFAULT_INITIAL_DELAY",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_REPLAY_RECEIVED",
    "DEFAULT_MAX_SERVER_DELAY",
    "DEFAULT_OUTBOX_BYTES",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_RESUME_TIMEOUT",
    "DEFAULT_STABLE_AFTER",
    "DelaySource",
    "Disconnect",
    "FatalCloseError",
    "Gap",
    "HEALTHY_BELOW",
    "MIN_HEALTH_SAMPLES",
    "HandshakeOutcome",
    "HandshakeRejectedError",
    "HealthLevel",
    "INCIDENT_ABOVE",
    "Item",
    "Jitter",
    "Join",
    "Leave",
    "MAX_CLOSE_REASON_BYTES",
    "OutboxState",
    "PingTimeout",
    "PublishRefused",
    "REGRESSION_ABOVE",
    "ReconnectError",
    "ReconnectFailed",
    "ReconnectStatistics",
    "ReconnectingWebSocket",
    "ResumeProtocolError",
    "ResumeTimeout",
    "SHORT_HINT_LIMIT",
    "SavedPublish",
    "ServerEvent",
    "Subscription",
    "SubscriptionRefused",
    "Snapshot",
    "TLSError",
    "Target",
    "Transition",
    "open_reconnecting_websocket",
}


SERVER_PUBLIC = {
    "AdmissionControl",
    "ChannelEvent",
    "ChannelRead",
    "ChannelRequest",
    "ChannelSnapshotProvider",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_DEDUPE_TTL",
    "DEFAULT_PRESENCE_GRACE",
    "MemberChange",
    "MemberList",
    "MemoryPresenceStore",
    "PresenceInfo",
    "PresenceStore",
    "Refuse",
    "ChannelStore",
    "DEFAULT_CHANNEL_MAX_LEN",
    "DEFAULT_LISTENER_BUFFER",
    "MemoryChannelStore",
    "NotificationsLost",
    "PublishRequest",
    "PublishResult",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "ClientState",
    "ClientStatistics",
    "ClusterDrainPlan",
    "ClusterRegistry",
    "ConnectedClient",
    "DEFAULT_ANNOUNCE_INTERVAL",
    "DEFAULT_ANNOUNCE_TTL",
    "DEFAULT_BASE",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_INCOMING_QUEUE_SIZE",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_REPLAY",
    "DEFAULT_MIN_WINDOW",
    "DEFAULT_OUTAGE_LIMIT",
    "DEFAULT_OUTAGE_RETRY_AFTER",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_RATE",
    "DEFAULT_STOP_SIGNALS",
    "DrainSummary",
    "EventLog",
    "EventLogError",
    "LogDiscontinuityError",
    "LogRead",
    "LogUnavailableError",
    "LoggedEvent",
    "MemoryRegistry",
    "MessageHandler",
    "NodeStatus",
    "ReconnectServer",
    "ReplayLog",
    "ServerStatistics",
    "SnapshotProvider",
    "SpreadPolicy",
    "clock_start_id",
    "distinct_milliseconds",
    "parse_event_id",
    "plan_cluster_drain",
    "plan_spread",
}


def test_server_names_pinned() -> None:
    import trio_reconnect.server as server

    assert set(server.__all__) == SERVER_PUBLIC
    for name in SERVER_PUBLIC:
        obj = getattr(server, name)
        module = getattr(obj, "__module__", "trio_reconnect.server._")
        if isinstance(obj, type):
            assert module.startswith("trio_reconnect.server._"), name


def test_public_names_pinned() -> None:
    assert set(trio_reconnect.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(trio_reconnect, name) is not None


def test_public_objects_live_in_private_modules() -> None:
    for name in PUBLIC - {"Item"}:  # Item is a type alias (a union)
        module = getattr(getattr(trio_reconnect, name), "__module__", "trio_reconnect._")
        assert module.startswith("trio_reconnect."), name


def test_exception_tree() -> None:
    tr = trio_reconnect
    for failed in (tr.FatalCloseError, tr.HandshakeRejectedError):
        assert issubclass(failed, tr.ReconnectFailed)
    for cause in (tr.ConnectTimeout, tr.TLSError, tr.ResumeTimeout, tr.ResumeProtocolError):
        assert issubclass(cause, tr.AttemptError)
    assert issubclass(tr.PingTimeout, tr.AttemptError)
    for error in (tr.ReconnectFailed, tr.AttemptError, tr.ClientClosedError):
        assert issubclass(error, tr.ReconnectError)
    assert not issubclass(tr.TLSError, tr.ConnectTimeout)


def test_defaults_documented_values() -> None:
    tr = trio_reconnect
    assert (tr.DEFAULT_INITIAL_DELAY, tr.DEFAULT_FACTOR, tr.DEFAULT_MAX_DELAY) == (1.0, 2.0, 30.0)
    assert (tr.HEALTHY_BELOW, tr.REGRESSION_ABOVE, tr.INCIDENT_ABOVE) == (1.0, 2.0, 10.0)
    assert tr.DEFAULT_MAX_SERVER_DELAY == 300.0
    assert tr.DEFAULT_STABLE_AFTER == 10.0
    assert (tr.DEFAULT_PING_INTERVAL, tr.DEFAULT_PING_TIMEOUT) == (20.0, 20.0)
    assert tr.MAX_CLOSE_REASON_BYTES == 123
    assert tr.Backoff().jitter is tr.Jitter.FULL


REDIS_PUBLIC = {
    "DEFAULT_CHANNEL_PREFIX",
    "DEFAULT_MAX_APPEND_BATCH",
    "DEFAULT_NOTIFY_PING_INTERVAL",
    "DEFAULT_NOTIFY_SHARDS",
    "DEFAULT_READ_BUDGET",
    "RedisChannelStore",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_LEN",
    "DEFAULT_READ_BLOCK",
    "DEFAULT_REGISTRY_PREFIX",
    "DEFAULT_STREAM",
    "DEFAULT_TIMEOUT",
    "MAX_REDIS_ID",
    "RedisRegistry",
    "RedisStreamLog",
}


def test_redis_names_pinned() -> None:
    import trio_reconnect.server.redis as redis_backends

    assert set(redis_backends.__all__) == REDIS_PUBLIC
    for name in REDIS_PUBLIC:
        assert getattr(redis_backends, name) is not None
    assert redis_backends.RedisStreamLog.__module__ == "trio_reconnect.server._redis._log"
    assert (redis_backends.DEFAULT_MAX_LEN, redis_backends.DEFAULT_TIMEOUT) == (10_000, 2.0)
    assert redis_backends.DEFAULT_READ_BLOCK == 0.1
    assert redis_backends.MAX_REDIS_ID == 2**53 - 1
    assert redis_backends.RedisChannelStore.__module__ == "trio_reconnect.server._redis._channels"
    assert redis_backends.DEFAULT_NOTIFY_SHARDS == 16
    assert redis_backends.DEFAULT_READ_BUDGET == 10_000


def test_server_does_not_import_coredis() -> None:
    import subprocess
    import sys

    code = "import sys, trio_reconnect.server; print('coredis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


PUBLIC_PROMETHEUS = {
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
}


def test_prometheus_names_pinned_and_imported_lazily() -> None:
    prometheus = pytest.importorskip("trio_reconnect.prometheus")
    assert set(prometheus.__all__) == PUBLIC_PROMETHEUS
    # Nothing else imports the optional extra, not even the command line.
    code = (
        "import sys, trio_reconnect, trio_reconnect.server, trio_reconnect.testing, "
        "trio_reconnect._tools._cli; "
        "assert 'prometheus_client' not in sys.modules; "
        "assert 'trio_reconnect.prometheus' not in sys.modules"
    )
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
