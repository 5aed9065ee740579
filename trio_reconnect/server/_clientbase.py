"""What a server connection is, seen from outside: its states, settings, snapshot.

The values that :class:`~trio_reconnect.server.ConnectedClient`
(:mod:`trio_reconnect.server._connection`) shares with the node that runs it,
and the server's names for the close codes (named once in
:mod:`trio_reconnect._hints`).

Close codes
-----------

======  ==============================================================  ==========
code    when                                                            client
======  ==============================================================  ==========
1002    the first frame is text but not a resume frame                  gives up
1003    the first frame is binary                                       gives up
1009    a frame is over ``max_message_size`` (sent by trio-websocket)   gives up
1011    ``on_message`` raised; the reason carries a retry hint          reconnects
1012    ``ReconnectServer.restart()``, ``ReconnectServer.shutdown()``,
        a discontinuity in the log; spread hint                         reconnects
1001    ``ReconnectServer.drain()`` (default code), spread hint         reconnects
1013    too slow (queue full), no resume frame in time, a handshake's
        log read not done in time ("busy"), or the log is
        unavailable (past ``outage_limit``); retry hint                 reconnects
======  ==============================================================  ==========

A slow client and a silent one get 1013 rather than 1008 because a retry can
help both: the slow client resumes from its ``lastEventId`` and a stalled
network may recover, while 1008 would make a trio_reconnect client give up
for good. A wrong first frame, in contrast, means the peer does not speak the
protocol, and retrying cannot change that. A client that does not answer a
ping within ``ping_timeout`` is dropped without a close frame (nobody would
read it).
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from .._hints import (
    ABNORMAL_CLOSURE,
    GOING_AWAY,
    INTERNAL_ERROR,
    NORMAL_CLOSURE,
    PROTOCOL_ERROR,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
    UNSUPPORTED_DATA,
)
from .._protocol import HandshakeOutcome

__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "ClientState",
    "ClientStatistics",
    "ConnectionSettings",
]

# The close codes, named once in :mod:`trio_reconnect._hints` (the server's names for them).
#: A normal close (the client's or ours, with nothing to say).
CLOSE_NORMAL: Final = NORMAL_CLOSURE
#: :meth:`~trio_reconnect.server.ReconnectServer.drain`'s default code.
CLOSE_GOING_AWAY: Final = GOING_AWAY
#: The first frame was text, but not a resume frame.
CLOSE_PROTOCOL_ERROR: Final = PROTOCOL_ERROR
#: The first frame was binary.
CLOSE_UNSUPPORTED_DATA: Final = UNSUPPORTED_DATA
#: The application's ``on_message`` raised (or the connection failed inside).
CLOSE_INTERNAL_ERROR: Final = INTERNAL_ERROR
#: A restart, a graceful stop, or a discontinuity in the log.
CLOSE_SERVICE_RESTART: Final = SERVICE_RESTART
#: Too slow to keep up with the live events, no resume frame in time, or the log is down.
CLOSE_TRY_AGAIN_LATER: Final = TRY_AGAIN_LATER
#: What a connection aborted without a close frame is recorded with (RFC 6455: never sent).
CLOSE_ABNORMAL: Final = ABNORMAL_CLOSURE


class ClientState(enum.Enum):
    """Where a connected client is in its lifetime."""

    #: Accepted; waiting for or answering its resume frame.
    HANDSHAKING = "handshaking"
    #: ``ready`` was sent; live events and messages flow.
    READY = "ready"
    #: The server or the client started closing the connection.
    CLOSING = "closing"
    #: Gone.
    CLOSED = "closed"


@attrs.frozen
class ClientStatistics:
    """A snapshot of one client's connection.

    Attributes:
        id: The server-assigned client number (1, 2, ...).
        remote: The peer's address, as trio-websocket reports it.
        path: The requested resource path.
        state: Where the client is in its lifetime.
        connected_at: ``trio.current_time()`` when it was accepted.
        last_event_id: The ``lastEventId`` of its resume frame.
        outcome: How its handshake ended (``None`` until ``ready``).
        replayed: Events sent to it from the log during the handshake.
        queued: Frames waiting in its outgoing queue.
        events_sent: Live events sent to it after ``ready``.
        messages_sent: Application messages sent to it after ``ready``.
        messages_received: Messages it sent after ``ready``.
        close_code: The code the connection was closed with, if known.
        close_reason: The reason it was closed with, if any.
    """

    id: int
    remote: str
    path: str
    state: ClientState
    connected_at: float
    last_event_id: str | None
    outcome: HandshakeOutcome | None
    replayed: int
    queued: int
    events_sent: int
    messages_sent: int
    messages_received: int
    close_code: int | None
    close_reason: str | None


@attrs.frozen
class ConnectionSettings:
    """The per-connection settings a server hands each of its clients.

    Attributes:
        queue_size: Frames queued per client.
        close_timeout: Seconds to wait for a client to answer a close frame
            (and for a send in progress to finish).
        handshake_timeout: Seconds the client has for its resume frame.
        ping_interval: Seconds between pings of a ready client (``None``: no pings).
        ping_timeout: Seconds a pong may take before the client counts as gone
            (unless the application held the client's read loop up meanwhile).
    """

    queue_size: int
    close_timeout: float
    handshake_timeout: float
    ping_interval: float | None
    ping_timeout: float
