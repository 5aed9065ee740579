"""The named defaults of a node's settings (re-exported by ``trio_reconnect.server``)."""

from __future__ import annotations

import signal
from typing import Final

__all__ = [
    "DEFAULT_ANNOUNCE_INTERVAL",
    "DEFAULT_ANNOUNCE_TTL",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_INCOMING_QUEUE_SIZE",
    "DEFAULT_MAX_REPLAY",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_OUTAGE_LIMIT",
    "DEFAULT_OUTAGE_RETRY_AFTER",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_STOP_SIGNALS",
]

#: Most events replayed in one handshake; beyond it, a snapshot or ``lost``.
DEFAULT_MAX_REPLAY: Final = 1_000
#: Seconds a client has for the HTTP upgrade, and again for its resume frame.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
#: Frames (live events and :meth:`ConnectedClient.send` messages) queued per client.
DEFAULT_QUEUE_SIZE: Final = 1_024
#: ``(client, message)`` pairs buffered for :meth:`ReconnectServer.messages`.
DEFAULT_INCOMING_QUEUE_SIZE: Final = 256
#: Seconds :meth:`ReconnectServer.shutdown` waits for the drained clients to go.
DEFAULT_DRAIN_TIMEOUT: Final = 10.0
#: Seconds the log may stay unavailable before the node closes its clients.
DEFAULT_OUTAGE_LIMIT: Final = 30.0
#: Least ``Retry-After`` (seconds) of a handshake refused while the log is down.
DEFAULT_OUTAGE_RETRY_AFTER: Final = 5.0
#: Seconds between a node's announcements in its cluster registry.
DEFAULT_ANNOUNCE_INTERVAL: Final = 1.0
#: Seconds an announcement counts as alive (a few missed announcements).
DEFAULT_ANNOUNCE_TTL: Final = 5.0
#: The signals :meth:`ReconnectServer.serve_until_signal` drains on.
DEFAULT_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
#: Channel subscriptions one connection may hold (protocol v2; decision 11).
DEFAULT_MAX_SUBSCRIPTIONS: Final = 100
#: Seconds an applied publish's msgId is remembered (4.5): a re-send within it is not re-applied.
DEFAULT_DEDUPE_TTL: Final = 600.0
