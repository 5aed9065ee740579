"""Every exception trio_reconnect raises, under one base class.

The tree::

    ReconnectError                    base of everything raised here
    ├── ReconnectFailed               the client stopped for good (state FAILED);
    │   │                             .history: the last streak's attempts (<= 100)
    │   ├── FatalCloseError           the server closed with a code a retry cannot
    │   │                             help (1008, 4xxx ...): .code, .reason
    │   └── HandshakeRejectedError    the server refused the opening handshake with a
    │                                 status a retry cannot help (401, 404 ...):
    │                                 .status_code, .headers, .body
    ├── AttemptError                  why one attempt failed; recorded in the attempt
    │   │                             history, never raised out of the client itself
    │   ├── ConnectTimeout            TCP + TLS + websocket handshake took too long
    │   ├── TLSError                  TLS failed (certificate verification ...); the
    │   │                             ssl error is ``__cause__``; never a timeout
    │   ├── ResumeTimeout             no ``ready`` within ``resume_timeout``
    │   ├── ResumeProtocolError       a malformed or out-of-order handshake frame
    │   └── PingTimeout               no pong within ``ping_timeout``: a dead link
    ├── SubscriptionRefused           the server refused a subscription: .channel, .code
    ├── PublishRefused                a final ``nack`` of a publish: .channel, .msg_id, .code
    └── ClientClosedError             the client was used after it was closed

Errors leave the public surface bare: ``except trio_reconnect.ReconnectFailed:``
works, no ``ExceptionGroup`` is ever raised out of
:func:`~trio_reconnect.open_reconnecting_websocket`, and ``trio.Cancelled`` and
``KeyboardInterrupt`` always pass through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._state import Attempt

__all__ = [
    "AttemptError",
    "ClientClosedError",
    "ConnectTimeout",
    "FatalCloseError",
    "HandshakeRejectedError",
    "PingTimeout",
    "PublishRefused",
    "ReconnectError",
    "ReconnectFailed",
    "ResumeProtocolError",
    "ResumeTimeout",
    "SubscriptionRefused",
    "TLSError",
]


class ReconnectError(Exception):
    """Base class of every exception raised by trio_reconnect."""


class ReconnectFailed(ReconnectError):
    """The client gave up; it will not reconnect again.

    Raised bare out of the ``async with`` block (whose body is cancelled, as a
    failing child task cancels a nursery's body) and from every pending or
    later ``send_message``/``get_message``. Items still buffered are discarded:
    persist the ids of the events you processed and pass the last one as
    ``last_event_id`` to resume from there later.

    Attributes:
        history: The attempts of the last failure streak, oldest first, each an
            :class:`~trio_reconnect.Attempt` (time, outcome, cause, delay);
            at most :data:`~trio_reconnect.MAX_HISTORY`, the most recent.
    """

    def __init__(self, message: str, history: Sequence[Attempt] = ()) -> None:
        super().__init__(message)
        self.history: tuple[Attempt, ...] = tuple(history)

    @property
    def last_error(self) -> BaseException | None:
        """The cause of the last failed attempt, if any."""
        for attempt in reversed(self.history):
            if attempt.error is not None:
                return attempt.error
        return None


class FatalCloseError(ReconnectFailed):
    """The server closed with a code on which reconnecting cannot help.

    Attributes:
        code: The close code (for example 1008 or 4001).
        reason: The close reason as the server sent it (may be ``None``).
    """

    def __init__(self, code: int, reason: str | None, history: Sequence[Attempt] = ()) -> None:
        super().__init__(f"server closed the connection with fatal code {code}", history)
        self.code = code
        self.reason = reason


class HandshakeRejectedError(ReconnectFailed):
    """The server refused the opening handshake with a non-retryable status.

    Attributes:
        status_code: The HTTP status (for example 401 or 404).
        headers: The response headers, as lower-cased ``(name, value)`` byte pairs.
        body: The response body, if any.
    """

    def __init__(
        self,
        status_code: int,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        history: Sequence[Attempt] = (),
    ) -> None:
        super().__init__(f"server refused the handshake with HTTP {status_code}", history)
        self.status_code = status_code
        self.headers = tuple(headers)
        self.body = body


class AttemptError(ReconnectError):
    """Why one connection attempt failed (kept in the attempt history)."""


class ConnectTimeout(AttemptError):
    """Opening TCP, TLS and the websocket handshake took longer than ``connect_timeout``."""


class TLSError(AttemptError):
    """The TLS handshake failed; the underlying :mod:`ssl` error is ``__cause__``."""


class ResumeTimeout(AttemptError):
    """The server did not send ``ready`` within ``resume_timeout``."""


class ResumeProtocolError(AttemptError):
    """The server sent a malformed or out-of-order handshake frame."""


class PingTimeout(AttemptError):
    """No pong arrived within ``ping_timeout``: the connection is dead or half-open."""


class ClientClosedError(ReconnectError):
    """The client was used after it was closed by the application."""


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside ``error``: itself, or every leaf of a (nested) exception group.

    The one flattening rule for every place that takes a nursery's group
    apart to find the error that explains it (the client's attempt, the
    Redis log, the command line).
    """
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


class SubscriptionRefused(ReconnectError):
    """The server refused a subscription (or ended it), PROTOCOL.md 4.2-4.3.

    Raised when entering ``ws.subscribe()``, or out of the subscription's
    iteration when it is refused at a later reconnect.

    Attributes:
        channel: The channel.
        code: ``forbidden``, ``invalid``, ``limit``, ``unavailable``, or the
            client's own ``unsupported`` (a version 1 server); a server's own
            string for an ``unsubscribed`` it sent with a code.
        reason: The server's explanation.
    """

    def __init__(self, channel: str, code: str, reason: str = "") -> None:
        self.channel = channel
        self.code = code
        self.reason = reason
        super().__init__(f"subscription to channel {channel!r} refused: {code}: {reason}")


class PublishRefused(ReconnectError):
    """The server did not apply a publish, for good (PROTOCOL.md 4.5).

    Raised by ``ws.publish()`` and ``sub.publish()`` for a final ``nack``,
    and at once for a publish on a version 1 server.

    Attributes:
        channel: The publish's channel.
        msg_id: Its msgId (``None``: refused before it took one).
        code: ``forbidden``, ``invalid``, ``too_large``, or the client's own
            ``unsupported`` (a version 1 server).
        reason: The server's explanation.
    """

    def __init__(self, channel: str, msg_id: str | None, code: str, reason: str = "") -> None:
        self.channel = channel
        self.msg_id = msg_id
        self.code = code
        self.reason = reason
        super().__init__(f"publish {msg_id} to channel {channel!r} refused: {code}: {reason}")
