"""The server companion: a websocket server speaking the reconnect protocol.

A bounded replay log, a spread planner for mass disconnects and admission
control, and :class:`ReconnectServer`, the trio driver::

    log = ReplayLog(max_events=10_000)
    server = ReconnectServer(log, snapshot=None, max_replay=1_000)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(server.serve, "127.0.0.1", 0)
        event_id = await server.publish({"price": 42})
        await server.restart()
"""

from __future__ import annotations

from ._log import DEFAULT_MAX_EVENTS as DEFAULT_MAX_EVENTS
from ._log import EventLog as EventLog
from ._log import LoggedEvent as LoggedEvent
from ._log import ReplayLog as ReplayLog
from ._server import CLOSE_INTERNAL_ERROR as CLOSE_INTERNAL_ERROR
from ._server import CLOSE_PROTOCOL_ERROR as CLOSE_PROTOCOL_ERROR
from ._server import CLOSE_TRY_AGAIN_LATER as CLOSE_TRY_AGAIN_LATER
from ._server import CLOSE_UNSUPPORTED_DATA as CLOSE_UNSUPPORTED_DATA
from ._server import DEFAULT_CLOSE_TIMEOUT as DEFAULT_CLOSE_TIMEOUT
from ._server import DEFAULT_HANDSHAKE_TIMEOUT as DEFAULT_HANDSHAKE_TIMEOUT
from ._server import DEFAULT_INCOMING_QUEUE_SIZE as DEFAULT_INCOMING_QUEUE_SIZE
from ._server import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from ._server import DEFAULT_MAX_REPLAY as DEFAULT_MAX_REPLAY
from ._server import DEFAULT_QUEUE_SIZE as DEFAULT_QUEUE_SIZE
from ._server import ClientState as ClientState
from ._server import ClientStatistics as ClientStatistics
from ._server import ConnectedClient as ConnectedClient
from ._server import MessageHandler as MessageHandler
from ._server import ReconnectServer as ReconnectServer
from ._server import ServerStatistics as ServerStatistics
from ._server import SnapshotProvider as SnapshotProvider
from ._spread import DEFAULT_BASE as DEFAULT_BASE
from ._spread import DEFAULT_MIN_WINDOW as DEFAULT_MIN_WINDOW
from ._spread import DEFAULT_RATE as DEFAULT_RATE
from ._spread import AdmissionControl as AdmissionControl
from ._spread import SpreadPolicy as SpreadPolicy
from ._spread import distinct_milliseconds as distinct_milliseconds
from ._spread import plan_spread as plan_spread

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "DEFAULT_BASE",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_INCOMING_QUEUE_SIZE",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_REPLAY",
    "DEFAULT_MIN_WINDOW",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_RATE",
    "AdmissionControl",
    "ClientState",
    "ClientStatistics",
    "ConnectedClient",
    "EventLog",
    "LoggedEvent",
    "MessageHandler",
    "ReconnectServer",
    "ReplayLog",
    "ServerStatistics",
    "SnapshotProvider",
    "SpreadPolicy",
    "distinct_milliseconds",
    "plan_spread",
]
