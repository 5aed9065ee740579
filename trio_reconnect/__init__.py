"""trio_reconnect: a WebSocket client for Trio that survives flaky networks.

It reconnects with capped, jittered exponential backoff; honours the
server's retry hints (``retryAfter`` in the close frame, ``Retry-After`` on a
refused handshake); resumes with a slow-start handshake (missed events, or a
snapshot, then ``ready``) before it lets any user traffic out; and measures
how long reconnects take.

The wire protocol is in docs/reference/protocol.md; the server side lives in
:mod:`trio_reconnect.server`.
"""

from __future__ import annotations

from ._backoff import DEFAULT_FACTOR as DEFAULT_FACTOR
from ._backoff import DEFAULT_INITIAL_DELAY as DEFAULT_INITIAL_DELAY
from ._backoff import DEFAULT_MAX_DELAY as DEFAULT_MAX_DELAY
from ._backoff import SHORT_HINT_LIMIT as SHORT_HINT_LIMIT
from ._backoff import Backoff as Backoff
from ._backoff import Jitter as Jitter
from ._backoff import RetryPolicy as RetryPolicy
from ._client import ReconnectingWebSocket as ReconnectingWebSocket
from ._client import open_reconnecting_websocket as open_reconnecting_websocket
from ._exceptions import AttemptError as AttemptError
from ._exceptions import ClientClosedError as ClientClosedError
from ._exceptions import ConnectTimeout as ConnectTimeout
from ._exceptions import FatalCloseError as FatalCloseError
from ._exceptions import HandshakeRejectedError as HandshakeRejectedError
from ._exceptions import PingTimeout as PingTimeout
from ._exceptions import PublishRefused as PublishRefused
from ._exceptions import ReconnectError as ReconnectError
from ._exceptions import ReconnectFailed as ReconnectFailed
from ._exceptions import ResumeProtocolError as ResumeProtocolError
from ._exceptions import ResumeTimeout as ResumeTimeout
from ._exceptions import SubscriptionRefused as SubscriptionRefused
from ._exceptions import TLSError as TLSError
from ._handshake import Connection as Connection
from ._hints import MAX_CLOSE_REASON_BYTES as MAX_CLOSE_REASON_BYTES
from ._metrics import HEALTHY_BELOW as HEALTHY_BELOW
from ._metrics import INCIDENT_ABOVE as INCIDENT_ABOVE
from ._metrics import MIN_HEALTH_SAMPLES as MIN_HEALTH_SAMPLES
from ._metrics import REGRESSION_ABOVE as REGRESSION_ABOVE
from ._metrics import HealthLevel as HealthLevel
from ._metrics import ReconnectStatistics as ReconnectStatistics
from ._options import DEFAULT_CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT
from ._options import DEFAULT_DEDUPE_WINDOW as DEFAULT_DEDUPE_WINDOW
from ._options import DEFAULT_MAX_ATTEMPTS as DEFAULT_MAX_ATTEMPTS
from ._options import DEFAULT_MAX_QUEUE as DEFAULT_MAX_QUEUE
from ._options import DEFAULT_MAX_REPLAY_RECEIVED as DEFAULT_MAX_REPLAY_RECEIVED
from ._options import DEFAULT_MAX_SERVER_DELAY as DEFAULT_MAX_SERVER_DELAY
from ._options import DEFAULT_OUTBOX_BYTES as DEFAULT_OUTBOX_BYTES
from ._options import DEFAULT_RESUME_TIMEOUT as DEFAULT_RESUME_TIMEOUT
from ._options import DEFAULT_STABLE_AFTER as DEFAULT_STABLE_AFTER
from ._outbox import OutboxState as OutboxState
from ._outbox import SavedPublish as SavedPublish
from ._protocol import Gap as Gap
from ._protocol import HandshakeOutcome as HandshakeOutcome
from ._protocol import Item as Item
from ._protocol import ServerEvent as ServerEvent
from ._protocol import Snapshot as Snapshot
from ._retry import MAX_HISTORY as MAX_HISTORY
from ._retry import Disconnect as Disconnect
from ._settings import DEFAULT_CLOSE_TIMEOUT as DEFAULT_CLOSE_TIMEOUT
from ._settings import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from ._settings import DEFAULT_PING_INTERVAL as DEFAULT_PING_INTERVAL
from ._settings import DEFAULT_PING_TIMEOUT as DEFAULT_PING_TIMEOUT
from ._state import Attempt as Attempt
from ._state import ConnectionState as ConnectionState
from ._state import DelaySource as DelaySource
from ._state import Transition as Transition
from ._subscriptions import Subscription as Subscription
from ._transport import Target as Target
from ._wire import Join as Join
from ._wire import Leave as Leave

__version__ = "0.1.0"

__all__ = [
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
    "HEALTHY_BELOW",
    "INCIDENT_ABOVE",
    "MAX_CLOSE_REASON_BYTES",
    "MIN_HEALTH_SAMPLES",
    "REGRESSION_ABOVE",
    "SHORT_HINT_LIMIT",
    "Attempt",
    "AttemptError",
    "Backoff",
    "ClientClosedError",
    "ConnectTimeout",
    "ConnectionState",
    "DelaySource",
    "Connection",
    "Disconnect",
    "FatalCloseError",
    "Gap",
    "HandshakeOutcome",
    "HandshakeRejectedError",
    "HealthLevel",
    "Item",
    "Jitter",
    "Join",
    "Leave",
    "MAX_HISTORY",
    "RetryPolicy",
    "OutboxState",
    "PingTimeout",
    "PublishRefused",
    "ReconnectError",
    "ReconnectFailed",
    "ReconnectStatistics",
    "ReconnectingWebSocket",
    "ResumeProtocolError",
    "ResumeTimeout",
    "SavedPublish",
    "ServerEvent",
    "Snapshot",
    "Subscription",
    "SubscriptionRefused",
    "TLSError",
    "Target",
    "Transition",
    "open_reconnecting_websocket",
]
