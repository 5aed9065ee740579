"""The client's options: one frozen value, checked once, with named defaults.

:func:`~trio_reconnect.open_reconnecting_websocket` and
:class:`~trio_reconnect.ReconnectingWebSocket` keep their full keyword-only
signatures (for mypy, IDEs and the docs) and do nothing with their keywords
but build a :class:`ClientOptions`. The defaults are the module constants
below (the docs cite them), and every check is an attrs validator from
:mod:`._validators`, so each rule is stated once; ``tests/client`` checks
that both signatures list exactly these fields with these defaults.
"""

from __future__ import annotations

import random as _random
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias, TypeVar

import attrs

from ._backoff import RetryPolicy
from ._handshake import OnConnect
from ._outbox import DEFAULT_OUTBOX_BYTES, OutboxState
from ._retry import Disconnect
from ._settings import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
)
from ._state import Transition
from ._transport import OpenStream, open_tcp_stream, parse_url
from ._validators import (
    optional_positive_int,
    optional_positive_number,
    positive_int,
    positive_number,
)
from ._wire import client_id_problem

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_REPLAY_RECEIVED",
    "DEFAULT_MAX_SERVER_DELAY",
    "DEFAULT_OUTBOX_BYTES",
    "DEFAULT_RESUME_TIMEOUT",
    "DEFAULT_STABLE_AFTER",
    "ClientOptions",
    "Factory",
    "HeaderPairs",
]

#: Consecutive failed attempts before the client gives up (``None``: never).
DEFAULT_MAX_ATTEMPTS: Final = 20
#: Seconds a connection must stay ready before the backoff forgets the streak.
DEFAULT_STABLE_AFTER: Final = 10.0
#: Seconds for TCP + TLS + the websocket handshake.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: Seconds from the websocket opening to the server's ``ready``.
DEFAULT_RESUME_TIMEOUT: Final = 10.0
#: The clamp for the server's retry hints, seconds.
DEFAULT_MAX_SERVER_DELAY: Final = 300.0
#: Items buffered for the application before the reader waits for it.
DEFAULT_MAX_QUEUE: Final = 64
#: How many recent event ids are remembered to drop duplicates.
DEFAULT_DEDUPE_WINDOW: Final = 1024
#: Most events the client accepts in one handshake's replay before the
#: attempt fails (the events already received are kept, so the next attempt
#: resumes after them). A guard against a runaway server, ten times the
#: server's default replay limit (``trio_reconnect.server.DEFAULT_MAX_REPLAY``,
#: a policy: how much to replay before a snapshot), hence the other name.
DEFAULT_MAX_REPLAY_RECEIVED: Final = 10_000

T = TypeVar("T")
#: A value, or a sync or async callable returning one, called before every attempt.
Factory: TypeAlias = T | Callable[[], T | Awaitable[T]]
HeaderPairs: TypeAlias = Mapping[str, str] | Sequence[tuple[str | bytes, str | bytes]] | None


def _check_url(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str):
        parse_url(value)  # a bad URL fails here, not on every attempt
    elif not callable(value):
        raise TypeError(f"url must be a string or a callable, got {type(value).__name__}")


def _stream_opener(value: OpenStream | None) -> OpenStream:
    return open_tcp_stream if value is None else value


def _strings(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(value)


def _check_client_id(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        problem = client_id_problem(value)
        if problem is not None:
            raise ValueError(f"client_id: {problem}")


def _check_outbox(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, OutboxState):
        raise TypeError(f"outbox must be an OutboxState, got {type(value).__name__}")
    if instance.client_id is not None and instance.client_id != value.client_id:
        raise ValueError(
            f"outbox: its publishes belong to clientId {value.client_id!r}, "
            f"not client_id={instance.client_id!r}"
        )


@attrs.frozen(kw_only=True)
class ClientOptions:
    """Every option of one client, checked (documented on ``open_reconnecting_websocket``).

    Raises:
        ValueError: for an option out of range, or a bad URL.
        TypeError: for a URL that is neither a string nor a callable.
    """

    url: Factory[str] = attrs.field(validator=_check_url)
    backoff: RetryPolicy | None = None
    server_hints: bool = attrs.field(default=True, converter=bool)
    max_attempts: int | None = attrs.field(
        default=DEFAULT_MAX_ATTEMPTS, validator=optional_positive_int
    )
    give_up_after: float | None = attrs.field(default=None, validator=optional_positive_number)
    stable_after: float = attrs.field(default=DEFAULT_STABLE_AFTER, validator=positive_number)
    resume: bool = True
    last_event_id: str | None = None
    resume_timeout: float = attrs.field(default=DEFAULT_RESUME_TIMEOUT, validator=positive_number)
    connect_timeout: float = attrs.field(default=DEFAULT_CONNECT_TIMEOUT, validator=positive_number)
    close_timeout: float = attrs.field(default=DEFAULT_CLOSE_TIMEOUT, validator=positive_number)
    ping_interval: float | None = attrs.field(
        default=DEFAULT_PING_INTERVAL, validator=optional_positive_number
    )
    ping_timeout: float = attrs.field(default=DEFAULT_PING_TIMEOUT, validator=positive_number)
    max_server_delay: float = attrs.field(
        default=DEFAULT_MAX_SERVER_DELAY, validator=positive_number
    )
    max_queue: int = attrs.field(default=DEFAULT_MAX_QUEUE, validator=positive_int)
    max_message_size: int = attrs.field(default=DEFAULT_MAX_MESSAGE_SIZE, validator=positive_int)
    max_replay: int = attrs.field(default=DEFAULT_MAX_REPLAY_RECEIVED, validator=positive_int)
    dedupe_window: int = attrs.field(default=DEFAULT_DEDUPE_WINDOW, validator=positive_int)
    headers: Factory[HeaderPairs] = None
    ssl_context: Factory[ssl.SSLContext | None] = None
    should_reconnect: Callable[[Disconnect], bool] | None = None
    random: _random.Random | None = None
    #: ``None`` in the signatures: TCP, plus TLS for ``wss://``.
    open_stream: OpenStream = attrs.field(default=None, converter=_stream_opener)
    on_transition: Callable[[Transition], None] | None = None
    on_connect: OnConnect | None = None
    subprotocols: Sequence[str] = attrs.field(default=(), converter=_strings)
    #: ``None``: 128 random bits, hex (``_wire.new_client_id``).
    client_id: str | None = attrs.field(default=None, validator=_check_client_id)
    outbox_bytes: int = attrs.field(default=DEFAULT_OUTBOX_BYTES, validator=positive_int)
    outbox: OutboxState | None = attrs.field(default=None, validator=_check_outbox)

    @classmethod
    def of(cls, namespace: Mapping[str, Any]) -> ClientOptions:
        """The options named in ``namespace`` (an entry point's ``locals()``), checked.

        Both entry points list every option as a keyword of their own (typed,
        documented, visible to IDEs) and hand them over with this one call;
        ``tests/client/test_options.py`` keeps their signatures equal to the
        fields, so a missing keyword is a ``KeyError`` in the tests first.
        """
        return cls(**{field.name: namespace[field.name] for field in attrs.fields(cls)})
