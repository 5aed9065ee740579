"""The live notification stream of the Redis channel store: one socket, a RESP2 reader of our own.

Why not coredis's ``PubSub``
----------------------------

Measured under trio (docs/explanation/channels-redis.md): coredis 6.9's
PubSub delivered a median of about 11 k messages/s (two anyio memory
streams and a cancel scope per message; its internal stream is unbounded),
and its default retry policy reconnects *and resubscribes silently* on a
connection error, so messages published meanwhile are lost with no signal.
This reader owns its socket: it connects (``redis://``, ``rediss://`` through
:class:`trio.SSLStream`, ``unix://``), sends ``AUTH`` and ``SELECT`` from the
URL (the password is never logged), one ``SUBSCRIBE`` of every shard
channel, waits for every confirmation, and then parses each chunk's complete
frames in one synchronous step (:mod:`._resp`).

Loss is loud
------------

Any error or end of the socket ends the stream with
:class:`~trio_reconnect.server.NotificationsLost`: Redis restarted, the
connection was killed (``CLIENT KILL TYPE pubsub``, or Redis's
``client-output-buffer-limit pubsub`` for a node that reads too slowly), a
frame that is not RESP2. Nothing reconnects behind the caller's back: the
node opens a new stream and then repairs its channels. A link that went
half-open (the peer vanished without closing) is found by a ``PING`` after
``ping_interval`` seconds of silence: no answer within ``timeout``, a loss.

Buffering is bounded: the reader has no task of its own and reads the
socket only when the node asks for the next batch, so a slow node leaves
the backlog in the kernel and in Redis's output buffer (whose limit
disconnects it: a loss, reported), and the parser holds at most one
partial frame (``max_pending``). A read that finds more than
``max_backlog`` notifications waiting says the node is that far behind: it
gives the stream up (a loss) and repairs from the store, which is exact,
rather than work through the backlog.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

from .._channelbase import ChannelEvent, NotificationsLost
from .._logbase import EventLogError, LogUnavailableError
from .._presencebase import MemberChange
from ._channel_plan import event_channel, parse_notification
from ._link import Target as _Target
from ._link import connect as _connect
from ._link import login_commands
from ._link import target_of as _target
from ._link import where as _where
from ._resp import RespError, RespParser, RespValue, encode_command

__all__ = ["RECEIVE_SIZE", "NotificationStream", "listen_notifications"]

_logger = logging.getLogger("trio_reconnect.server")

#: Whether the node takes a channel's events (:meth:`~._channelbase.ChannelStore.listen`).
Wanted = Callable[[str], bool]

#: Bytes asked of the socket per read.
RECEIVE_SIZE: Final = 256 * 1024
_PING: Final = encode_command("PING")
#: What a broken socket raises.
_BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def _hello(target: _Target, names: Sequence[str]) -> tuple[bytes, int]:
    """The handshake's commands, and how many ``+OK`` replies come before the confirmations."""
    commands = login_commands(target)
    commands.append(encode_command("SUBSCRIBE", *names))
    return b"".join(commands), len(commands) - 1


def _events_of(
    values: Sequence[RespValue], wanted: Wanted | None = None
) -> tuple[list[ChannelEvent | MemberChange], int]:
    """The events among parsed pushes, and how many notifications there were.

    Subscribe confirmations and other kinds are skipped, and so are the
    events of a channel ``wanted`` answers ``False`` for, before their data
    is decoded (most of a notification's cost).

    Raises:
        RespError: for an error reply.
        EventLogError: for a malformed event notification.
    """
    events: list[ChannelEvent | MemberChange] = []
    count = 0
    for value in values:
        if isinstance(value, RespError):
            raise value
        if isinstance(value, list) and len(value) == 3 and value[0] == b"message":
            payload = value[2]
            if isinstance(payload, bytes):
                count += 1
                if wanted is not None:
                    channel = event_channel(payload)
                    if channel is not None and not wanted(channel):
                        continue
                event = parse_notification(payload)
                if event is not None:
                    events.append(event)
    return events, count


class _Lost(Exception):
    """Why the stream is over."""


