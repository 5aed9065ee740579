"""The event log and the cluster registry on Redis (coredis, under trio). Needs the ``redis`` extra.

Imported only by :mod:`trio_reconnect.server.redis`, so that ``import
trio_reconnect.server`` never imports coredis.

How the log sits on a stream
----------------------------

The log is one Redis stream (``stream``) plus one hash (``stream + ":meta"``)
holding ``seq``, the newest id issued, and ``first``, the first id of this
incarnation of the log. Event ``n`` is the stream entry ``n-0`` with one
field, ``d``, its JSON payload. Stream ids are never shown to anyone: ids
leave this module as canonical decimal strings (``"42"``), and ids come in
through :func:`~trio_reconnect.server._logbase.parse_event_id` only (Redis
itself would take ``"0042-0"`` for ``"42-0"``).

*Append* is one Lua script: read ``seq``, XADD entry ``seq + 1`` with ``MAXLEN
~ max_len``, then store the new ``seq``. The XADD comes before the write of
``seq``, so a script that fails leaves nothing behind. When the hash is
missing (a new log, or Redis lost its data: restarted without persistence,
flushed, evicted) the script starts from the clock id the caller passes in
(:func:`~trio_reconnect.server._logbase.clock_start_id`), or one above the
stream's top entry if that is higher, and records it as ``first``. Every id
of the new incarnation is then above every id an earlier one issued
(PROTOCOL.md sections 2 and 3.3), and an old ``lastEventId`` reads as unknown.
Lua numbers are doubles: ids are formatted with ``string.format('%d', n)``
(``n .. '-0'`` prints 16-digit numbers as ``1.79e+15``), and exact up to
2**53, far above a clock id in microseconds; a larger id from a client is
unknown without reaching Redis.

*The publish path never retries.* A retried EVALSHA whose first attempt did
run would store the event twice, so the clients run with coredis's
``NoRetryPolicy`` (its default retries on connection errors and timeouts).
An append whose connection fails raises :class:`LogUnavailableError`; the
event may or may not be stored, and if it is, every reader sees it once.
(A ``NOSCRIPT`` answer to EVALSHA, after Redis restarted, is followed by
an EVAL of the same script: that is safe, a ``NOSCRIPT`` EVALSHA ran
nothing.)

*read_after* is one read-only Lua script, so ``newest`` and the events come
from one instant: it answers "not held" when the asked id is outside
``[first, seq]`` or its gap exceeds ``limit``, else returns ``seq``, ``first``
and the XRANGE of the gap. Because ids are consecutive, "is the gap after
``L`` fully held" is then exact arithmetic: it is held iff XRANGE returned
exactly ``seq - L`` entries starting at ``L + 1``. No XINFO field is needed
(Redis 6.2 lacks ``entries-added`` and ``max-deleted-entry-id``), so Redis
6.2 and 7.x behave alike; MAXLEN ``~`` trimming (which keeps between
``max_len`` and about ``max_len + 100`` entries) is seen exactly as it is.

*tail* is XREAD after ``L-0``. The entries it returns must start at ``L +
1`` and run on consecutively; anything else means entries were trimmed
before the reader got to them or the counter restarted from the clock, and
it raises :class:`LogDiscontinuityError`. A tail that found nothing checks
``seq`` before it returns: Redis restarted empty (no hash) or a ``seq``
below ``L``, or entries after ``L`` that are issued but not held (the
stream was deleted), is a discontinuity too, found within one ``block``
even when nothing is published.

The keys are plain (``stream``, ``stream:meta``, and the registry's keys
built inside a script), so this is for a standalone Redis (with replicas or
Sentinel if you like), not Redis Cluster.

coredis's pool-slot leak, and how this module keeps out of it
-------------------------------------------------------------

A coredis pool loses a slot for good whenever a leased connection dies or
a command on it is cancelled halfway: a cancelled blocked XREAD, a blocked
XREAD whose connection the server killed (TRIO_NOTES). Once its slots are
gone every command waits for the pool timeout. So here:

* **No command is ever cancelled halfway.** Every call runs in a shielded
  scope with its own deadline (``timeout``, plus the block for an XREAD),
  and cancellation is delivered at a checkpoint right after it (except
  after an append, which returns the id it stored). A blocked
  XREAD blocks at most ``read_block`` (default 0.1 s), so a cancelled tail
  returns within that; :meth:`RedisStreamLog.tail` with a longer ``block``
  is a loop of such reads.
* **A client that had a connection error, or a command that hit its
  deadline, is replaced**, with its pool and whatever slots it lost. A
  coredis client is an async context manager around a task group, so one
  task must enter and leave it: each lives in a task of its own in the
  log's nursery. A failing caller retires it, and its owner enters a fresh
  one at once, without waiting for the old one to leave (which can take its
  stream timeout when Redis stopped answering).
* **The tail has its own client**, so that blocked reads never queue the
  publish path behind them, and every client has a ``pool_timeout``.
* **A client replaced under a command fails it as unavailable**, whatever
  coredis raised (once its pool has exited, a ``RuntimeError``).

coredis's writer, and why commands take turns
---------------------------------------------

coredis 6.9 multiplexes: a command other than a blocked read leases a
pooled connection only to queue itself on it, and the pool is a stack, so
the commands of one client pile onto one connection. That connection's
writer task gathers what is queued and, after each checkpoint, gathers
again; it sends only once a pass added nothing. So while new commands keep
arriving in every scheduler pass (a reconnect storm on a loaded node: one
handshake read per pass) it sends nothing at all. Measured against a real
redis-server: of 500 handshakes, each holding the loop 10 ms, 185 reads
were never sent; the first failed "no answer within 2 s", replacing the
client failed the others ("Connection lost!"), and the node, taking Redis
for down, refused the next 295 clients with 503 (docs/design.md).

So each client lets ``max_in_flight`` commands run at once; the others wait
their turn on a semaphore. With that many queued, no pass adds another, and
the writer sends. The wait for a turn sends nothing, so it is cancellable
and it is not on the ``timeout`` clock (a queue of commands is not Redis
failing); a caller bounds it with its own deadline, as the resume handshake
does with the handshake timeout.

Errors out of coredis never leave this module: a connection error, a
timeout or an ``OSError`` (found inside exception groups too) is
:class:`LogUnavailableError`; any other Redis error (a key of the wrong type,
say) is :class:`EventLogError`.

The registry
------------

:class:`RedisRegistry` keeps one key per node (``prefix:node:NAME``, its
:class:`NodeStatus` as JSON) written with ``PX ttl``, so Redis itself expires
a node that stopped announcing, with no clock shared between hosts; a set
(``prefix:names``) indexes them, and :meth:`RedisRegistry.nodes` drops the
names whose key has expired. ``now()`` is ``time.time()``, the clock that
``drain_ends`` is written on: the nodes' clocks must agree to well within a
drain window (NTP does that).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final, NoReturn, TypeVar, cast

import anyio
import attrs
import coredis
import coredis.exceptions
import trio
from coredis.response.types import StreamEntry
from coredis.retry import NoRetryPolicy

from .._exceptions import leaves
from .._validators import check_int, check_positive, positive_int, positive_number
from ._cluster import NodeStatus
from ._logbase import (
    EventLogError,
    LogDiscontinuityError,
    LoggedEvent,
    LogRead,
    LogUnavailableError,
    clock_start_id,
    parse_event_id,
)

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_LEN",
    "DEFAULT_READ_BLOCK",
    "DEFAULT_REGISTRY_PREFIX",
    "DEFAULT_STREAM",
    "DEFAULT_TIMEOUT",
    "MAX_REDIS_ID",
    "RedisRegistry",
    "RedisStreamLog",
]

_logger = logging.getLogger("trio_reconnect.server")

#: The stream key a :class:`RedisStreamLog` uses by default.
DEFAULT_STREAM: Final = "trio_reconnect:events"
#: Events the stream keeps by default (``MAXLEN ~``: Redis keeps up to about 100 more).
DEFAULT_MAX_LEN: Final = 10_000
#: Seconds to connect, to get a pooled connection, and for a command to answer (from its turn).
DEFAULT_TIMEOUT: Final = 2.0
#: Longest single blocked XREAD, seconds: how late a cancelled tail returns.
DEFAULT_READ_BLOCK: Final = 0.1
#: Connections in each client's pool (coredis's own default).
DEFAULT_MAX_CONNECTIONS: Final = 64
#: Commands each client has in flight at once; the others wait their turn,
#: outside their ``timeout`` (the module's notes on coredis's writer).
DEFAULT_MAX_IN_FLIGHT: Final = 16
#: The key prefix a :class:`RedisRegistry` uses by default.
DEFAULT_REGISTRY_PREFIX: Final = "trio_reconnect:nodes"
#: Largest id this backend can issue or look up (Lua numbers are doubles).
MAX_REDIS_ID: Final = 2**53 - 1
#: Pause before an owner enters a new client after entering one failed.
_REENTER_PAUSE: Final = 0.05

_T = TypeVar("_T")

# KEYS: stream, meta. ARGV: clock start id, max_len, payload. Returns the entry id.
_APPEND_LUA: Final = """
local seq = redis.call('HGET', KEYS[2], 'seq')
local n
local fresh = false
if seq then
  n = tonumber(seq) + 1
