"""The channel store on Redis (:class:`RedisChannelStore`): a stream per channel, one live path.

How it sits on Redis
--------------------

Each channel has a hash (``seq``, ``first``) and a stream whose entry ``n-0``
is event ``n``, both under the channel's hash tag (:mod:`._channel_plan`),
so they share a slot. Ids follow the log's rules channel by channel:
consecutive integers from the clock id at the channel's first read or
append, so a channel whose data Redis lost restarts above every id it
issued before, and an old position reads as not held.

* :meth:`RedisChannelStore.read` is **one EVALSHA for every request**: the
  script sets missing starting points, and per channel answers the events
  after the asked id when the gap is held (``first - 1 <= a <= seq``, at
  most ``max_replay``, and the XRANGE returns exactly ``seq - a`` entries
  from ``a + 1``), else "not held". It splits into further calls only when
  the replayed entries of one call would pass ``read_budget``, so that no
  script holds Redis long; with nothing missed, 100 channels are one call.
  The positions go as one string and the answers come back flat (one status
  string, then the replayed entries): a resume of 100 channels that missed
  nothing costs the node about 0.45 ms (was 1.1 ms through coredis, with
  nested replies). Each call has a link of its own (a :class:`~._link.LinkPool`,
  at most ``max_in_flight``), as the publishes do.
* :meth:`RedisChannelStore.append` is one step of a script: set-if-missing,
  XADD with the explicit id and ``MAXLEN ~ channel_max_len``, store ``seq``,
  and PUBLISH the notification to the channel's shard ``P:n:<k>``. An event
  and its notification exist together or not at all. Appends that arrive
  while a call is in flight share the next call (group commit,
  :mod:`._appends`), each with its own outcome. Never retried (coredis runs
  with ``NoRetryPolicy``): an append whose connection failed raises
  :class:`~trio_reconnect.server.LogUnavailableError`, stored or not.
* :meth:`RedisChannelStore.publish` is one script for a batch of acknowledged
  publishes (PROTOCOL 4.5): per item, in order and under ``pcall``, the
  dedupe record ``P:{T}:d:<key>`` answers a duplicate with its first id, or
  the append runs as above and sets the record (``PX dedupe_ttl``). The
  first item that fails ends the script; the results of the prefix that ran
  come back. Never retried: a connection error leaves the outcome unknown,
  the node answers ``unavailable`` and the re-send finds the record. Each
  call has a connection of its own for its time (:class:`~._link.LinkPool`,
  at most ``max_in_flight``, no coredis: one call per connection's batch,
  so a node's connections publish at once).
* :meth:`RedisChannelStore.heads` is one script over every channel's hash.
* :meth:`RedisChannelStore.listen` is one socket subscribed to the
  ``notify_shards`` shard channels (:mod:`._notify`): no task and no blocked
  read per channel, whatever the number of channels. The node says which
  channels it takes (``wanted``): the others' events are dropped before
  their data is decoded.

The reads, appends and publishes run on sockets of our own (:mod:`._link`,
the script call in :func:`_run`); the other commands run through
:class:`~._store.Store` (uncancelled, in turns, a broken client replaced):
:mod:`._store`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import attrs
import coredis

from ..._validators import check_int, check_positive, positive_int, positive_number
from ..._wire import channel_problem
from .._channelbase import ChannelRead, ChannelRequest, PublishRequest, PublishResult
from .._channels import DEFAULT_CHANNEL_MAX_LEN, DEFAULT_LISTENER_BUFFER
from .._logbase import EventLogError, LogUnavailableError, clock_start_id
from ._appends import DEFAULT_MAX_APPEND_BATCH, AppendBatcher
from ._channel_plan import (
    DEFAULT_CHANNEL_PREFIX,
    append_args,
    channel_keys,
    compact,
    notify_channel,
    parse_append_reply,
    parse_publish_reply,
    parse_read_reply,
    publish_args,
    read_args,
)
from ._channel_scripts import APPEND_BATCH, HEADS, PUBLISH_BATCH, READ_CHANNELS
from ._continuity import decode
from ._link import CommandLink, LinkPool
from ._notify import NotificationStream, listen_notifications
from ._presence import RedisPresenceStore
from ._resp import DEFAULT_MAX_PENDING, RespError, RespValue
from ._scripts import Lua
from ._store import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_TIMEOUT,
    ClientOwner,
    Store,
)

__all__ = [
    "DEFAULT_MAX_APPEND_BATCH",
    "DEFAULT_NOTIFY_PING_INTERVAL",
    "DEFAULT_NOTIFY_SHARDS",
    "DEFAULT_READ_BUDGET",
    "RedisChannelStore",
]

#: Pub/sub channels the notifications are spread over (every node listens to all).
DEFAULT_NOTIFY_SHARDS: Final = 16
#: Replayed entries one read call returns at most before the rest go in another call.
DEFAULT_READ_BUDGET: Final = 10_000
logger = logging.getLogger("trio_reconnect.server")

#: Seconds of silence on the live stream before a PING checks the link.
DEFAULT_NOTIFY_PING_INTERVAL: Final = 5.0


async def _run(
    link: CommandLink | LinkPool,
    script: Lua,
    keys: Sequence[str],
    args: Sequence[str | bytes],
    *,
    what: str,
) -> list[RespValue]:
    """One EVALSHA on a link of our own (EVAL after ``NOSCRIPT``): the script's array reply.

    Raises:
        LogUnavailableError: Redis did not answer (the script may or may not have run).
        EventLogError: Redis refused the script (it did not run), or its reply is no array.
    """
    reply = await link.call(script.command(keys, args), what=what)
    if isinstance(reply, RespError) and str(reply).startswith("NOSCRIPT"):
        # Nothing ran (Redis restarted or flushed its scripts): send the source.
        reply = await link.call(script.command(keys, args, load=True), what=what)
    if isinstance(reply, RespError):
        raise EventLogError(f"Redis at {link.where}: {what}: {reply}")
    if not isinstance(reply, list):
        raise EventLogError(f"unexpected {what} reply {reply!r:.80}")
    return reply


def _check_channel(channel: object) -> None:
    problem = channel_problem(channel)
    if problem is not None:
        raise ValueError(problem)


@attrs.define(eq=False)
class RedisChannelStore:
    """A :class:`~trio_reconnect.server.ChannelStore` on Redis, shared by every node.

    Use it as an async context manager; it owns its Redis client for that long::

        async with RedisChannelStore("redis://127.0.0.1:6379/0") as store:
            event_id = await store.append("room:1", {"text": "hi"})

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: Prefix of every key and pub/sub channel. Pub/sub ignores the
            database number, so two deployments on one Redis need two prefixes.
        channel_max_len: Events each channel's stream keeps (``MAXLEN ~``:
            Redis keeps up to about 100 more).
        notify_shards: Pub/sub channels the notifications are spread over;
            every node must use the same number.
        timeout: Seconds to connect and for any command to answer, counted
            from its turn; beyond it the call raises
            :class:`~trio_reconnect.server.LogUnavailableError`.
        max_connections: Connections in the client's pool.
        max_in_flight: Commands in flight at once; the others wait their turn.
            Read calls and publish calls each have their own bound of as
            many (each call on a connection of its own).
        read_budget: Replayed entries one read call returns at most; a read
            that needs more is split into several calls.
        listener_buffer: Most notifications one read of the live stream may
            find waiting: a node that far behind gives the stream up
            (:class:`~trio_reconnect.server.NotificationsLost`) and repairs
            from the store rather than work through the backlog.
        max_pending: Largest partial frame the notification reader holds, bytes.
        notify_ping_interval: Seconds of silence on the live stream before a
            PING checks the link; no answer within ``timeout`` is a loss
            (a half-open link sends no error of its own).
        max_append_batch: Appends one script call carries at most: appends
            that arrive while a call is in flight go together in the next
            one (:meth:`append`).
    """

    url: str = attrs.field(repr=False)  # it may hold a password
    prefix: str = attrs.field(default=DEFAULT_CHANNEL_PREFIX, kw_only=True)
    channel_max_len: int = attrs.field(
        default=DEFAULT_CHANNEL_MAX_LEN, kw_only=True, validator=positive_int
    )
    notify_shards: int = attrs.field(
        default=DEFAULT_NOTIFY_SHARDS, kw_only=True, validator=positive_int
    )
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, kw_only=True, validator=positive_number)
    max_connections: int = attrs.field(
        default=DEFAULT_MAX_CONNECTIONS, kw_only=True, validator=positive_int
    )
    max_in_flight: int = attrs.field(
        default=DEFAULT_MAX_IN_FLIGHT, kw_only=True, validator=positive_int
    )
    read_budget: int = attrs.field(
        default=DEFAULT_READ_BUDGET, kw_only=True, validator=positive_int
    )
    listener_buffer: int = attrs.field(
        default=DEFAULT_LISTENER_BUFFER, kw_only=True, validator=positive_int
    )
    max_pending: int = attrs.field(
        default=DEFAULT_MAX_PENDING, kw_only=True, validator=positive_int
    )
    notify_ping_interval: float = attrs.field(
        default=DEFAULT_NOTIFY_PING_INTERVAL, kw_only=True, validator=positive_number
    )
    max_append_batch: int = attrs.field(
        default=DEFAULT_MAX_APPEND_BATCH, kw_only=True, validator=positive_int
    )
    _store: Store = attrs.field(init=False, repr=False)
    _main: ClientOwner = attrs.field(init=False, repr=False)
    _link: CommandLink = attrs.field(init=False, repr=False)
    _appends: AppendBatcher = attrs.field(init=False, repr=False)
    _publishes: LinkPool = attrs.field(init=False, repr=False)
    _reads: LinkPool = attrs.field(init=False, repr=False)
    _open: bool = attrs.field(init=False, default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._store = Store(self.url, self.timeout, self.max_connections, self.max_in_flight)
        self._main = self._store.owner("channels", stream_timeout=self.timeout)
        self._link = CommandLink(
            self.url, self.timeout, "trio_reconnect:appends", max_pending=self.max_pending
        )
        self._appends = AppendBatcher(self._commit, self.max_append_batch)
        self._publishes = LinkPool(
            self.url,
            self.timeout,
            "trio_reconnect:publishes",
            self.max_in_flight,
            max_pending=self.max_pending,
        )
        self._reads = LinkPool(
            self.url,
            self.timeout,
            "trio_reconnect:reads",
            self.max_in_flight,
            max_pending=self.max_pending,
        )

    async def __aenter__(self) -> RedisChannelStore:
        await self._store.open([self._main])
        await self._store.start(self._appends.run)
        await self._check_eviction()
        self._open = True
        return self

    async def _check_eviction(self) -> None:
        """Warn unless Redis runs with ``maxmemory-policy noeviction`` (dedupe records need it)."""

        async def op(client: coredis.Redis[bytes]) -> Any:
            return await client.config_get(["maxmemory-policy"])

        try:
            reply = await self._store.call(self._main, op, what="CONFIG GET")
        except LogUnavailableError:
            return  # unreachable: the first real call says so
        except EventLogError as error:  # refused (managed Redis, ACLs)
            logger.warning("could not check Redis's maxmemory-policy (%s)", error)
            return
        policy = decode(next(iter(reply.values()), b"?"))
        if policy != "noeviction":
            logger.warning(
                "Redis's maxmemory-policy is %r, not 'noeviction': Redis may evict "
                "publish dedupe records (a re-sent publish is then applied twice) or a "
                "channel's counter",
                policy,
            )

    async def __aexit__(self, *exc_info: object) -> None:
        self._open = False
        try:
            await self._store.close()
        finally:
            await self._link.aclose()
            await self._publishes.aclose()
            await self._reads.aclose()

    @property
    def notify_channels(self) -> list[str]:
        """The pub/sub channels a node listens to."""
        return [notify_channel(self.prefix, k) for k in range(self.notify_shards)]

    async def read(
        self, requests: Sequence[ChannelRequest], *, max_replay: int
    ) -> Sequence[ChannelRead]:
        """Answer every request, in order, in one script call; fix missing starting points.

        A read whose replayed entries pass ``read_budget`` takes more calls.

        Raises:
            ValueError: if ``max_replay`` or a ``history`` is not a whole
                number of at least 0, or a channel name is not valid.
            LogUnavailableError: Redis did not answer.
        """
        check_int("max_replay", max_replay, minimum=0)
        for request in requests:
            _check_channel(request.channel)
            check_int("history", request.history, minimum=0)
        reads: list[ChannelRead] = []
        remaining = list(requests)
        while remaining:
            answered = await self._read_once(remaining, max_replay)
            if not answered:
                raise EventLogError("the channel read script answered nothing")
            reads += answered
            remaining = remaining[len(answered) :]
        return reads

    async def _read_once(
        self, requests: Sequence[ChannelRequest], max_replay: int
    ) -> list[ChannelRead]:
        if not self._open:
            raise RuntimeError("use the Redis channel store as 'async with' before read")
        keys, tail = read_args(self.prefix, requests)
        args = [str(clock_start_id()), str(max_replay), str(self.read_budget), *tail]
        reply = await _run(self._reads, READ_CHANNELS, keys, args, what="read channels")
        return parse_read_reply(requests, reply)

    async def append(self, channel: str, data: Any) -> str:
        """Store one event in ``channel`` and notify every listener, in one step; never retried.

        Appends that meet go to Redis together, in one script call (group
        commit, :mod:`._appends`): each still gets the next id of its
        channel, its own outcome, and a failed call fails every one of them.

        Raises:
            TypeError: if ``data`` is not JSON-serialisable (nothing is stored).
            ValueError: if it holds a NaN or an infinity, or the name is not
                valid (nothing is stored).
            LogUnavailableError: Redis did not answer; the event may or may not be stored.
            EventLogError: Redis refused the append (nothing is stored).
        """
        _check_channel(channel)
        payload = compact(data)
        payload.encode()  # a lone surrogate fails here, in the caller (nothing is stored)
        return await self._appends.append(channel, payload)

    async def _commit(self, pairs: Sequence[tuple[str, str]]) -> Sequence[str | EventLogError]:
        """One batch append script, on the committer's link: each pair's id or its error.

        Raises:
            LogUnavailableError: Redis did not answer (each may or may not be stored).
            EventLogError: Redis refused the script (nothing stored).
        """
        keys, tail = append_args(self.prefix, self.notify_shards, pairs)
        args = [str(clock_start_id()), str(self.channel_max_len), *tail]
        reply = await _run(self._link, APPEND_BATCH, keys, args, what="append")
        return parse_append_reply(reply, len(pairs))

    async def publish(
        self, items: Sequence[PublishRequest], *, dedupe_ttl: float
    ) -> Sequence[PublishResult]:
        """Apply ``items`` in order, each once per (channel, key), in one script; never retried.

        Raises:
            TypeError, ValueError: an item's ``data`` is not JSON, a channel
                name is not valid, ``dedupe_ttl`` is not positive (nothing is applied).
            RuntimeError: the store is not open.
            LogUnavailableError: Redis did not answer (the items may or may
                not be applied), or the first item failed.
            EventLogError: Redis refused the script (nothing applied).
        """
        check_positive("dedupe_ttl", dedupe_ttl)
        for item in items:
            _check_channel(item.channel)
        if not items:
            return []
        if not self._open:
            raise RuntimeError("use the Redis channel store as 'async with' before publish")
        keys, tail = publish_args(self.prefix, self.notify_shards, items)
        ttl_ms = max(1, math.ceil(dedupe_ttl * 1000))
        args = [str(clock_start_id()), str(self.channel_max_len), str(ttl_ms), *tail]
        reply = await _run(self._publishes, PUBLISH_BATCH, keys, args, what="publish")
        results = parse_publish_reply(reply, len(items))
        if not results:
            raise LogUnavailableError(f"Redis refused the publish to {items[0].channel!r}")
        return results

    async def heads(self, channels: Sequence[str]) -> Mapping[str, str]:
        """The newest id of each channel that has a starting point, in one script call."""
        for channel in channels:
            _check_channel(channel)
        if not channels:
            return {}
        keys = [channel_keys(self.prefix, channel)[0] for channel in channels]

        async def op(client: coredis.Redis[bytes]) -> Any:
            return await HEADS.run(client, keys=keys, args=[])

        reply = await self._store.call(self._main, op, what="heads")
        return {
            channel: decode(seq)
            for channel, seq in zip(channels, reply, strict=False)
            if seq is not None
        }

    def listen(
        self, *, wanted: Callable[[str], bool] | None = None
    ) -> AbstractAsyncContextManager[NotificationStream]:
        """A live stream of every channel's events, in batches (one socket, :mod:`._notify`).

        Entering returns once every shard subscription is confirmed. The
        events of a channel ``wanted`` answers ``False`` for are left out
        before their data is decoded.

        Raises:
            LogUnavailableError: on entering, when Redis cannot be reached.
        """
        return listen_notifications(
            self.url,
            self.notify_channels,
            timeout=self.timeout,
            max_backlog=self.listener_buffer,
            max_pending=self.max_pending,
            ping_interval=self.notify_ping_interval,
            wanted=wanted,
        )

    def presence_store(self) -> RedisPresenceStore:
        """The presence of this store's channels (PROTOCOL.md 4.4), on its client and shards."""
        return RedisPresenceStore(self._store, self._main, self.prefix, self.notify_shards)
