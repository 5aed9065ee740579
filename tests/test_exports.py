"""The public API, pinned: a change here is a change to what users import."""

from __future__ import annotations

import trio_reconnect

PUBLIC = {
    "Attempt",
    "AttemptError",
    "Backoff",
    "MAX_HISTORY",
    "RetryPolicy",
    "ClientClosedError",
    "ConnectTimeout",
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
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_RESUME_TIMEOUT",
    "DEFAULT_STABLE_AFTER",
    "DelaySource",
    "Disconnect",
    "FatalCloseError",
    "Gap",
    "HEALTHY_BELOW",
    "HandshakeOutcome",
    "HandshakeRejectedError",
    "HealthLevel",
    "INCIDENT_ABOVE",
    "Item",
    "Jitter",
    "MAX_CLOSE_REASON_BYTES",
    "PingTimeout",
    "REGRESSION_ABOVE",
    "ReconnectError",
    "ReconnectFailed",
    "ReconnectStatistics",
    "ReconnectingWebSocket",
    "ResumeProtocolError",
    "ResumeTimeout",
    "SHORT_HINT_LIMIT",
    "ServerEvent",
    "Snapshot",
    "TLSError",
    "Target",
    "Transition",
    "open_reconnecting_websocket",
}


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