else
  fresh = true
  n = tonumber(ARGV[1])
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if top[1] then
    local t = tonumber(string.match(top[1][1], '^(%d+)-'))
    if t and t >= n then n = t + 1 end
  end
end
local id = string.format('%d-0', n)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], id, 'd', ARGV[3])
if fresh then
  redis.call('HSET', KEYS[2], 'seq', string.format('%d', n), 'first', string.format('%d', n))
else
  redis.call('HSET', KEYS[2], 'seq', string.format('%d', n))
end
return id
"""

# KEYS: stream, meta. ARGV: after ('' for the whole history), limit.
# Returns {} (empty log), {seq, first} (gap not held or too long), or
# {seq, first, entries}.
_READ_LUA: Final = """
local seq = redis.call('HGET', KEYS[2], 'seq')
if not seq then return {} end
local first = redis.call('HGET', KEYS[2], 'first')
local n = tonumber(seq)
local f = tonumber(first)
local a
if ARGV[1] == '' then
  a = f - 1
else
  a = tonumber(ARGV[1])
  if a < f or a > n then return {seq, first} end
end
local gap = n - a
if gap > tonumber(ARGV[2]) then return {seq, first} end
if gap == 0 then return {seq, first, {}} end
return {seq, first, redis.call('XRANGE', KEYS[1], string.format('%d-0', a + 1), '+', 'COUNT', gap)}
"""

# KEYS: stream, meta. Returns {} (empty log) or {seq, first, oldest held entry id or false}.
_STATE_LUA: Final = """
local seq = redis.call('HGET', KEYS[2], 'seq')
if not seq then return {} end
local first = redis.call('HGET', KEYS[2], 'first')
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if oldest[1] then return {seq, first, oldest[1][1]} end
return {seq, first, false}
"""

# KEYS: node key, names set. ARGV: name, status JSON, ttl in ms.
_ANNOUNCE_LUA: Final = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: names set. ARGV: node key prefix. Returns the live statuses, drops expired names.
_NODES_LUA: Final = """
local names = redis.call('SMEMBERS', KEYS[1])
local live = {}
for _, name in ipairs(names) do
  local status = redis.call('GET', ARGV[1] .. name)
  if status then table.insert(live, status) else redis.call('SREM', KEYS[1], name) end
