"""Who a connection is, and what it may do: the authentication and authorization hooks.

``authenticate(request)`` runs at the websocket upgrade (before ``accept``)
and returns the connection's principal, or raises :class:`Refuse` to answer
the upgrade with an HTTP status instead. ``authorize(principal, channel,
action)`` runs on every ``subscribe`` (the resume's channel map included)
and every ``publish``. Either may be a plain function or an async one. No
``authenticate``: every connection has the anonymous principal ``None``; no
``authorize``: everything is allowed (decision 12).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import trio_websocket

__all__ = ["Action", "Authenticator", "Authorizer", "Refuse", "resolve"]

_T = TypeVar("_T")

#: What a principal asks to do with a channel.
Action = Literal["subscribe", "publish"]
#: ``authenticate(request) -> principal`` (or raises :class:`Refuse`); sync or async.
Authenticator = Callable[[trio_websocket.WebSocketRequest], Awaitable[Any] | Any]
#: ``authorize(principal, channel, action) -> bool``; sync or async.
Authorizer = Callable[[Any, str, Action], Awaitable[bool] | bool]


class Refuse(Exception):
    """Raised by ``authenticate`` to refuse the websocket upgrade with an HTTP status.

    Args:
        status: The HTTP status (401 or 403, usually).
        reason: The response body, for people reading logs (not for clients).
    """

    def __init__(self, status: int = 401, reason: str = "") -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


async def resolve(value: Awaitable[_T] | _T) -> _T:
    """``value``, awaited if a hook returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value
