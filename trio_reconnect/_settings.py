"""Websocket settings that the client and the server share, defined once.

Both drivers (:mod:`trio_reconnect._client` and
:mod:`trio_reconnect.server`) run a trio-websocket connection and give it the
same limits by default; a reader looks here for either side's value. Pure
values and one pure rule (when a missed pong proves nothing), no imports.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "missed_pong_is_backpressure",
]

#: Seconds the closing handshake may take: the client's when the application
#: leaves, the server's when it waits for a client to answer its close frame.
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
#: Largest message accepted from the peer, as measured by ``len()`` (bytes or
#: characters); a larger one is closed with 1009. trio-websocket's default.
DEFAULT_MAX_MESSAGE_SIZE: Final = 2**20
#: Seconds between the pings that find a half-open connection (either side;
#: ``None`` in an option turns them off).
DEFAULT_PING_INTERVAL: Final = 20.0
#: Seconds a ping may wait for its pong before the connection counts as dead.
DEFAULT_PING_TIMEOUT: Final = 20.0


def missed_pong_is_backpressure(*, held_now: bool, held_since_ping: bool) -> bool:
    """Whether a pong that did not come in time proves nothing (the rule, for both sides).

    trio-websocket's reader handles no frame, pongs included, while its
    message queue is full, that is while the application holds the reader
    up. So a pong missed while our side held the reader (``held_now``: it is
    held at this moment; ``held_since_ping``: it was held at some point
    since the ping was sent) is backpressure from the application, not a
    dead peer: wait another round. Otherwise the connection is half-open.
    """
    return held_now or held_since_ping