end
return live
"""


@attrs.frozen
class _Lua:
    """A Lua script run by EVALSHA, and by EVAL when Redis does not have it (after a restart)."""

    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    async def run(self, client: coredis.Redis[bytes], *, keys: list[str], args: list[str]) -> Any:
        # NOSCRIPT means nothing ran, so the EVAL that follows cannot store an event twice.
        try:
            return await client.evalsha(self.sha, keys=keys, args=args)
        except coredis.exceptions.NoScriptError:
            return await client.eval(self.source, keys=keys, args=args)


_APPEND = _Lua(_APPEND_LUA)
_READ = _Lua(_READ_LUA)
_STATE = _Lua(_STATE_LUA)
_ANNOUNCE = _Lua(_ANNOUNCE_LUA)
_NODES = _Lua(_NODES_LUA)


def _decode(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_seq(entry_id: object) -> int:
    """The sequence number of a stream entry id ``b"42-0"``."""
    text = _decode(entry_id)
    seq, _, tail = text.partition("-")
    if tail != "0" or parse_event_id(seq) is None:
        raise EventLogError(f"the stream holds an entry this log did not write: {text!r}")
    return int(seq)


#: What a lost connection looks like from coredis: its own error, a timeout,
#: the socket's error, or (a command still in flight on a client that was
#: replaced meanwhile) the anyio stream it was reading being closed.
_CONNECTION_LOST: Final = (
    coredis.exceptions.ConnectionError,
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


def _unavailable(exc: BaseException) -> bool:
    return any(isinstance(leaf, _CONNECTION_LOST) for leaf in leaves(exc))


def _safe_seq(event_id: str | None) -> int | None:
    """``event_id``'s sequence number if this backend could have issued it, else ``None``."""
    seq = parse_event_id(event_id)
    return seq if seq is not None and seq <= MAX_REDIS_ID else None


