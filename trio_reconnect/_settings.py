"""Websocket settings that the client and the server share, defined once.

Both drivers (:mod:`trio_reconnect._client` and
:mod:`trio_reconnect.server`) run a trio-websocket connection and give it the
same limits by default; a reader looks here for either side's value. Pure
values, no imports.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_CLOSE_TIMEOUT", "DEFAULT_MAX_MESSAGE_SIZE"]

#: Seconds the closing handshake may take: the client's when the application
#: leaves, the server's when it waits for a client to answer its close frame.
DEFAULT_CLOSE_TIMEOUT: Final = 5.0
#: Largest message accepted from the peer, as measured by ``len()`` (bytes or
#: characters); a larger one is closed with 1009. trio-websocket's default.
DEFAULT_MAX_MESSAGE_SIZE: Final = 2**20
