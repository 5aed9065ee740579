"""The client's states and the records it keeps of each attempt and transition.

Pure values: the supervisor creates them, the application reads them (through
``on_transition``, ``ReconnectFailed.history`` and the logs).

State diagram::

    CONNECTING --> RESUMING --> OPEN
        |  ^           |          |
        v  |           v          v
    BACKING_OFF <------+----------+          any state --> CLOSED (application left)
        |                                    any state --> FAILED (gave up / fatal)
        +--> CONNECTING

With ``resume=False`` the client goes from CONNECTING straight to OPEN.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["Attempt", "ConnectionState", "DelaySource", "Transition"]


class ConnectionState(enum.Enum):
    """Where the client is in its connection lifecycle."""

    #: Opening TCP, TLS and the websocket handshake.
    CONNECTING = "connecting"
    #: Connected; the resume handshake runs and sends are still held at the gate.
    RESUMING = "resuming"
    #: ``ready`` arrived (or the websocket opened, with ``resume=False``); sends flow.
    OPEN = "open"
    #: Waiting before the next attempt.
    BACKING_OFF = "backing_off"
    #: Gave up, or the server said a retry cannot help. Terminal.
    FAILED = "failed"
    #: The application closed the client. Terminal.
    CLOSED = "closed"


class DelaySource(enum.Enum):
    """Why the client waits as long as it does before the next attempt."""

    #: The server's ``retryAfter`` or ``Retry-After`` hint, honoured (clamped).
    SERVER = "server"
    #: The client's own backoff policy.
    BACKOFF = "backoff"
    #: The hint was shorter than the backoff after repeated short hints; the
    #: client waits the longer of the two (the anti-hammering rule).
    SERVER_FLOORED = "server_floored"
    #: No wait: ``reconnect_now()`` was called.
    IMMEDIATE = "immediate"


@attrs.frozen
class Attempt:
    """One connection attempt that did not end in a stable connection.

    Attempt numbers, defined once: an attempt's number is 1 + the failed
    attempts before it in the current failure streak. A stable connection
    (up ``stable_after`` seconds) and a server-directed reconnect end the
    streak, so the attempt after them is number 1 again.

    Attributes:
        number: The attempt's number: 1 for the first attempt of a failure
            streak, then 2, 3 ... (the same number its transitions carry).
        started_at: ``trio.current_time()`` when the attempt began.
        ended_at: When it failed or its connection was lost.
        reached_ready: Whether the connection got as far as ``OPEN``.
        close_code: The websocket close code, if the connection was closed.
        close_reason: The close reason, as sent by the server.
        status_code: The HTTP status, if the handshake was refused.
        error: The cause (``ConnectTimeout``, ``TLSError``, ``OSError`` ...).
        delay: The wait chosen after this attempt (``None`` if there was none).
        delay_source: Where that wait came from.
    """

    number: int
    started_at: float
    ended_at: float
    reached_ready: bool = False
    close_code: int | None = None
    close_reason: str | None = None
    status_code: int | None = None
    error: BaseException | None = None
    delay: float | None = None
    delay_source: DelaySource | None = None


@attrs.frozen
class Transition:
    """One state change, as passed to ``on_transition`` and logged.

    Attributes:
        state: The new state.
        previous: The state before.
        time: ``trio.current_time()`` of the change.
        attempt: The number of the attempt this state belongs to (see
            :class:`Attempt`): ``CONNECTING``, ``RESUMING`` and ``OPEN`` carry
            the number of the attempt being made, ``BACKING_OFF`` the number
            of the attempt it waits for, ``FAILED`` and ``CLOSED`` that of
            the last attempt.
        delay: For ``BACKING_OFF``, how long the client will wait.
        delay_source: For ``BACKING_OFF``, why that long.
        close_code: The close code that ended the previous connection, if any.
        close_reason: Its close reason.
        status_code: The HTTP status of a refused handshake, if any.
        error: The error that caused the change, if any.
    """

    state: ConnectionState
    previous: ConnectionState
    time: float
    attempt: int = 0
    delay: float | None = None
    delay_source: DelaySource | None = None
    close_code: int | None = None
    close_reason: str | None = None
    status_code: int | None = None
    error: BaseException | None = None