@attrs.define(eq=False)
class _ClientOwner:
    """Owns one coredis client at a time, in its own task; enters a new one when it is retired.

    A coredis client is an async context manager around a task group, so it
    must be entered and left by one task: this one. Callers borrow the
    current client with :meth:`client` and hand it back broken with
    :meth:`retire` (by identity, so a late failure of an old client never
    retires its successor).
    """

    make: Callable[[], coredis.Redis[bytes]]
    name: str
    #: The turns of the commands in flight on this owner's clients.
    turns: trio.Semaphore
    _client: coredis.Redis[bytes] | None = attrs.field(default=None, init=False)
    _available: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: Set to retire the current client (a fresh Event per client).
    _retired: trio.Event = attrs.field(factory=trio.Event, init=False)
    generations: int = attrs.field(default=0, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Each client lives in a task of its own, so a new one is in service
        # at once while the old one is still leaving (which can take its
        # stream timeout when the server stopped answering).
        async with trio.open_nursery() as nursery:
            started = False
            while True:
                self._retired = trio.Event()
                try:
                    await nursery.start(self._hold, self._retired)
                except Exception as exc:
                    _logger.debug("redis client %s could not be entered: %r", self.name, exc)
                    await trio.sleep(_REENTER_PAUSE)
                    continue
                finally:
                    if not started:
                        started = True
                        task_status.started()
                await self._retired.wait()

    async def _hold(
        self, retired: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        client: coredis.Redis[bytes] | None = None
        try:
            async with self.make() as client:
                self._client = client
                self.generations += 1
                self._available.set()
                task_status.started()
                await retired.wait()
        except Exception as exc:  # the old client's failures end here, never leak
            _logger.debug("redis client %s left after %r", self.name, exc)
        finally:
            self.retire(client)

    async def client(self) -> coredis.Redis[bytes]:
        """The current client (waits while a new one is entered)."""
        while self._client is None:
            await self._available.wait()
        return self._client

    def replaced(self, client: coredis.Redis[bytes] | None) -> bool:
        """Whether ``client`` was retired (by any caller) since it was borrowed."""
        return client is not None and client is not self._client

    def retire(self, client: coredis.Redis[bytes] | None) -> None:
        """Replace ``client`` (if it is still the current one) with a fresh one."""
        if client is not None and client is self._client:
            self._client = None
            self._available = trio.Event()
            self._retired.set()


def _check_url(url: object) -> None:
    """Raise ``ValueError`` unless ``url`` is a Redis URL coredis can connect to.

    coredis itself takes ``"nonsense"`` or ``"http://x"`` and fails only when
    it connects; this says what is wrong at once.
    """
    if not isinstance(url, str):
        raise ValueError(f"the Redis URL must be a string, got {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a Redis URL: {url!r} ({exc})") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"a unix:// Redis URL needs a socket path: {url!r}")
        return
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis URL starts with redis://, rediss:// or unix://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"the Redis URL has no host: {url!r}")
    if port == 0:
        raise ValueError(f"the Redis URL has port 0: {url!r}")
    db = parts.path.lstrip("/")
    if db and not (db.isascii() and db.isdigit()):
        raise ValueError(f"the Redis URL's database must be a number, got {db!r} in {url!r}")


@attrs.define(eq=False)
class _Store:
    """The shared machinery: client owners in a nursery, and the one way to run a command."""

    url: str = attrs.field(
        repr=False, validator=lambda _instance, _attribute, value: _check_url(value)
    )
    timeout: float
    max_connections: int
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    _stack: AsyncExitStack | None = attrs.field(default=None, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    def owner(self, name: str, *, stream_timeout: float) -> _ClientOwner:
        def make() -> coredis.Redis[bytes]:
            return coredis.Redis.from_url(
                self.url,
                retry_policy=NoRetryPolicy(),
                pool_timeout=self.timeout,
                connect_timeout=self.timeout,
                stream_timeout=stream_timeout,
                max_connections=self.max_connections,
                client_name=f"trio_reconnect:{name.replace(' ', '-')}",
            )

        return _ClientOwner(make, name, trio.Semaphore(self.max_in_flight))

    async def open(self, owners: Sequence[_ClientOwner]) -> None:
        if self._stack is not None:
            raise RuntimeError("already open")
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack, self._nursery = stack, nursery
        for owner in owners:
            await nursery.start(owner.run)

    async def close(self) -> None:
        stack, nursery = self._stack, self._nursery
        self._stack = self._nursery = None
        if stack is None or nursery is None:
            return
        nursery.cancel_scope.cancel()
        await stack.aclose()

    async def call(
        self,
        owner: _ClientOwner,
        op: Callable[[coredis.Redis[bytes]], Awaitable[_T]],
        *,
        what: str,
        extra: float = 0.0,
        checkpoint: bool = True,
    ) -> _T:
        """Run one command on ``owner``'s client, uncancelled, within ``timeout + extra`` seconds.

        Raises:
            LogUnavailableError: on a connection error or timeout (the client is replaced).
            EventLogError: on any other Redis error.
        """
        if self._nursery is None:
            raise RuntimeError(f"use the Redis {owner.name} as 'async with' before {what}")
        bound = self.timeout + extra
        client: coredis.Redis[bytes] | None = None
        # The wait for a turn sends nothing: it is cancellable, and not on
        # the clock of ``bound`` (a queue of commands is not Redis failing).
        async with owner.turns:
            # Shielded: a command cancelled halfway loses a pool slot for good.
            with trio.move_on_after(bound, shield=True) as scope:
                try:
                    client = await owner.client()
                    result = await op(client)
                except Exception as exc:
                    # A client replaced under a command fails it with anything
                    # (a RuntimeError once its pool has exited): that is the
                    # failure it was replaced for, not a Redis error.
                    if _unavailable(exc) or owner.replaced(client):
                        owner.retire(client)
                        raise LogUnavailableError(
                            f"Redis at {self._where()}: {what}: {exc}"
                        ) from exc
                    raise EventLogError(f"Redis at {self._where()}: {what}: {exc!r}") from exc
            if scope.cancelled_caught:
                owner.retire(client)
                raise LogUnavailableError(
                    f"Redis at {self._where()}: {what}: no answer within {bound:g} s"
                )
        if checkpoint:
            await trio.lowlevel.checkpoint()
        return result

    def _where(self) -> str:
        # The URL without its credentials (never log a password).
        rest = self.url.split("://", 1)[-1]
        return rest.rsplit("@", 1)[-1]


def _check_block(block: float) -> None:
    if isinstance(block, bool) or not isinstance(block, int | float) or not block >= 0:
        raise ValueError(f"block must be a non-negative number of seconds, got {block!r}")
    if not math.isfinite(block):
        raise ValueError(f"block must be finite, got {block!r}")


@attrs.define(eq=False)
class RedisStreamLog:
    """An :class:`~trio_reconnect.server.EventLog` on a Redis stream, shared by every node.

    Use it as an async context manager; it owns its Redis clients (one for
    appends and reads, one for the tail) for that long::

        async with RedisStreamLog("redis://127.0.0.1:6379/0") as log:
            event_id = await log.append({"price": 42})

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        stream: The stream's key; ``stream + ":meta"`` holds the id counter.
        max_len: Events the stream keeps (``MAXLEN ~``; Redis keeps up to
            about 100 more). Size it above ``max_replay`` plus what is
            published during a drain window (docs/howto/redis.md).
        timeout: Seconds to connect, to get a pooled connection, and for
            any command to answer, counted from its turn (``max_in_flight``);
            beyond it the call raises
            :class:`~trio_reconnect.server.LogUnavailableError`.
        read_block: Longest single blocked XREAD, seconds. A cancelled
            :meth:`tail` returns within about this long (the read itself is
            never cancelled; see the module's notes on coredis).
        max_connections: Connections in each client's pool.
        max_in_flight: Commands each client has in flight at once (the
            handshake reads of a reconnect storm, say); the others wait
            their turn, and that wait is not counted in ``timeout``: a
            queue of commands is not Redis failing. A caller bounds it with
            its own deadline (cancelling a wait sends nothing).
    """

    url: str = attrs.field(repr=False)  # it may hold a password
    stream: str = attrs.field(default=DEFAULT_STREAM, kw_only=True)
    max_len: int = attrs.field(default=DEFAULT_MAX_LEN, kw_only=True, validator=positive_int)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, kw_only=True, validator=positive_number)
    read_block: float = attrs.field(
        default=DEFAULT_READ_BLOCK, kw_only=True, validator=positive_number
    )
    max_connections: int = attrs.field(
        default=DEFAULT_MAX_CONNECTIONS, kw_only=True, validator=positive_int
    )
    max_in_flight: int = attrs.field(
        default=DEFAULT_MAX_IN_FLIGHT, kw_only=True, validator=positive_int
    )
    _store: _Store = attrs.field(init=False, repr=False)
    _main: _ClientOwner = attrs.field(init=False, repr=False)
    _tail: _ClientOwner = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._store = _Store(self.url, self.timeout, self.max_connections, self.max_in_flight)
        self._main = self._store.owner("log", stream_timeout=self.timeout)
        self._tail = self._store.owner("log tail", stream_timeout=self.timeout + self.read_block)

    @property
    def _keys(self) -> list[str]:
        return [self.stream, self.stream + ":meta"]

    async def __aenter__(self) -> RedisStreamLog:
        await self._store.open([self._main, self._tail])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._store.close()

    @property
    def client_generations(self) -> tuple[int, int]:
        """How many Redis clients were entered so far: (appends and reads, tail).

        Each connection error or deadline replaces one; for monitoring and tests.
        """
        return (self._main.generations, self._tail.generations)

    async def append(self, data: Any) -> str:
        """Store one event and return its id; never retried.

        Raises:
            TypeError: if ``data`` is not JSON-serialisable (nothing is stored).
            ValueError: if it holds a NaN or an infinity (nothing is stored).
            LogUnavailableError: Redis did not answer; the event may or may not be stored.
        """
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        args = [str(clock_start_id()), str(self.max_len), payload]

        async def op(client: coredis.Redis[bytes]) -> object:
            return await _APPEND.run(client, keys=self._keys, args=args)

        # No checkpoint after: an append that ran returns its id even if cancelled meanwhile.
        reply = await self._store.call(self._main, op, what="append", checkpoint=False)
        return str(_entry_seq(reply))

    async def newest(self) -> str | None:
        """The id of the newest event, or ``None`` when the log is empty (or Redis lost it)."""

        async def op(client: coredis.Redis[bytes]) -> object:
            return await client.hget(self._keys[1], "seq")

        reply = await self._store.call(self._main, op, what="newest")
        return None if reply is None else _decode(reply)

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        """Every event after ``event_id``, with the newest id, in one consistent read.

        An id this log never issued (malformed, non-canonical, too large,
        from an earlier incarnation) gives ``events=None``.
        """
        check_int("limit", limit, minimum=0)
        if event_id is None:
            after = ""
        else:
            seq = _safe_seq(event_id)
            if seq is None:
                return LogRead(await self.newest(), None)
            after = str(seq)

        async def op(client: coredis.Redis[bytes]) -> object:
            return await _READ.run(client, keys=self._keys, args=[after, str(limit)])

        reply = cast(list[Any], await self._store.call(self._main, op, what="read"))
        if not reply:
            return LogRead(None, [] if event_id is None else None)
        newest, first = int(reply[0]), int(reply[1])
        if len(reply) < 3:
            return LogRead(str(newest), None)
        start = first if event_id is None else int(after) + 1
        events = self._events(reply[2])
        expected = newest - start + 1
        if len(events) != expected or (events and int(events[0].id) != start):
            return LogRead(str(newest), None)
        return LogRead(str(newest), events)

    def _events(self, entries: Sequence[Any]) -> list[LoggedEvent]:
        """Raw XRANGE entries ``[id, [field, value, ...]]`` (or coredis StreamEntry) as events."""
        events: list[LoggedEvent] = []
        previous: int | None = None
        for entry in entries:
            if isinstance(entry, StreamEntry):
                raw_id, fields = entry.identifier, entry.field_values
                payload = fields.get(b"d")
            else:
                raw_id, flat = entry[0], entry[1]
                pairs = dict(zip(flat[::2], flat[1::2], strict=True))
                payload = pairs.get(b"d")
            seq = _entry_seq(raw_id)
            if previous is not None and seq != previous + 1:
                break  # a hole: the caller sees fewer events than the gap
            if payload is None:
                raise EventLogError(f"stream entry {_decode(raw_id)} has no 'd' field")
            events.append(LoggedEvent(str(seq), json.loads(payload)))
            previous = seq
        return events

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        """The events after ``after``, at most ``limit``; blocks up to ``block`` s for one.

        Runs blocked XREADs of at most ``read_block`` seconds each (never
        cancelled; cancellation is delivered between them) on its own client.

        Raises:
            LogDiscontinuityError: the entries right after ``after`` are gone
                (trimmed, or Redis lost its data and the ids restarted from
                the clock), or ``after`` is no id of this log.
            LogUnavailableError: Redis did not answer.
        """
        check_int("limit", limit, minimum=1)
        _check_block(block)
        parsed = 0 if after is None else _safe_seq(after)
        if parsed is None:
            await self._discontinuity(after)
        seq: int = parsed
        start = f"{seq}-0"
        deadline = trio.current_time() + block
        while True:
            remaining = max(0.0, deadline - trio.current_time())
            chunk = min(remaining, self.read_block)
            ms = math.ceil(chunk * 1000) if chunk > 0 else None

            async def op(client: coredis.Redis[bytes], ms: int | None = ms) -> object:
                return await client.xread({self.stream: start}, count=limit, block=ms)

            reply = await self._store.call(self._tail, op, what="tail", extra=chunk)
            if reply:
                entries = next(iter(cast(dict[Any, Sequence[Any]], reply).values()))
                events = self._events(entries)
                expected_first = seq + 1 if after is not None else await self._first()
                if not events or int(events[0].id) != expected_first or len(events) != len(entries):
                    await self._discontinuity(after)
                return events
            if chunk >= remaining:
                await self._check_idle(after, seq)
                return []

    async def _state(self) -> tuple[int, int, int | None] | None:
        async def op(client: coredis.Redis[bytes]) -> object:
            return await _STATE.run(client, keys=self._keys, args=[])

        reply = cast(list[Any], await self._store.call(self._tail, op, what="tail state"))
        if not reply:
            return None
        oldest = None if not reply[2] else _entry_seq(reply[2])
        return int(reply[0]), int(reply[1]), oldest

    async def _first(self) -> int | None:
        state = await self._state()
        return None if state is None else state[1]

    async def _check_idle(self, after: str | None, seq: int) -> None:
        """After an empty read: is the position still in this log?"""
        state = await self._state()
        if after is None:
            if state is not None and state[2] != state[1]:  # the first event is gone
                await self._discontinuity(after, state)
            return
        if state is None or state[0] < seq or seq < state[1]:
            await self._discontinuity(after, state)
        if state[0] > seq and (state[2] is None or state[2] > seq + 1):
            await self._discontinuity(after, state)

    async def _discontinuity(
        self, after: str | None, state: tuple[int, int, int | None] | None = None
    ) -> NoReturn:
        if state is None:
            state = await self._state()
        if state is None:
            raise LogDiscontinuityError(after, None, None)
        newest, _, oldest = state
        raise LogDiscontinuityError(after, None if oldest is None else str(oldest), str(newest))


@attrs.define(eq=False)
class RedisRegistry:
    """A :class:`~trio_reconnect.server.ClusterRegistry` on Redis: one expiring key per node.

    Use it as an async context manager, like :class:`RedisStreamLog`::

        async with RedisRegistry("redis://127.0.0.1:6379/0") as registry:
            await registry.announce(NodeStatus("node-a", 300.0), ttl=5.0)

    Args:
        url: The Redis URL.
        prefix: Key prefix: ``prefix:node:NAME`` per node, ``prefix:names`` the index.
        timeout: Seconds for any command; beyond it, or on a connection
            error, :class:`~trio_reconnect.server.LogUnavailableError`.
    """

    url: str = attrs.field(repr=False)  # it may hold a password
    prefix: str = attrs.field(default=DEFAULT_REGISTRY_PREFIX, kw_only=True)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, kw_only=True, validator=positive_number)
    _store: _Store = attrs.field(init=False, repr=False)
    _owner: _ClientOwner = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._store = _Store(self.url, self.timeout, DEFAULT_MAX_CONNECTIONS)
        self._owner = self._store.owner("registry", stream_timeout=self.timeout)

    async def __aenter__(self) -> RedisRegistry:
        await self._store.open([self._owner])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._store.close()

    def now(self) -> float:
        """``time.time()``: the clock ``drain_ends`` is written on."""
        return time.time()

    async def announce(self, status: NodeStatus, *, ttl: float) -> None:
        """Publish ``status``; Redis expires it after ``ttl`` seconds."""
        check_positive("ttl", ttl)
        body = json.dumps(attrs.asdict(status), separators=(",", ":"))
        args = [status.node, body, str(max(1, math.ceil(ttl * 1000)))]

        async def op(client: coredis.Redis[bytes]) -> object:
            return await _ANNOUNCE.run(
                client, keys=[self._key(status.node), self._names], args=args
            )

        await self._store.call(self._owner, op, what="announce")

    async def nodes(self) -> Sequence[NodeStatus]:
        """Every node whose announcement has not expired, sorted by name."""

        async def op(client: coredis.Redis[bytes]) -> object:
            return await _NODES.run(client, keys=[self._names], args=[self.prefix + ":node:"])

        reply = cast(list[Any], await self._store.call(self._owner, op, what="nodes"))
        found: list[NodeStatus] = []
        for raw in reply:
            try:
                fields = json.loads(raw)
                found.append(NodeStatus(**fields))
            except (ValueError, TypeError) as exc:
                _logger.warning("ignoring a malformed node status in Redis: %r (%s)", raw, exc)
        return sorted(found, key=lambda status: status.node)

    async def withdraw(self, node: str) -> None:
        """Remove ``node`` at once."""

        async def op(client: coredis.Redis[bytes]) -> object:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete([self._key(node)])
                pipe.srem(self._names, [node])
            return None

        await self._store.call(self._owner, op, what="withdraw")

    @property
    def _names(self) -> str:
        return self.prefix + ":names"

    def _key(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"