@attrs.define(eq=False)
class NotificationStream:
    """Batches of events from the shard channels; raises :class:`NotificationsLost` when it ends."""

    _stream: trio.abc.Stream
    _parser: RespParser
    _where: str
    #: Most events one read may find waiting before the stream is given up.
    _max_backlog: int
    #: Seconds of silence before a PING probes the link.
    _ping_interval: float
    #: Seconds the PING's answer may take.
    _timeout: float
    _ready: list[ChannelEvent | MemberChange] = attrs.field(factory=list)
    #: Asked with each event's channel before it is decoded (``None``: every channel).
    _wanted: Wanted | None = None
    _lost: str | None = attrs.field(default=None, init=False)

    def __aiter__(self) -> NotificationStream:
        return self

    async def __anext__(self) -> Sequence[ChannelEvent | MemberChange]:
        if self._ready:
            batch, self._ready = self._ready, []
            return batch
        while self._lost is None:
            try:
                batch = await self._next_batch()
            except _Lost as exc:
                self._lose(str(exc))
                break
            if batch:
                return batch
        raise NotificationsLost(f"Redis at {self._where}: notifications lost: {self._lost}")

    async def _next_batch(self) -> list[ChannelEvent | MemberChange]:
        chunk = await self._receive()
        try:
            batch, count = _events_of(self._parser.feed(chunk), self._wanted)
        except (RespError, EventLogError) as exc:
            raise _Lost(str(exc)) from None
        if count > self._max_backlog:
            raise _Lost(f"more than {self._max_backlog} notifications were waiting")
        return batch

    async def _receive(self) -> bytes | bytearray:
        # Only a probe finds a half-open link (a peer that vanished without a
        # FIN): after ``ping_interval`` of silence, a PING; no byte within
        # ``timeout`` after it, a loss. The answer is a push the parser skips.
        probed = False
        while True:
            with trio.move_on_after(self._timeout if probed else self._ping_interval):
                try:
                    chunk = await self._stream.receive_some(RECEIVE_SIZE)
                except _BROKEN as exc:
                    raise _Lost(f"the connection failed: {exc!r}") from None
                if not chunk:
                    raise _Lost("Redis closed the connection")
                return chunk
            if probed:
                raise _Lost(f"no answer to a PING within {self._timeout:g} s")
            # Shielded: a PING cut halfway would corrupt the stream.
            with trio.move_on_after(self._timeout, shield=True):
                try:
                    await self._stream.send_all(_PING)
                except _BROKEN as exc:
                    raise _Lost(f"the connection failed: {exc!r}") from None
            probed = True

    def _lose(self, why: str) -> None:
        self._lost = why
        _logger.info("redis notifications at %s lost: %s", self._where, why)


async def _subscribe(
    stream: trio.abc.Stream, parser: RespParser, target: _Target, names: Sequence[str]
) -> list[RespValue]:
    """Send the handshake; return what came after the last confirmation."""
    hello, oks = _hello(target, names)
    await stream.send_all(hello)
    values: list[RespValue] = []
    answered = 0
    while answered < oks + len(names):
        chunk = await stream.receive_some(RECEIVE_SIZE)
        if not chunk:
            raise LogUnavailableError(f"Redis at {_where(target)} closed the connection")
        values += parser.feed(chunk)
        while values and answered < oks + len(names):
            value = values.pop(0)
            if isinstance(value, RespError):
                raise LogUnavailableError(f"Redis at {_where(target)} refused: {value}")
            answered += 1
    return values


@asynccontextmanager
async def listen_notifications(
    url: str,
    names: Sequence[str],
    *,
    timeout: float,  # noqa: ASYNC109
    max_backlog: int,
    max_pending: int,
    ping_interval: float,
    wanted: Wanted | None = None,
) -> AsyncIterator[NotificationStream]:
    """Subscribe to ``names`` and yield the live stream once every subscription is confirmed.

    ``wanted``: the channels whose events the stream decodes (``None``: all).

    Raises:
        LogUnavailableError: Redis could not be reached, refused the
            handshake, or did not confirm within ``timeout`` seconds.

    The stream sends a PING after ``ping_interval`` seconds without a byte,
    and is lost when nothing answers within ``timeout``.
    """
    target = _target(url)
    parser = RespParser(max_pending)
    stream: trio.abc.Stream | None = None
    try:
        with trio.move_on_after(timeout) as scope:
            try:
                stream = await _connect(target)
                rest = await _subscribe(stream, parser, target, names)
            except (OSError, trio.BrokenResourceError, RespError) as exc:
                raise LogUnavailableError(f"Redis at {_where(target)}: listen: {exc}") from exc
        if scope.cancelled_caught or stream is None:
            raise LogUnavailableError(
                f"Redis at {_where(target)}: listen: no answer within {timeout:g} s"
            )
        try:
            ready, _ = _events_of(rest, wanted)
        except (RespError, EventLogError) as exc:
            raise LogUnavailableError(f"Redis at {_where(target)}: listen: {exc}") from exc
        yield NotificationStream(
            stream, parser, _where(target), max_backlog, ping_interval, timeout, ready, wanted
        )
    finally:
        if stream is not None:
            await trio.aclose_forcefully(stream)
