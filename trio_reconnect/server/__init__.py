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

from .._settings import DEFAULT_CLOSE_TIMEOUT as DEFAULT_CLOSE_TIMEOUT
from .._settings import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from .._settings import DEFAULT_PING_INTERVAL as DEFAULT_PING_INTERVAL
from .._settings import DEFAULT_PING_TIMEOUT as DEFAULT_PING_TIMEOUT
from ._auth import Refuse as Refuse
from ._chananswer import ChannelSnapshotProvider as ChannelSnapshotProvider
from ._channelbase import ChannelEvent as ChannelEvent
from ._channelbase import ChannelRead as ChannelRead
from ._channelbase import ChannelRequest as ChannelRequest
from ._channelbase import ChannelStore as ChannelStore
from ._channelbase import NotificationsLost as NotificationsLost
from ._channelbase import PublishRequest as PublishRequest
from ._channelbase import PublishResult as PublishResult
from ._channels import DEFAULT_CHANNEL_MAX_LEN as DEFAULT_CHANNEL_MAX_LEN
from ._channels import DEFAULT_LISTENER_BUFFER as DEFAULT_LISTENER_BUFFER
from ._channels import MemoryChannelStore as MemoryChannelStore
from ._clientbase import CLOSE_INTERNAL_ERROR as CLOSE_INTERNAL_ERROR
from ._clientbase import CLOSE_PROTOCOL_ERROR as CLOSE_PROTOCOL_ERROR
from ._clientbase import CLOSE_TRY_AGAIN_LATER as CLOSE_TRY_AGAIN_LATER
from ._clientbase import CLOSE_UNSUPPORTED_DATA as CLOSE_UNSUPPORTED_DATA
from ._clientbase import ClientState as ClientState
from ._clientbase import ClientStatistics as ClientStatistics
from ._cluster import ClusterDrainPlan as ClusterDrainPlan
from ._cluster import ClusterRegistry as ClusterRegistry
from ._cluster import NodeStatus as NodeStatus
from ._cluster import plan_cluster_drain as plan_cluster_drain
from ._connection import ConnectedClient as ConnectedClient
from ._defaults import DEFAULT_ANNOUNCE_INTERVAL as DEFAULT_ANNOUNCE_INTERVAL
from ._defaults import DEFAULT_ANNOUNCE_TTL as DEFAULT_ANNOUNCE_TTL
from ._defaults import DEFAULT_DEDUPE_TTL as DEFAULT_DEDUPE_TTL
from ._defaults import DEFAULT_DRAIN_TIMEOUT as DEFAULT_DRAIN_TIMEOUT
from ._defaults import DEFAULT_HANDSHAKE_TIMEOUT as DEFAULT_HANDSHAKE_TIMEOUT
from ._defaults import DEFAULT_INCOMING_QUEUE_SIZE as DEFAULT_INCOMING_QUEUE_SIZE
from ._defaults import DEFAULT_MAX_REPLAY as DEFAULT_MAX_REPLAY
from ._defaults import DEFAULT_MAX_SUBSCRIPTIONS as DEFAULT_MAX_SUBSCRIPTIONS
from ._defaults import DEFAULT_OUTAGE_LIMIT as DEFAULT_OUTAGE_LIMIT
from ._defaults import DEFAULT_OUTAGE_RETRY_AFTER as DEFAULT_OUTAGE_RETRY_AFTER
from ._defaults import DEFAULT_QUEUE_SIZE as DEFAULT_QUEUE_SIZE
from ._defaults import DEFAULT_STOP_SIGNALS as DEFAULT_STOP_SIGNALS
from ._log import DEFAULT_MAX_EVENTS as DEFAULT_MAX_EVENTS
from ._log import ReplayLog as ReplayLog
from ._logbase import EventLog as EventLog
from ._logbase import EventLogError as EventLogError
from ._logbase import LogDiscontinuityError as LogDiscontinuityError
from ._logbase import LoggedEvent as LoggedEvent
from ._logbase import LogRead as LogRead
from ._logbase import LogUnavailableError as LogUnavailableError
from ._logbase import clock_start_id as clock_start_id
from ._logbase import parse_event_id as parse_event_id
from ._members import PresenceInfo as PresenceInfo
from ._node import MessageHandler as MessageHandler
from ._presence_memory import MemoryPresenceStore as MemoryPresenceStore
from ._presencebase import MemberChange as MemberChange
from ._presencebase import MemberList as MemberList
from ._presencebase import PresenceStore as PresenceStore
from ._registry import MemoryRegistry as MemoryRegistry
from ._resume import SnapshotProvider as SnapshotProvider
from ._server import DrainSummary as DrainSummary
from ._server import ReconnectServer as ReconnectServer
from ._server import ServerStatistics as ServerStatistics
from ._spread import DEFAULT_BASE as DEFAULT_BASE
from ._spread import DEFAULT_MIN_WINDOW as DEFAULT_MIN_WINDOW
from ._spread import DEFAULT_RATE as DEFAULT_RATE
from ._spread import AdmissionControl as AdmissionControl
from ._spread import SpreadPolicy as SpreadPolicy
from ._spread import distinct_milliseconds as distinct_milliseconds
from ._spread import plan_spread as plan_spread
from ._sweeper import DEFAULT_PRESENCE_GRACE as DEFAULT_PRESENCE_GRACE

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "DEFAULT_ANNOUNCE_INTERVAL",
    "DEFAULT_ANNOUNCE_TTL",
    "DEFAULT_BASE",
    "DEFAULT_CHANNEL_MAX_LEN",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_INCOMING_QUEUE_SIZE",
    "DEFAULT_LISTENER_BUFFER",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_REPLAY",
    "DEFAULT_DEDUPE_TTL",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_MIN_WINDOW",
    "DEFAULT_OUTAGE_LIMIT",
    "DEFAULT_OUTAGE_RETRY_AFTER",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_PRESENCE_GRACE",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_RATE",
    "DEFAULT_STOP_SIGNALS",
    "AdmissionControl",
    "ChannelEvent",
    "ChannelRead",
    "ChannelRequest",
    "ChannelSnapshotProvider",
    "ChannelStore",
    "ClientState",
    "ClientStatistics",
    "ClusterDrainPlan",
    "ClusterRegistry",
    "ConnectedClient",
    "DrainSummary",
    "EventLog",
    "EventLogError",
    "LogDiscontinuityError",
    "LogRead",
    "LogUnavailableError",
    "LoggedEvent",
    "MemberChange",
    "MemberList",
    "MemoryChannelStore",
    "MemoryPresenceStore",
    "MemoryRegistry",
    "MessageHandler",
    "NodeStatus",
    "NotificationsLost",
    "PublishRequest",
    "PublishResult",
    "PresenceInfo",
    "PresenceStore",
    "ReconnectServer",
    "Refuse",
    "ReplayLog",
    "ServerStatistics",
    "SnapshotProvider",
    "SpreadPolicy",
    "clock_start_id",
    "distinct_milliseconds",
    "parse_event_id",
    "plan_cluster_drain",
    "plan_spread",
]
